package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnerfleet/runnerfleet/handlers/interrupt"
	"github.com/runnerfleet/runnerfleet/handlers/launch"
	"github.com/runnerfleet/runnerfleet/handlers/scale"
	"github.com/runnerfleet/runnerfleet/infra/aws/asg"
	"github.com/runnerfleet/runnerfleet/infra/aws/cwmetrics"
	"github.com/runnerfleet/runnerfleet/infra/aws/marks"
	"github.com/runnerfleet/runnerfleet/infra/aws/scalestate"
	"github.com/runnerfleet/runnerfleet/infra/aws/stacks"
	"github.com/runnerfleet/runnerfleet/infra/aws/state"
	"github.com/runnerfleet/runnerfleet/infra/config"
	"github.com/runnerfleet/runnerfleet/infra/router"
	"github.com/runnerfleet/runnerfleet/infra/scrape"
)

// fleetCheckTimeout bounds the start-up check of the fleets (per fleet: its group, its lifecycle
// hooks, its three drain documents).
const fleetCheckTimeout = 30 * time.Second

// clients are the AWS adapters shared by the handlers.
type clients struct {
	autoscaling *autoscaling.Client
	ec2         *ec2.Client
	ssm         *ssm.Client
	cloudwatch  *cloudwatch.Client
	table       *state.Table
}

func newClients(awsCfg aws.Config, cfg *config.Config) (clients, error) {
	tbl, err := state.New(dynamodb.NewFromConfig(awsCfg), cfg.StateTable)
	if err != nil {
		return clients{}, fmt.Errorf("opening the state table: %w", err)
	}
	return clients{autoscaling: autoscaling.NewFromConfig(awsCfg), ec2: ec2.NewFromConfig(awsCfg), ssm: ssm.NewFromConfig(awsCfg),
		cloudwatch: cwmetrics.NewClient(awsCfg), table: tbl}, nil
}

// build makes the handlers and what they need. pub publishes to the worker's own queues (drain
// follow-ups). It checks every fleet before the worker takes a message: a group without the
// fleet's terminate hook (hooks.terminate), a heartbeat interval over a third of that hook's
// heartbeat timeout, or a drain document missing stops the start with every problem listed; a
// fleet whose group does not exist does not (see presence).
func build(ctx context.Context, awsCfg aws.Config, cfg *config.Config, pub message.Publisher, reg prometheus.Registerer, logger *slog.Logger) (deps, *sweeper, error) {
	c, err := newClients(awsCfg, cfg)
	if err != nil {
		return deps{}, nil, err
	}
	// Issue 7: spot and rebalance notices, state changes, drain commands and the launch gate.
	rebalance, gates := map[string]interrupt.RebalanceMode{}, map[string]launch.Gate{}
	for _, f := range cfg.Fleets {
		if f.Rebalance != "" {
			rebalance[f.Name] = interrupt.RebalanceMode(f.Rebalance)
		}
		g := f.LaunchGate
		gates[f.Name] = launch.Gate{Disabled: g.Disabled, Timeout: g.Timeout, Poll: g.Poll, HeartbeatEvery: g.HeartbeatInterval}
	}
	wired, err := marks.Wire(marks.WireConfig{Fleets: cfg.Fleets, Rebalance: rebalance, Gates: gates,
		FollowUpQueue: cfg.Queues.FollowUps().Name, LoopbackOnly: cfg.LoopbackOnly},
		marks.WireClients{AutoScaling: c.autoscaling, EC2: c.ec2, SSM: c.ssm, Table: c.table, Publisher: pub}, reg, logger)
	if err != nil {
		return deps{}, nil, fmt.Errorf("building the interrupt and launch handlers: %w", err)
	}
	cycler, err := newCycler(cfg, c, wired.Marks, reg, logger) // issue 10
	if err != nil {
		return deps{}, nil, err
	}
	scaler, err := newScaler(cfg, c, wired.Group, cycler, reg, logger)
	if err != nil {
		return deps{}, nil, err
	}
	drainer, err := newDrainer(cfg, c, pub, reg, logger)
	if err != nil {
		return deps{}, nil, err
	}
	fleets := make([]string, 0, len(cfg.Fleets))
	for _, f := range cfg.Fleets {
		fleets = append(fleets, f.Name)
	}
	sink, err := cwmetrics.New(c.cloudwatch, "")
	if err != nil {
		return deps{}, nil, err
	}
	present := newPresence(drainer, sink, fleets, reg, logger)
	checkCtx, cancel := context.WithTimeout(ctx, fleetCheckTimeout)
	defer cancel()
	if err := present.start(checkCtx); err != nil {
		return deps{}, nil, fmt.Errorf("checking the fleets' groups, lifecycle hooks and drain documents:\n%w", err)
	}
	updater, err := stacks.NewUpdater(awsCfg, cfg.Fleets, cfg.CloudFormationRoleARN, c.table, reg, logger) // issue 9
	if err != nil {
		return deps{}, nil, err
	}
	safety, err := router.CommandSafety(router.SafetyConfig{
		KnownFleet: func(name string) bool { _, ok := cfg.Fleet(name); return ok },
		Ledger:     c.table,
		MaxAge:     cfg.CommandMaxAge,
	}, logger)
	if err != nil {
		return deps{}, nil, fmt.Errorf("building command safety: %w", err)
	}
	d := deps{cfg: cfg, logger: logger, metrics: newWorkerMetrics(reg), scaler: scaler, drain: drainer.Handle, cycle: cycler,
		interrupt: wired.Interrupt, launch: wired.Launch, update: updater, safety: safety}
	backfill := func(ctx context.Context) (int, error) {
		n, err := c.table.Backfill(ctx)
		if err != nil {
			return n, err
		}
		return n, c.table.IndexReady(ctx)
	}
	return d, &sweeper{drain: drainer, launch: wired.Launch, backfill: backfiller{run: backfill}, presence: present}, nil
}

// newScaler builds the scaling handler (issue 6): the group adapter, a runner scraper (loopback
// only when the config says so), CloudWatch metrics and the fleets' state in the state table.
func newScaler(cfg *config.Config, c clients, decorate func(scale.Group) scale.Group, hold scale.Hold, reg prometheus.Registerer, logger *slog.Logger) (*scale.Handler, error) {
	plain, err := asg.New(c.autoscaling, c.ec2)
	if err != nil {
		return nil, err
	}
	group := decorate(plain) // ticks see the instances' marks (issue 7)
	scraper, err := scrape.New(scrape.Config{}, scrape.HTTPClient(cfg.LoopbackOnly))
	if err != nil {
		return nil, err
	}
	sink, err := cwmetrics.New(c.cloudwatch, "")
	if err != nil {
		return nil, err
	}
	store, err := scalestate.New(c.table)
	if err != nil {
		return nil, err
	}
	h, err := scale.New(scale.Config{Fleets: cfg.Fleets},
		scale.Deps{Group: group, Scraper: scraper, Metrics: sink, State: store, Registerer: reg, Hold: hold}, logger)
	if err != nil {
		return nil, fmt.Errorf("building the scale handler: %w", err)
	}
	return h, nil
}
