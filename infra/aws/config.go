// Package aws holds RunnerFleet's adapters over the AWS SDK: the Auto Scaling, SSM,
// CloudFormation, CloudWatch, EC2 and DynamoDB calls that handlers need, each behind the small
// interface its consumer declares.
package aws

import (
	"context"
	"fmt"
	"net"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/runnerfleet/runnerfleet/infra/netguard"
)

// ConfigOptions tune how the SDK configuration is loaded. The zero value is what production uses:
// the SDK's default chain, which already honours AWS_REGION, AWS_ENDPOINT_URL and
// AWS_ENDPOINT_URL_<SERVICE>.
type ConfigOptions struct {
	// Region overrides AWS_REGION when set.
	Region string
	// BaseEndpoint overrides AWS_ENDPOINT_URL when set (for example the local emulator).
	BaseEndpoint string
	// LoopbackOnly makes the SDK's HTTP client refuse every address outside 127.0.0.0/8 (tests,
	// the demo and benchmarks run against the local emulator and nothing else).
	LoopbackOnly bool
}

// LoadConfig loads the SDK configuration the way users configure it: environment, shared files,
// then the options given here. Every client made from it refuses to send a call whose context's
// deadline has passed, even before the context's timer has fired (see deadlineFence).
func LoadConfig(ctx context.Context, o ConfigOptions) (aws.Config, error) {
	var opts []func(*config.LoadOptions) error
	if o.Region != "" {
		opts = append(opts, config.WithRegion(o.Region))
	}
	if o.BaseEndpoint != "" {
		opts = append(opts, config.WithBaseEndpoint(o.BaseEndpoint))
	}
	if o.LoopbackOnly {
		// A BuildableClient, not a plain *http.Client: the SDK must still be able to add a CA
		// bundle (AWS_CA_BUNDLE) to its transport.
		guard := netguard.Dialer()
		client := awshttp.NewBuildableClient().
			WithDialerOptions(func(d *net.Dialer) { d.Control = guard.Control }).
			WithTransportOptions(func(t *http.Transport) { t.Proxy = nil })
		opts = append(opts, config.WithHTTPClient(client))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("loading aws config: %w", err)
	}
	if cfg.Region == "" {
		return aws.Config{}, fmt.Errorf("loading aws config: no region: set AWS_REGION or the region key")
	}
	cfg.APIOptions = append(cfg.APIOptions, addDeadlineFence)
	return cfg, nil
}
