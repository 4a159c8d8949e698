package worker

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"

	"github.com/runnerfleet/runnerfleet/handlers/drain"
	"github.com/runnerfleet/runnerfleet/infra/aws/cwmetrics"
)

// CloudWatch metric names of drains (namespace cwmetrics.DefaultNamespace, dimension Fleet).
// This adapter belongs beside cwmetrics.Sink (infra/aws/cwmetrics) once cmd/worker wires drains.
const (
	MetricDrainsInProgress = "DrainsInProgress"
	MetricOldestDrainAge   = "OldestDrainAgeSeconds"
	MetricDrainsFinished   = "DrainsFinished"
	MetricDrainErrors      = "DrainErrors"
	MetricDrainHeartbeats  = "DrainHeartbeats"
)

// CloudWatchSink publishes drain figures with PutMetricData; it implements drain.MetricsSink.
type CloudWatchSink struct {
	API       cwmetrics.API
	Namespace string
}

// PublishDrains puts one fleet's figures in one call.
func (s CloudWatchSink) PublishDrains(ctx context.Context, f drain.Figures) error {
	dims := []types.Dimension{{Name: aws.String(cwmetrics.DimensionFleet), Value: aws.String(f.Fleet)}}
	datum := func(name string, unit types.StandardUnit, v float64) types.MetricDatum {
		return types.MetricDatum{MetricName: aws.String(name), Dimensions: dims, Timestamp: aws.Time(f.At), Unit: unit, Value: aws.Float64(v)}
	}
	finished, failed := 0, 0
	for outcome, n := range f.Finished {
		finished += n
		if outcome != drain.OutcomeCompleted {
			failed += n
		}
	}
	data := []types.MetricDatum{
		datum(MetricDrainsInProgress, types.StandardUnitCount, float64(f.InProgress)),
		datum(MetricOldestDrainAge, types.StandardUnitSeconds, f.OldestAge.Seconds()),
		datum(MetricDrainsFinished, types.StandardUnitCount, float64(finished)),
		datum(MetricDrainErrors, types.StandardUnitCount, float64(failed)),
		datum(MetricDrainHeartbeats, types.StandardUnitCount, float64(f.Heartbeats)),
	}
	ns := s.Namespace
	if ns == "" {
		ns = cwmetrics.DefaultNamespace
	}
	if _, err := s.API.PutMetricData(ctx, &cloudwatch.PutMetricDataInput{Namespace: aws.String(ns), MetricData: data}); err != nil {
		return fmt.Errorf("putting drain metrics of fleet %s to cloudwatch: %w", f.Fleet, err)
	}
	return nil
}
