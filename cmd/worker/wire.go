package main

import (
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnerfleet/runnerfleet/handlers/scale"
	"github.com/runnerfleet/runnerfleet/infra/aws/asg"
	"github.com/runnerfleet/runnerfleet/infra/aws/cwmetrics"
	"github.com/runnerfleet/runnerfleet/infra/aws/scalestate"
	"github.com/runnerfleet/runnerfleet/infra/aws/state"
	"github.com/runnerfleet/runnerfleet/infra/config"
	"github.com/runnerfleet/runnerfleet/infra/scrape"
)

// clients are the AWS adapters shared by the handlers.
type clients struct {
	autoscaling *autoscaling.Client
	ec2         *ec2.Client
	table       *state.Table
}

func newClients(awsCfg aws.Config, cfg *config.Config) (clients, error) {
	tbl, err := state.New(dynamodb.NewFromConfig(awsCfg), cfg.StateTable)
	if err != nil {
		return clients{}, fmt.Errorf("opening the state table: %w", err)
	}
	return clients{autoscaling: autoscaling.NewFromConfig(awsCfg), ec2: ec2.NewFromConfig(awsCfg), table: tbl}, nil
}

// newScaler builds the scaling handler (issue 6): the group adapter, a runner scraper (loopback
// only when the config says so), CloudWatch metrics and the fleets' state in the state table.
func newScaler(awsCfg aws.Config, cfg *config.Config, c clients, reg prometheus.Registerer, logger *slog.Logger) (*scale.Handler, error) {
	group, err := asg.New(c.autoscaling, c.ec2)
	if err != nil {
		return nil, err
	}
	scraper, err := scrape.New(scrape.Config{}, scrape.HTTPClient(cfg.LoopbackOnly))
	if err != nil {
		return nil, err
	}
	sink, err := cwmetrics.New(cwmetrics.NewClient(awsCfg), "")
	if err != nil {
		return nil, err
	}
	store, err := scalestate.New(c.table)
	if err != nil {
		return nil, err
	}
	h, err := scale.New(scale.Config{Fleets: cfg.Fleets},
		scale.Deps{Group: group, Scraper: scraper, Metrics: sink, State: store, Registerer: reg}, logger)
	if err != nil {
		return nil, fmt.Errorf("building the scale handler: %w", err)
	}
	return h, nil
}
