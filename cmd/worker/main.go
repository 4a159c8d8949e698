// Command worker is RunnerFleet's event-driven worker: it consumes the lifecycle and control
// queues with a Watermill router and runs one short state-machine step per message. See
// README.md and configs/worker.example.yaml.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	rfaws "github.com/runnerfleet/runnerfleet/infra/aws"
	"github.com/runnerfleet/runnerfleet/infra/config"
	"github.com/runnerfleet/runnerfleet/infra/observe"
	"github.com/runnerfleet/runnerfleet/infra/router"
	"github.com/runnerfleet/runnerfleet/infra/sqs"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	var tickDelay time.Duration
	cmd := &cobra.Command{
		Use:           "worker",
		Short:         "Run RunnerFleet's worker: consume the lifecycle and control queues until SIGTERM",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := run(cmd.Context(), config.Source{Flags: cmd.Flags()}, tickDelay)
			if err != nil {
				fmt.Fprintln(os.Stderr, "worker:", err)
			}
			return err
		},
	}
	config.AddFlags(cmd.Flags())
	cmd.Flags().DurationVar(&tickDelay, "debug-tick-delay", 0, "make every tick take this long (shutdown tests)")
	_ = cmd.Flags().MarkHidden("debug-tick-delay")
	return cmd
}

func run(ctx context.Context, src config.Source, tickDelay time.Duration) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if src.NeedsSSM() {
		b := src.Bootstrap()
		awsCfg, err := rfaws.LoadConfig(ctx, rfaws.ConfigOptions{Region: b.Region, BaseEndpoint: b.Endpoint, LoopbackOnly: b.LoopbackOnly})
		if err != nil {
			return err
		}
		src.SSM = ssm.NewFromConfig(awsCfg)
	}
	cfg, err := config.Load(ctx, src)
	if err != nil {
		return err
	}
	level, _ := observe.ParseLevel(cfg.LogLevel) // validated by Load
	logger := observe.NewLogger(os.Stderr, level)
	for _, w := range configWarnings(cfg) {
		logger.Warn("config: " + w)
	}

	awsCfg, err := rfaws.LoadConfig(ctx, rfaws.ConfigOptions{Region: cfg.Region, BaseEndpoint: cfg.Endpoint, LoopbackOnly: cfg.LoopbackOnly})
	if err != nil {
		return err
	}
	sqsClient := awssqs.NewFromConfig(awsCfg)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := observe.NewMetrics(reg)

	// One publisher for the worker's own messages: dead letters and drain follow-ups.
	pub, err := sqs.NewPublisher(sqs.PublisherConfig{}, sqsClient, logger)
	if err != nil {
		return fmt.Errorf("creating the publisher: %w", err)
	}
	defer pub.Close()
	d, sweeps, err := build(ctx, awsCfg, cfg, pub, reg, logger)
	if err != nil {
		return err
	}
	d.tickDelay = tickDelay
	r, err := router.New(router.Config{
		HandlerTimeout: cfg.Handler.Timeout,
		Timeouts:       kindTimeouts(cfg.Handler.Timeouts),
		Retry:          router.Retry(cfg.Handler.Retry),
		CloseTimeout:   cfg.DrainTimeout() + time.Second,
	}, handlers(d), pub, metrics, logger, fleetOf(cfg))
	if err != nil {
		return err
	}
	for role, q := range cfg.Queues.Consumed() {
		var sub message.Subscriber
		sub, err = sqs.NewSubscriber(cfg.Subscriber(q), sqsClient, logger)
		if err != nil {
			return fmt.Errorf("creating the %s subscriber: %w", role, err)
		}
		if role == "control" { // the audit line of each command names its SQS sender (issue 9)
			if sub, err = router.WithSender(sub); err != nil {
				return fmt.Errorf("creating the %s subscriber: %w", role, err)
			}
		}
		if err := r.AddQueue(router.Queue{Name: role, Topic: q.Name, DeadLetter: q.DeadLetter, Subscriber: sub}); err != nil {
			return err
		}
	}

	srv, err := observe.NewServer(cfg.Listen, reg, readiness(sqsClient, cfg.Queues), logger)
	if err != nil {
		return err
	}
	srv.Serve()
	return serve(ctx, cfg, r, srv, logger, func(ctx context.Context) { sweeps.run(ctx, cfg.SweepInterval, logger) })
}
