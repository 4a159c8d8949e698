package cyclestate

import (
	"context"
	"errors"

	"github.com/runnerfleet/runnerfleet/handlers/cycle"
	"github.com/runnerfleet/runnerfleet/infra/scrape"
)

// Health implements cycle.Health over infra/scrape. A runner is healthy when its metrics were
// read, GitLab did not reject its job requests since the previous read, and it offers job slots
// (infra/scrape counts a runner section whose job requests GitLab refuses (401/403/410) as
// offering none).
type Health struct {
	s *scrape.Scraper
}

var _ cycle.Health = (*Health)(nil)

// NewHealth returns a Health over s; it refuses nil. Share the scale handler's Scraper when one
// exists: its per-instance memory makes "rejected since the previous read" precise.
func NewHealth(s *scrape.Scraper) (*Health, error) {
	if s == nil {
		return nil, errors.New("cyclestate: nil scraper")
	}
	return &Health{s: s}, nil
}

// Check scrapes the targets and returns one Runner per target, in order.
func (h *Health) Check(ctx context.Context, urlTemplate string, targets []cycle.Target) ([]cycle.Runner, error) {
	ts := make([]scrape.Target, len(targets))
	for i, t := range targets {
		ts[i] = scrape.Target{InstanceID: t.InstanceID, PrivateIP: t.PrivateIP}
	}
	rs, err := h.s.Scrape(ctx, urlTemplate, ts)
	if err != nil {
		return nil, err
	}
	out := make([]cycle.Runner, len(rs))
	for i, r := range rs {
		out[i] = Runner(r)
	}
	return out, nil
}

// Runner converts a scrape result.
func Runner(r scrape.Result) cycle.Runner {
	if !r.Known {
		return cycle.Runner{InstanceID: r.InstanceID, Reason: string(r.Reason)}
	}
	return cycle.Runner{InstanceID: r.InstanceID, Known: true, Rejected: r.Rejected,
		Healthy: !r.Rejected && r.Capacity > 0, RunningJobs: r.BusyJobs, Capacity: r.Capacity}
}
