package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnerfleet/runnerfleet/handlers/drain"
	"github.com/runnerfleet/runnerfleet/infra/aws/cwmetrics"
	"github.com/runnerfleet/runnerfleet/infra/aws/lifecycle"
	"github.com/runnerfleet/runnerfleet/infra/aws/runcmd"
	"github.com/runnerfleet/runnerfleet/infra/config"
	"github.com/runnerfleet/runnerfleet/infra/drainadapter"
	"github.com/runnerfleet/runnerfleet/infra/scrape"
)

// newDrainer builds the drain handler (issue 5): drain records in the state table, the drain SSM
// documents, the lifecycle hooks, the runner's jobs from its metrics (a scraper of its own, so
// drains do not disturb the scaling scraper's rates), and follow-ups published with a delay on
// the steps queue (the lifecycle queue when none is configured).
func newDrainer(cfg *config.Config, c clients, pub message.Publisher, reg prometheus.Registerer, logger *slog.Logger) (*drain.Handler, error) {
	cmds, err := runcmd.New(c.ssm)
	if err != nil {
		return nil, err
	}
	// A drain gives up on a command still pending after its command timeout and sends another:
	// SSM drops the first one then too, so it can never run later beside its replacement.
	commandTimeout := drain.DefaultCommandTimeout
	cmds = cmds.WithDeliveryTimeout(commandTimeout)
	lc, err := lifecycle.New(c.autoscaling)
	if err != nil {
		return nil, err
	}
	scraper, err := scrape.New(scrape.Config{}, scrape.HTTPClient(cfg.LoopbackOnly))
	if err != nil {
		return nil, err
	}
	jobs, err := newRunnerJobs(scraper, c.ec2, cfg)
	if err != nil {
		return nil, err
	}
	// The same CloudWatch sink as scaling's: one place names the metrics the worker stack's
	// alarms and dashboard read.
	sink, err := cwmetrics.New(c.cloudwatch, "")
	if err != nil {
		return nil, err
	}
	h, err := drain.New(drain.Config{Fleets: cfg.Fleets, StepConcurrency: cfg.DrainStepConcurrency, SweepInterval: cfg.SweepInterval,
		CommandTimeout: commandTimeout}, drain.Deps{
		Store: c.table, Commands: cmds, Lifecycle: lc, Jobs: jobs,
		FollowUps: drainadapter.FollowUps(pub, cfg.Queues.FollowUps().Name), Logger: logger, Metrics: drain.NewMetrics(reg),
		Sink: sink,
	})
	if err != nil {
		return nil, fmt.Errorf("building the drain handler: %w", err)
	}
	return h, nil
}

// sweeper runs the periodic sweeps of the state machines whose follow-ups may be lost: drains
// (a lost follow-up, a worker killed mid-step; also their CloudWatch figures) and launch gates.
type sweeper struct {
	drain  *drain.Handler
	launch interface {
		Sweep(ctx context.Context) (int, error)
	}
	// backfill gives the state table's index the unfinished records written without it
	// (state.Table.Backfill) and checks the index is usable (state.Table.IndexReady); nil: none.
	backfill backfiller
	// presence checks the fleets again, on the sweep's interval, in a loop of its own.
	presence *presence
}

// run sweeps every interval until ctx ends; any replica may sweep at any time. The backfill
// runs first, then before the sweeps it is due for.
func (s *sweeper) run(ctx context.Context, every time.Duration, logger *slog.Logger) {
	if s.presence != nil { // on its own: its reads must not hold up the drains' sweep
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.presence.run(ctx, every)
		}()
		defer func() { <-done }()
	}
	t := time.NewTicker(every)
	defer t.Stop()
	s.backfill.started = time.Now()
	for {
		s.backfill.maybe(ctx, time.Now(), logger)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for name, sweep := range map[string]func(context.Context) (int, error){"drain": s.drain.Sweep, "launch": s.launchSweep} {
				n, err := sweep(ctx)
				switch {
				case err != nil && ctx.Err() == nil:
					logger.Warn("sweep", "of", name, "error", err.Error())
				case n > 0:
					logger.Info("sweep advanced overdue state machines", "of", name, "count", n)
				}
			}
		}
	}
}

// Backfill schedule: at start, then every backfillEvery until it has succeeded with the worker
// at least backfillFor old. A rolling deploy runs the old version beside this one for minutes,
// and the old one writes records without the index's attribute; a failure (the index still being
// built by the stack update) is retried on the same pace.
const (
	backfillEvery = 5 * time.Minute
	backfillFor   = time.Hour
)

// backfiller runs a backfill on the schedule above.
type backfiller struct {
	run     func(ctx context.Context) (int, error)
	started time.Time
	next    time.Time
	done    bool
}

// maybe runs the backfill when it is due at now.
func (b *backfiller) maybe(ctx context.Context, now time.Time, logger *slog.Logger) {
	if b.run == nil || b.done || now.Before(b.next) {
		return
	}
	n, err := b.run(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		logger.Warn("state table: backfilling its index (retried in "+backfillEvery.String()+")", "error", err.Error())
	case err != nil:
	case n > 0:
		logger.Info("state table: unfinished records written without the index's attribute are now listed", "count", n)
	}
	if err == nil && now.Sub(b.started) >= backfillFor {
		b.done = true
		return
	}
	b.next = now.Add(backfillEvery)
}

func (s *sweeper) launchSweep(ctx context.Context) (int, error) {
	if s.launch == nil {
		return 0, nil
	}
	return s.launch.Sweep(ctx)
}

// maxRememberedIPs bounds the private-IP cache of runnerJobs.
const maxRememberedIPs = 4096

// describeInstancesAPI is the EC2 call runnerJobs makes to find a runner's private address.
type describeInstancesAPI interface {
	DescribeInstances(ctx context.Context, in *ec2.DescribeInstancesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
}

// runnerJobs implements drain.Jobs: it scrapes one instance's runner metrics with the fleet's URL
// template, looking up the private IP first when the template uses it (once per instance: an
// instance keeps its primary private address for life).
type runnerJobs struct {
	scraper *scrape.Scraper
	ec2     describeInstancesAPI
	urls    map[string]string // fleet → metrics URL template

	mu  sync.Mutex
	ips map[string]string // instance → private IP
}

func newRunnerJobs(s *scrape.Scraper, api describeInstancesAPI, cfg *config.Config) (*runnerJobs, error) {
	j := &runnerJobs{scraper: s, ec2: api, urls: map[string]string{}, ips: map[string]string{}}
	var errs []error
	for _, f := range cfg.Fleets {
		if err := scrape.CheckTemplate(f.MetricsURL); err != nil {
			errs = append(errs, fmt.Errorf("fleet %s: %w", f.Name, err))
		}
		j.urls[f.Name] = f.MetricsURL
	}
	return j, errors.Join(errs...)
}

// RunningJobs returns the jobs occupying the instance's runner slots; an error when its metrics
// did not answer usefully (the drain then asks the status document).
func (j *runnerJobs) RunningJobs(ctx context.Context, fleetName, instanceID string) (int, error) {
	tmpl, ok := j.urls[fleetName]
	if !ok {
		return 0, fmt.Errorf("runner jobs of %s: unknown fleet %q", instanceID, fleetName)
	}
	target := scrape.Target{InstanceID: instanceID}
	if strings.Contains(tmpl, ".PrivateIP") {
		ip, err := j.privateIP(ctx, instanceID)
		if err != nil {
			return 0, err
		}
		target.PrivateIP = ip
	}
	return drainadapter.BusyJobs(ctx, j.scraper, tmpl, target)
}

func (j *runnerJobs) privateIP(ctx context.Context, instanceID string) (string, error) {
	j.mu.Lock()
	ip, ok := j.ips[instanceID]
	j.mu.Unlock()
	if ok {
		return ip, nil
	}
	out, err := j.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{
		Filters: []ec2types.Filter{{Name: aws.String("instance-id"), Values: []string{instanceID}}},
	})
	if err != nil {
		return "", fmt.Errorf("looking up the private address of %s: %w", instanceID, err)
	}
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			if ip := aws.ToString(in.PrivateIpAddress); aws.ToString(in.InstanceId) == instanceID && ip != "" {
				j.mu.Lock()
				if len(j.ips) >= maxRememberedIPs {
					clear(j.ips) // drains are few; forgetting costs one lookup each
				}
				j.ips[instanceID] = ip
				j.mu.Unlock()
				return ip, nil
			}
		}
	}
	return "", fmt.Errorf("looking up the private address of %s: EC2 lists none", instanceID)
}
