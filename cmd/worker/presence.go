package main

import (
	"context"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// fleetChecker is the start-up check of one fleet (drain.Handler.CheckFleet): present is false,
// with a nil error, when the fleet's Auto Scaling group does not exist.
type fleetChecker interface {
	CheckFleets(ctx context.Context) (missing []string, err error)
	CheckFleet(ctx context.Context, name string) (present bool, err error)
}

// presence keeps the fleets whose group did not exist when the worker started, and checks them
// again on every sweep until each exists and passes the check. A fleet stack created after the
// worker's config named it (or deleted before the fleet left the config) must not stop the
// worker, for every other fleet's drains would stop with it; the worker runs without that fleet
// (it has no instances to drain, its commands are refused as its group is not found) and says
// so: an error in the log at start, runnerfleet_fleet_ready 0 until the group exists and passes
// the check, and the check's problems in the log each time they change.
type presence struct {
	check  fleetChecker
	ready  *prometheus.GaugeVec
	logger *slog.Logger

	mu      sync.Mutex
	pending map[string]string // fleet → the last check's problems ("" while the group is missing)
}

func newPresence(check fleetChecker, fleets []string, reg prometheus.Registerer, logger *slog.Logger) *presence {
	p := &presence{check: check, logger: logger, pending: map[string]string{},
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

// start runs the start-up check of every fleet: the problems of fleets whose group exists are
// returned (the worker refuses to start, every problem listed); fleets whose group does not
// exist are logged and kept for recheck.
func (p *presence) start(ctx context.Context) error {
	missing, err := p.check.CheckFleets(ctx)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range missing {
		p.pending[f] = ""
		p.ready.WithLabelValues(f).Set(0)
		p.logger.Error("fleet's auto scaling group does not exist: the worker runs without this fleet until it does",
			"fleet", f, "hint", "create the fleet stack, or take the fleet out of the worker's config")
	}
	return nil
}

// recheck checks the fleets kept by start once more; a fleet whose group now exists and passes
// is ready, one whose group exists with problems stays pending and its problems are logged when
// they change. A failed read (throttled, denied) is logged and tried at the next sweep.
func (p *presence) recheck(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, fleetCheckTimeout)
	defer cancel()
	p.mu.Lock()
	names := make([]string, 0, len(p.pending))
	for f := range p.pending {
		names = append(names, f)
	}
	p.mu.Unlock()
	for _, f := range names {
		present, err := p.check.CheckFleet(ctx, f)
		if ctx.Err() != nil {
			return // stopping, or the check outlasted its bound: the next sweep tries again
		}
		p.mu.Lock()
		last := p.pending[f]
		switch {
		case present && err == nil:
			delete(p.pending, f)
			p.ready.WithLabelValues(f).Set(1)
			p.logger.Info("fleet's auto scaling group exists and passed the drain check: the worker serves this fleet", "fleet", f)
		case present:
			if now := err.Error(); now != last {
				p.pending[f] = now
				p.logger.Error("fleet's auto scaling group exists but fails the drain check: its instances may terminate undrained",
					"fleet", f, "error", now)
			}
		case err != nil:
			p.logger.Warn("checking whether the fleet's auto scaling group exists failed", "fleet", f, "error", err.Error())
		case last != "":
			p.pending[f] = ""
			p.logger.Error("fleet's auto scaling group does not exist any more", "fleet", f)
		}
		p.mu.Unlock()
	}
}
