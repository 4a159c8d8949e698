package scrape

import (
	"context"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/handlers/scale"
)

// ScrapeRunners implements scale.Scraper: it scrapes the targets and returns, per target and in
// their order, a fleet.Instance with ID and the scrape fields set.
//
// RunningJobs is BusyJobs (every job occupying a slot, running or being prepared or finished), so
// an instance preparing a job is never taken for idle. Healthy is false when GitLab refuses the
// runner's job requests (Result.Rejected): for the policy, a runner that has made no job request
// yet still offers its slots. The stricter health of DESIGN.md — a job request succeeded — is
// Result.Accepted, which the cycle's health check (infra/aws/cyclestate) requires. QueueAge is the upper bound on the gauges' age; QueueStale is set when
// the gauges are absent or their age unknown, and the policy judges the age itself (QueueMaxAge).
func (s *Scraper) ScrapeRunners(ctx context.Context, urlTemplate string, targets []scale.Target) ([]fleet.Instance, error) {
	ts := make([]Target, len(targets))
	for i, t := range targets {
		ts[i] = Target{InstanceID: t.InstanceID, PrivateIP: t.PrivateIP}
	}
	results, err := s.Scrape(ctx, urlTemplate, ts)
	if err != nil {
		return nil, err
	}
	out := make([]fleet.Instance, len(results))
	for i, r := range results {
		out[i] = r.Instance()
	}
	return out, nil
}

// Instance returns the scrape fields of fleet.Instance for r (ID included; ASG fields zero).
func (r Result) Instance() fleet.Instance {
	inst := fleet.Instance{ID: r.InstanceID}
	if !r.Known {
		inst.Unknown, inst.UnknownReason = true, string(r.Reason)
		return inst
	}
	inst.Healthy = !r.Rejected
	inst.Capacity = r.Capacity
	inst.RunningJobs = r.BusyJobs
	inst.QueueSize, inst.QueueDepth = int(r.Queue.Size), int(r.Queue.Depth)
	// Staleness by age is the policy's call (fleet.Policy.QueueMaxAge); here stale means absent
	// or of unknown age.
	inst.QueueAge, inst.QueueStale = r.Queue.Age, !r.Queue.Present || !r.Queue.AgeKnown
	inst.QueuingExceededRate = r.Queue.ExceededPerSecond
	return inst
}

var _ scale.Scraper = (*Scraper)(nil)
