package cyclestate

import (
	"context"
	"errors"

	"github.com/runnerfleet/runnerfleet/handlers/cycle"
	"github.com/runnerfleet/runnerfleet/infra/scrape"
)

// Health implements cycle.Health over infra/scrape. A runner is healthy when its job requests
// succeed (DESIGN.md): its metrics were read, GitLab answered one of its job requests with a
// success status (request_job 201 or 204: scrape.Result.Accepted) and has not refused them since
// (not Rejected), and it offers job slots (infra/scrape counts a runner section whose job
// requests GitLab refuses (401/403/410) as offering none). A replacement whose runner answers its
// metrics but has not yet had a job request succeed is not healthy: the cycle keeps waiting for
// it, and fails after its health timeout.
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

// Runner converts a scrape result: unknown when the metrics were not read; healthy only when
// Accepted, not Rejected and offering slots.
func Runner(r scrape.Result) cycle.Runner {
	if !r.Known {
		return cycle.Runner{InstanceID: r.InstanceID, Reason: string(r.Reason)}
	}
	return cycle.Runner{InstanceID: r.InstanceID, Known: true, Rejected: r.Rejected,
		Healthy: r.Accepted && !r.Rejected && r.Capacity > 0, RunningJobs: r.BusyJobs, Capacity: r.Capacity}
}
