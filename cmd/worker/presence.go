package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fleetChecker checks one fleet (drain.Handler.CheckFleet): present is false, with a nil error,
// when the fleet's Auto Scaling group does not exist; false with an error when that could not be
// read; true with an error listing the problems of a group that exists.
type fleetChecker interface {
	CheckFleet(ctx context.Context, name string) (present bool, err error)
}

// notReadySink publishes, for an alarm, that the worker runs without a fleet (infra/aws/cwmetrics).
type notReadySink interface {
	PublishFleetNotReady(ctx context.Context, fleet string, at time.Time) error
}

const (
	// startParallel bounds the fleets checked at once at start-up, each on its own
	// fleetCheckTimeout, so that many fleets do not share one budget.
	startParallel = 4
	// recheckAllEvery is how often every fleet, ready ones included, is checked again: a fleet
	// stack deleted, or recreated with a misnamed hook, while the worker runs is found within it.
	// Fleets not ready are checked on every round (the sweep interval).
	recheckAllEvery = 5 * time.Minute
)

// presence is what the worker knows of each fleet's group. A fleet stack created after the
// worker's config named it (or deleted before the fleet left the config) must not stop the
// worker, for every other fleet's drains would stop with it; nor must an Auto Scaling read that
// fails at start (throttled): that says nothing of the config. The worker runs without such a
// fleet — nothing of it is checked, and its commands are refused while its group is not found —
// and says so: an error in the log, runnerfleet_fleet_ready 0 and, on every round, CloudWatch's
// FleetNotReady 1 (the worker stack's alarm), until its group exists and passes the check. A
// group that exists with problems at start stops the start (every problem listed); found later
// (a stack recreated wrongly), it makes the fleet not ready, its problems logged when they change.
type presence struct {
	check  fleetChecker
	sink   notReadySink
	ready  *prometheus.GaugeVec
	logger *slog.Logger
	fleets []string

	mu sync.Mutex
	// pending maps a fleet not ready to why: "" while its group does not exist, else the last
	// check's problems or the read that failed.
	pending map[string]string
	lastAll time.Time
}

func newPresence(check fleetChecker, sink notReadySink, fleets []string, reg prometheus.Registerer, logger *slog.Logger) *presence {
	p := &presence{check: check, sink: sink, logger: logger, fleets: fleets, pending: map[string]string{},
		ready: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "runnerfleet_fleet_ready",
			Help: "1 when the fleet's Auto Scaling group exists and passed the drain check (terminate hook, heartbeat interval, SSM documents); 0 while the worker runs without it.",
		}, []string{"fleet"}),
	}
	reg.MustRegister(p.ready)
	for _, f := range fleets {
		p.ready.WithLabelValues(f).Set(1)
	}
	return p
}

// start checks every fleet, a few at a time, each on its own bounded context. It returns the
// problems of the fleets whose group exists (the worker refuses to start, every problem listed);
// a fleet whose group does not exist, or could not be read, is kept not ready.
func (p *presence) start(ctx context.Context) error {
	type result struct {
		present bool
		err     error
	}
	results := make([]result, len(p.fleets))
	sem := make(chan struct{}, startParallel)
	var wg sync.WaitGroup
	for i, f := range p.fleets {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, fleetCheckTimeout)
			defer cancel()
			present, err := p.check.CheckFleet(cctx, f)
			results[i] = result{present, err}
		})
	}
	wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastAll = time.Now()
	var errs []error
	for i, f := range p.fleets {
		switch r := results[i]; {
		case r.present && r.err != nil:
			errs = append(errs, r.err)
		case r.err != nil:
			p.notReady(f, "could not check: "+r.err.Error())
			p.logger.Error("checking whether the fleet's auto scaling group exists failed: the worker runs without this fleet until it can",
				"fleet", f, "error", r.err.Error())
		case !r.present:
			p.notReady(f, "")
			p.logger.Error("fleet's auto scaling group does not exist: the worker runs without this fleet until it does",
				"fleet", f, "hint", "create the fleet stack, or take the fleet out of the worker's config")
		}
	}
	return errors.Join(errs...)
}

// run checks again, every interval until ctx ends, the fleets not ready, and every
// recheckAllEvery all of them.
func (p *presence) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.recheck(ctx)
		}
	}
}

// recheck takes one round: a fleet whose group exists and passes is ready; one whose group
// exists with problems, or is gone, is not, said when that changes; a failed read changes
// nothing (it is said, and tried at the next round). Each fleet not ready after it publishes
// FleetNotReady.
func (p *presence) recheck(ctx context.Context) {
	p.mu.Lock()
	names := make([]string, 0, len(p.fleets))
	all := time.Since(p.lastAll) >= recheckAllEvery
	if all {
		p.lastAll = time.Now()
	}
	for _, f := range p.fleets {
		if _, pending := p.pending[f]; all || pending {
			names = append(names, f)
		}
	}
	p.mu.Unlock()
	for _, f := range names {
		cctx, cancel := context.WithTimeout(ctx, fleetCheckTimeout)
		present, err := p.check.CheckFleet(cctx, f)
		cancel()
		if ctx.Err() != nil {
			return // stopping
		}
		p.mu.Lock()
		last, pending := p.pending[f]
		switch {
		case present && err == nil:
			if pending {
				delete(p.pending, f)
				p.ready.WithLabelValues(f).Set(1)
				p.logger.Info("fleet's auto scaling group exists and passed the drain check: the worker serves this fleet", "fleet", f)
			}
		case present:
			if now := err.Error(); !pending || now != last {
				p.notReady(f, now)
				p.logger.Error("fleet's auto scaling group exists but fails the drain check: its instances may terminate undrained",
					"fleet", f, "error", now)
			}
		case err != nil:
			p.logger.Warn("checking whether the fleet's auto scaling group exists failed", "fleet", f, "error", err.Error())
		case !pending || last != "":
			p.notReady(f, "")
			p.logger.Error("fleet's auto scaling group does not exist (any more): the worker runs without this fleet until it does", "fleet", f)
		}
		_, still := p.pending[f]
		p.mu.Unlock()
		if still {
			if err := p.sink.PublishFleetNotReady(ctx, f, time.Now()); err != nil && ctx.Err() == nil {
				p.logger.Warn("publishing that the worker runs without a fleet failed", "fleet", f, "error", err.Error())
			}
		}
	}
}

// notReady records why f is not ready; p.mu is held.
func (p *presence) notReady(f, why string) {
	p.pending[f] = why
	p.ready.WithLabelValues(f).Set(0)
}
