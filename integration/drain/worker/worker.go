// Package worker runs the drain handler the way the worker binary does, for the drain
// integration tests and benchmarks: real infra/sqs subscribers and publisher on the lifecycle
// queue (and the steps queue, when given), the infra/router dispatch, the real DynamoDB, SSM and Auto Scaling adapters against
// the local emulator, runner metrics through infra/scrape, and a periodic Sweep.
//
// The tests use this package in-process and through the drainworker binary (so a worker can be
// SIGKILLed or SIGSTOPped). It publishes follow-ups and counts runner jobs with the adapters the
// worker binary uses (infra/drainadapter); what it wires differently is the test's choice: the
// local world's metrics templates need no private-IP lookup, and SSM calls may be slowed.
package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/handlers/drain"
	rfaws "github.com/runnerfleet/runnerfleet/infra/aws"
	"github.com/runnerfleet/runnerfleet/infra/aws/cwmetrics"
	"github.com/runnerfleet/runnerfleet/infra/aws/lifecycle"
	"github.com/runnerfleet/runnerfleet/infra/aws/runcmd"
	"github.com/runnerfleet/runnerfleet/infra/aws/state"
	"github.com/runnerfleet/runnerfleet/infra/drainadapter"
	"github.com/runnerfleet/runnerfleet/infra/netguard"
	"github.com/runnerfleet/runnerfleet/infra/observe"
	"github.com/runnerfleet/runnerfleet/infra/router"
	"github.com/runnerfleet/runnerfleet/infra/scrape"
	"github.com/runnerfleet/runnerfleet/infra/sqs"
	"github.com/runnerfleet/runnerfleet/messages"
)

// Config is what a drain worker needs; JSON so the drainworker binary reads the same.
type Config struct {
	Endpoint string `json:"endpoint"`
	Region   string `json:"region"`
	QueueURL string `json:"queue_url"`
	DLQURL   string `json:"dlq_url"`
	// StepsQueueURL, when set, is the queue of the drain's follow-ups (the worker's steps queue),
	// consumed by a subscriber of its own; else follow-ups go to QueueURL. Its dead letters go
	// to DLQURL too.
	StepsQueueURL string `json:"steps_queue_url"`
	Table         string `json:"table"`
	// StateEndpoint and SSMEndpoint are the DynamoDB (Table's) and SSM endpoints when they are
	// not Endpoint (each service in an emulator process of its own, as the benchmark runs them);
	// empty: Endpoint.
	StateEndpoint string `json:"state_endpoint,omitempty"`
	SSMEndpoint   string `json:"ssm_endpoint,omitempty"`
	// Fleets are the managed fleets (MetricsURL set to the simulator's template).
	Fleets []fleet.Settings `json:"fleets"`
	// Drain tunes the handler (Fleets is taken from above).
	StepTimeout time.Duration `json:"step_timeout"`
	CommandPoll time.Duration `json:"command_poll"`
	RetryBase   time.Duration `json:"retry_base"`
	RetryMax    time.Duration `json:"retry_max"`
	SweepGrace  time.Duration `json:"sweep_grace"`
	// SweepEvery is how often the worker sweeps; default 1 s.
	SweepEvery time.Duration `json:"sweep_every"`
	// Visibility is the lifecycle queue's visibility timeout for this worker; default 5 s.
	Visibility time.Duration `json:"visibility"`
	// MaxInFlight bounds the lifecycle messages handled at once; default 20. The steps queue's
	// subscriber holds the production default (sqs.DefaultMaxInFlight): its steps wait for one of
	// the handler's lanes anyway.
	MaxInFlight int `json:"max_in_flight"`
	// StepConcurrency is the drain handler's follow-up lanes; 0: its default.
	StepConcurrency int `json:"step_concurrency,omitempty"`
	// Owner names the worker in leases and logs.
	Owner string `json:"owner"`
	// DebugSendDelay makes every SSM Send wait this long first (uncancellable, like a stalled
	// worker): tests pause a worker inside a step with it.
	DebugSendDelay time.Duration `json:"debug_send_delay"`
	// WrapCommands, when set, wraps the SSM adapter (benchmarks time the stop command with it).
	WrapCommands func(drain.Commands) drain.Commands `json:"-"`
}

// slowCommands delays Send to widen the window in which a worker is inside a step.
type slowCommands struct {
	drain.Commands
	delay time.Duration
}

func (s slowCommands) Send(ctx context.Context, document, instanceID string) (string, error) {
	time.Sleep(s.delay)
	return s.Commands.Send(ctx, document, instanceID)
}

// Worker is one running drain worker.
type Worker struct {
	Handler *drain.Handler
	Metrics *drain.Metrics

	router *router.Router
	subs   map[string]*sqs.Subscriber
	pub    *sqs.Publisher
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start builds and starts a worker; Stop ends it.
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (*Worker, error) {
	if cfg.SweepEvery == 0 {
		cfg.SweepEvery = time.Second
	}
	if cfg.Visibility == 0 {
		cfg.Visibility = 5 * time.Second
	}
	awsCfg, err := rfaws.LoadConfig(ctx, rfaws.ConfigOptions{Region: cfg.Region, BaseEndpoint: cfg.Endpoint, LoopbackOnly: true})
	if err != nil {
		return nil, err
	}
	table, err := state.New(dynamoClient(awsCfg, cfg.StateEndpoint), cfg.Table)
	if err != nil {
		return nil, err
	}
	cmds, err := runcmd.New(ssmClient(awsCfg, cfg.SSMEndpoint))
	if err != nil {
		return nil, err
	}
	lc, err := lifecycle.New(autoscaling.NewFromConfig(awsCfg))
	if err != nil {
		return nil, err
	}
	sqsClient := awssqs.NewFromConfig(awsCfg)
	pub, err := sqs.NewPublisher(sqs.PublisherConfig{}, sqsClient, logger)
	if err != nil {
		return nil, err
	}
	scraper, err := scrape.New(scrape.Config{}, netguard.HTTPClient(5*time.Second))
	if err != nil {
		return nil, err
	}
	var commands drain.Commands = cmds
	if cfg.DebugSendDelay > 0 {
		commands = slowCommands{Commands: cmds, delay: cfg.DebugSendDelay}
	}
	if cfg.WrapCommands != nil {
		commands = cfg.WrapCommands(commands)
	}
	sink, err := cwmetrics.New(cwmetrics.NewClient(awsCfg), "")
	if err != nil {
		return nil, err
	}
	m := drain.NewMetrics(prometheus.NewRegistry())
	h, err := drain.New(drain.Config{
		Fleets: cfg.Fleets, StepTimeout: cfg.StepTimeout, CommandPoll: cfg.CommandPoll,
		RetryBase: cfg.RetryBase, RetryMax: cfg.RetryMax, SweepGrace: cfg.SweepGrace, Owner: cfg.Owner,
		StepConcurrency: cfg.StepConcurrency,
	}, drain.Deps{
		Store: table, Commands: commands, Lifecycle: lc, Jobs: JobsFunc(scraper, cfg.Fleets),
		FollowUps: drainadapter.FollowUps(pub, cmp.Or(cfg.StepsQueueURL, cfg.QueueURL)), Logger: logger, Metrics: m,
		Sink: sink,
	})
	if err != nil {
		return nil, err
	}
	missing, err := h.CheckFleets(ctx)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("the groups of fleets %v do not exist", missing)
	}
	queues := map[string]string{"lifecycle": cfg.QueueURL}
	if cfg.StepsQueueURL != "" {
		queues["steps"] = cfg.StepsQueueURL
	}
	maxInFlight := map[string]int{"lifecycle": cmp.Or(cfg.MaxInFlight, 20), "steps": sqs.DefaultMaxInFlight}
	subs := map[string]*sqs.Subscriber{}
	for role := range queues {
		sub, err := sqs.NewSubscriber(sqs.SubscriberConfig{
			WaitTime: time.Second, VisibilityTimeout: cfg.Visibility, CloseTimeout: 5 * time.Second,
			MaxInFlight: maxInFlight[role],
		}, sqsClient, logger)
		if err != nil {
			return nil, err
		}
		subs[role] = sub
	}
	r, err := router.New(router.Config{
		HandlerTimeout: 30 * time.Second, CloseTimeout: 5 * time.Second,
		Retry: router.Retry{MaxRetries: 2, InitialInterval: 100 * time.Millisecond, MaxInterval: time.Second},
	}, router.Registry{
		messages.KindTerminateAction: h.Handle,
		messages.KindDrainStep:       h.Handle,
	}, pub, observe.NewMetrics(prometheus.NewRegistry()), logger, nil)
	if err != nil {
		return nil, err
	}
	for role, url := range queues {
		if err := r.AddQueue(router.Queue{Name: role, Topic: url, DeadLetter: cfg.DLQURL, Subscriber: subs[role]}); err != nil {
			return nil, err
		}
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &Worker{Handler: h, Metrics: m, router: r, subs: subs, pub: pub, cancel: cancel}
	w.wg.Add(2)
	go func() {
		defer w.wg.Done()
		if err := r.Run(runCtx); err != nil {
			logger.Error("router stopped", "error", err)
		}
	}()
	go func() {
		defer w.wg.Done()
		t := time.NewTicker(cfg.SweepEvery)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				if _, err := h.Sweep(runCtx); err != nil && runCtx.Err() == nil {
					logger.Warn("drain sweep", "error", err)
				}
			}
		}
	}()
	select {
	case <-r.Running():
	case <-time.After(10 * time.Second):
		w.Stop()
		return nil, errors.New("drain worker: router did not start")
	}
	return w, nil
}

// Stop closes the router, the transport and the sweep loop.
func (w *Worker) Stop() {
	_ = w.router.Close()
	w.cancel()
	w.wg.Wait()
	for _, sub := range w.subs {
		_ = sub.Close()
	}
	_ = w.pub.Close()
}

// jobsFunc adapts a function to drain.Jobs.
type jobsFunc func(ctx context.Context, fleet, instanceID string) (int, error)

func (f jobsFunc) RunningJobs(ctx context.Context, fleet, instanceID string) (int, error) {
	return f(ctx, fleet, instanceID)
}

// JobsFunc counts an instance's busy jobs from its runner's metrics (infra/scrape). The local
// world's template needs only the instance id; a real fleet's default template needs the
// private IP, which cmd/worker must look up (EC2 DescribeInstances) before scraping.
func JobsFunc(s *scrape.Scraper, fleets []fleet.Settings) drain.Jobs {
	tmpl := map[string]string{}
	for _, f := range fleets {
		tmpl[f.Name] = f.MetricsURL
	}
	return jobsFunc(func(ctx context.Context, name, id string) (int, error) {
		return drainadapter.BusyJobs(ctx, s, tmpl[name], scrape.Target{InstanceID: id})
	})
}

// dynamoClient is a DynamoDB client on awsCfg, at endpoint when it is set.
func dynamoClient(awsCfg aws.Config, endpoint string) *dynamodb.Client {
	if endpoint == "" {
		return dynamodb.NewFromConfig(awsCfg)
	}
	return dynamodb.NewFromConfig(awsCfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(endpoint) })
}

// ssmClient is an SSM client on awsCfg, at endpoint when it is set.
func ssmClient(awsCfg aws.Config, endpoint string) *ssm.Client {
	if endpoint == "" {
		return ssm.NewFromConfig(awsCfg)
	}
	return ssm.NewFromConfig(awsCfg, func(o *ssm.Options) { o.BaseEndpoint = aws.String(endpoint) })
}
