// Package cwmetrics publishes a fleet's figures to CloudWatch, dimension Fleet: the scale
// handler's (Publish, one PutMetricData per tick) and the drain handler's (PublishDrains, one
// per sweep).
//
// Protocol. The Go SDK's CloudWatch client (service/cloudwatch v1.75.7) speaks Smithy RPC v2
// CBOR by default (api_client.go sets options.Protocol = rpcv2.NewCBOR(...)); moto 5.2.1, our
// emulator, only understands CloudWatch's original awsQuery protocol (form-encoded POST, XML
// answers). CloudWatch itself still serves awsQuery (its service model carries the
// awsQueryCompatible trait), and this SDK generation makes the wire protocol a client option
// (Options.Protocol, a smithyhttp.ClientProtocol). NewClient is the one place that chooses it:
// it sets smithy-go's own awsQuery implementation (transport/http/protocol/awsquery) over the
// service's schema, for the real service and the emulator alike, so there is no
// emulator-only code path and no hand-built request.
package cwmetrics

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/schemas"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/smithy-go/transport/http/protocol/awsquery"

	"github.com/runnerfleet/runnerfleet/handlers/scale"
)

// DefaultNamespace is the CloudWatch namespace of the fleet metrics.
const DefaultNamespace = "RunnerFleet"

// DimensionFleet is the one dimension of every metric: the fleet's name.
const DimensionFleet = "Fleet"

// Metric names, as the dashboard and alarms of deploy/ecs use them.
const (
	MetricActiveJobs         = "ActiveJobs"
	MetricCapacity           = "Capacity"
	MetricDesiredCapacity    = "DesiredCapacity"
	MetricInServiceInstances = "InServiceInstances"
	MetricUnknownInstances   = "UnknownInstances"
	MetricQueuedJobs         = "QueuedJobs"
)

// NewClient returns a CloudWatch client that speaks awsQuery (see the package doc). optFns apply
// after the protocol is set.
func NewClient(cfg aws.Config, optFns ...func(*cloudwatch.Options)) *cloudwatch.Client {
	query := func(o *cloudwatch.Options) {
		o.Protocol = awsquery.New(schemas.GraniteServiceVersion20100801)
	}
	return cloudwatch.NewFromConfig(cfg, append([]func(*cloudwatch.Options){query}, optFns...)...)
}

// API is the part of the CloudWatch client the Sink calls.
type API interface {
	PutMetricData(ctx context.Context, in *cloudwatch.PutMetricDataInput, optFns ...func(*cloudwatch.Options)) (*cloudwatch.PutMetricDataOutput, error)
}

// Sink implements scale.MetricsSink and drain.MetricsSink (drains.go). It is safe for
// concurrent use.
type Sink struct {
	api       API
	namespace string
}

var _ scale.MetricsSink = (*Sink)(nil)

// New returns a Sink publishing into namespace (DefaultNamespace when empty). It refuses a nil
// client.
func New(api API, namespace string) (*Sink, error) {
	if api == nil {
		return nil, errors.New("cwmetrics: nil cloudwatch client")
	}
	if namespace == "" {
		namespace = DefaultNamespace
	}
	return &Sink{api: api, namespace: namespace}, nil
}

// Publish puts the fleet's figures, timestamped m.At, in one call. QueuedJobs is left out when no
// fresh queue signal exists (m.QueuedJobs < 0): a missing point, not a false zero.
func (s *Sink) Publish(ctx context.Context, m scale.FleetMetrics) error {
	dims := []types.Dimension{{Name: aws.String(DimensionFleet), Value: aws.String(m.Fleet)}}
	datum := func(name string, v int) types.MetricDatum {
		return types.MetricDatum{
			MetricName: aws.String(name),
			Dimensions: dims,
			Timestamp:  aws.Time(m.At),
			Unit:       types.StandardUnitCount,
			Value:      aws.Float64(float64(v)),
		}
	}
	data := []types.MetricDatum{
		datum(MetricActiveJobs, m.ActiveJobs),
		datum(MetricCapacity, m.Capacity),
		datum(MetricDesiredCapacity, m.DesiredCapacity),
		datum(MetricInServiceInstances, m.InServiceInstances),
		datum(MetricUnknownInstances, m.UnknownInstances),
	}
	if m.QueuedJobs >= 0 {
		data = append(data, datum(MetricQueuedJobs, m.QueuedJobs))
	}
	_, err := s.api.PutMetricData(ctx, &cloudwatch.PutMetricDataInput{Namespace: aws.String(s.namespace), MetricData: data})
	if err != nil {
		return fmt.Errorf("putting %d metrics of fleet %s to cloudwatch namespace %s: %w", len(data), m.Fleet, s.namespace, err)
	}
	return nil
}
