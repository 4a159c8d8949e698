package cyclestate

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/runnerfleet/runnerfleet/handlers/cycle"
	"github.com/runnerfleet/runnerfleet/infra/netguard"
	"github.com/runnerfleet/runnerfleet/infra/scrape"
)

// Health implements cycle.Health over infra/scrape. A runner is healthy when its job requests
// succeed (DESIGN.md): its metrics were read, GitLab answered one of its job requests with a
// success status (request_job 201 or 204: scrape.Result.Accepted) and has not refused them since
// (not Rejected), and it offers job slots (infra/scrape counts a runner section whose job
// requests GitLab refuses (401/403/410) as offering none). A replacement whose runner answers its
// metrics but has not yet had a job request succeed is not healthy: the cycle keeps waiting for
// it, and fails after its health timeout.
//
// It says whose failure a look that read nothing was. The worker's (cycle.Runner.Worker): the
// instance's address could not be read (Target.AddressErr: DescribeInstances throttled, refused,
// not answered) and the metrics URL template needs it; the caller's context ended, so the runner
// was not given its time; the URL could not be made from the template; the worker's own DNS
// resolver or egress guard (infra/netguard) refused. The runner's: everything else — the
// connection refused or reset, no answer within the scrape timeout, an HTTP error, a garbled
// page, an instance EC2 no longer lists (no address).
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

// Check scrapes the targets and returns one Runner per target, in order. A target whose address
// the worker could not read is not scraped when the template uses the address: its Runner says
// the worker could not look.
func (h *Health) Check(ctx context.Context, urlTemplate string, targets []cycle.Target) ([]cycle.Runner, error) {
	needsAddress := strings.Contains(urlTemplate, "PrivateIP")
	out := make([]cycle.Runner, len(targets))
	ts := make([]scrape.Target, 0, len(targets))
	at := make([]int, 0, len(targets)) // index in targets of each ts
	for i, t := range targets {
		if t.AddressErr != nil && needsAddress {
			out[i] = cycle.Runner{InstanceID: t.InstanceID, Worker: t.AddressErr.Reason,
				Reason: fmt.Sprintf("the instance's address could not be read: %v", t.AddressErr.Err)}
			continue
		}
		ts = append(ts, scrape.Target{InstanceID: t.InstanceID, PrivateIP: t.PrivateIP})
		at = append(at, i)
	}
	rs, err := h.s.Scrape(ctx, urlTemplate, ts)
	if err != nil {
		return nil, err
	}
	for k, r := range rs {
		run := Runner(r)
		if !run.Known && run.Worker == "" && ctx.Err() != nil {
			// The caller's time ran out: the runner was not given its own.
			run.Worker = cycle.WorkerDeadline
		}
		out[at[k]] = run
	}
	return out, nil
}

// Runner converts a scrape result: unknown when the metrics were not read, with Worker set when
// that was the worker's failure (WorkerReason); healthy only when Accepted, not Rejected and
// offering slots.
func Runner(r scrape.Result) cycle.Runner {
	if !r.Known {
		out := cycle.Runner{InstanceID: r.InstanceID, Reason: string(r.Reason), Worker: WorkerReason(r)}
		if out.Worker != "" && r.Err != nil {
			out.Reason += ": " + r.Err.Error() // the worker's own failure: its log says what it was
		}
		return out
	}
	return cycle.Runner{InstanceID: r.InstanceID, Known: true, Rejected: r.Rejected,
		Healthy: r.Accepted && !r.Rejected && r.Capacity > 0, RunningJobs: r.BusyJobs, Capacity: r.Capacity}
}

// WorkerReason says whether a scrape that read nothing failed on the worker's side, and why (a
// cycle.Worker* reason), or on the runner's (""): cancelled before the runner was asked
// (deadline), a URL the template could not make (url-template), a dial the worker's egress guard
// refused or a DNS resolver that failed — not a name that does not exist, which is the
// instance's (network).
func WorkerReason(r scrape.Result) string {
	if r.Known {
		return ""
	}
	switch {
	case r.Reason == scrape.ReasonCanceled:
		return cycle.WorkerDeadline
	case r.Reason == scrape.ReasonBadURL:
		return cycle.WorkerURLTemplate
	case netguard.LocalFailure(r.Err):
		return cycle.WorkerNetwork
	}
	return ""
}
