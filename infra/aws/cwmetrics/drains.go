package cwmetrics

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"

	"github.com/runnerfleet/runnerfleet/handlers/drain"
)

// Drain metric names (dimension Fleet), as deploy/ecs's alarm and dashboard read them.
const (
	// MetricDrainsInProgress is the number of unfinished drains (from the state table, the same
	// for every replica: read it with Maximum).
	MetricDrainsInProgress = "DrainsInProgress"
	// MetricOldestDrainAge is the age in seconds of the oldest unfinished drain (Maximum).
	MetricOldestDrainAge = "OldestDrainAge"
	// MetricDrainTimeLeft is the time in seconds before the nearest maximum-drain deadline of the
	// unfinished drains (Minimum); published only while a drain is in progress.
	MetricDrainTimeLeft = "DrainTimeLeft"
	// MetricDrainsFinished counts drains finished since the replica's last publish, any outcome
	// (Sum across replicas).
	MetricDrainsFinished = "DrainsFinished"
	// MetricDrainErrors counts drains finished with an outcome other than completed (Sum).
	MetricDrainErrors = "DrainErrors"
	// MetricDrainHeartbeats counts lifecycle heartbeats sent since the last publish (Sum).
	MetricDrainHeartbeats = "DrainHeartbeats"
)

var _ drain.MetricsSink = (*Sink)(nil)

// PublishDrains puts one fleet's drain figures, timestamped f.At, in one call; with it Sink
// implements drain.MetricsSink. Counts that are per replica (finished, errors, heartbeats) are
// deltas since the replica's last publish, so CloudWatch's Sum adds the replicas up.
func (s *Sink) PublishDrains(ctx context.Context, f drain.Figures) error {
	dims := []types.Dimension{{Name: aws.String(DimensionFleet), Value: aws.String(f.Fleet)}}
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
	if f.InProgress > 0 {
		data = append(data, datum(MetricDrainTimeLeft, types.StandardUnitSeconds, f.LeastTimeLeft.Seconds()))
	}
	if _, err := s.api.PutMetricData(ctx, &cloudwatch.PutMetricDataInput{Namespace: aws.String(s.namespace), MetricData: data}); err != nil {
		return fmt.Errorf("putting %d drain metrics of fleet %s to cloudwatch namespace %s: %w", len(data), f.Fleet, s.namespace, err)
	}
	return nil
}
