package cwmetrics

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
)

// MetricFleetNotReady is 1 (dimension Fleet) while the worker runs without a configured fleet:
// its Auto Scaling group does not exist, or appeared after the start and fails the start-up
// checks. Nobody drains, gates or scales that fleet's instances meanwhile; the worker stack's
// fleet-not-ready alarm reads it (Maximum). Only the 1 is published: no data means ready.
const MetricFleetNotReady = "FleetNotReady"

// PublishFleetNotReady puts MetricFleetNotReady = 1 for fleet, timestamped at.
func (s *Sink) PublishFleetNotReady(ctx context.Context, fleet string, at time.Time) error {
	_, err := s.api.PutMetricData(ctx, &cloudwatch.PutMetricDataInput{Namespace: aws.String(s.namespace), MetricData: []types.MetricDatum{{
		MetricName: aws.String(MetricFleetNotReady),
		Dimensions: []types.Dimension{{Name: aws.String(DimensionFleet), Value: aws.String(fleet)}},
		Timestamp:  aws.Time(at), Unit: types.StandardUnitCount, Value: aws.Float64(1),
	}}})
	if err != nil {
		return fmt.Errorf("putting %s of fleet %s to cloudwatch namespace %s: %w", MetricFleetNotReady, fleet, s.namespace, err)
	}
	return nil
}
