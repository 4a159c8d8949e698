package main

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"

	"github.com/runnerfleet/runnerfleet/handlers/drain"
	"github.com/runnerfleet/runnerfleet/infra/aws/cwmetrics"
)

// CloudWatch metric names of drains (namespace cwmetrics.DefaultNamespace, dimension Fleet), as
// the worker stack's alarms and dashboard read them. The same adapter is in
// integration/drain/worker; it belongs beside cwmetrics.Sink in infra/aws/cwmetrics.
const (
	metricDrainsInProgress = "DrainsInProgress"
	metricOldestDrainAge   = "OldestDrainAgeSeconds"
	metricDrainsFinished   = "DrainsFinished"
	metricDrainErrors      = "DrainErrors"
	metricDrainHeartbeats  = "DrainHeartbeats"
)

// drainSink publishes drain figures with PutMetricData; it implements drain.MetricsSink.
type drainSink struct {
	api cwmetrics.API
}

// PublishDrains puts one fleet's figures in one call.
func (s drainSink) PublishDrains(ctx context.Context, f drain.Figures) error {
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
		datum(metricDrainsInProgress, types.StandardUnitCount, float64(f.InProgress)),
		datum(metricOldestDrainAge, types.StandardUnitSeconds, f.OldestAge.Seconds()),
		datum(metricDrainsFinished, types.StandardUnitCount, float64(finished)),
		datum(metricDrainErrors, types.StandardUnitCount, float64(failed)),
		datum(metricDrainHeartbeats, types.StandardUnitCount, float64(f.Heartbeats)),
	}
	if _, err := s.api.PutMetricData(ctx, &cloudwatch.PutMetricDataInput{Namespace: aws.String(cwmetrics.DefaultNamespace), MetricData: data}); err != nil {
		return fmt.Errorf("putting drain metrics of fleet %s to cloudwatch: %w", f.Fleet, err)
	}
	return nil
}
