package sim

import (
	"slices"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/scaling"
)

// oracle is a bound, not a policy: it knows the trace and keeps, at every tick, the slots that
// the jobs would use over the next lookahead if none waited, removing only idle instances like
// our policy. No production policy can see the future; what the oracle pays shows what
// foresight alone would buy on a trace.
func oracle(jobs []Job, start time.Time, lookahead time.Duration, concurrency int) Policy {
	type edge struct {
		at    time.Duration
		delta int
	}
	var edges []edge
	for _, j := range jobs {
		edges = append(edges, edge{j.Arrival, 1}, edge{j.Arrival + j.Duration, -1})
	}
	slices.SortStableFunc(edges, func(a, b edge) int { return int(a.at - b.at) })
	// level[i] is the number of jobs running right after edges[i].
	level := make([]int, len(edges))
	cur := 0
	for i, e := range edges {
		cur += e.delta
		level[i] = cur
	}
	peak := func(from, to time.Duration) int {
		i, _ := slices.BinarySearchFunc(edges, from, func(e edge, t time.Duration) int { return int(e.at - t) })
		best := 0
		if i > 0 {
			best = level[i-1]
		}
		for ; i < len(edges) && edges[i].at <= to; i++ {
			best = max(best, level[i])
		}
		return best
	}
	return Policy{Name: "oracle", Decide: func(now time.Time, in scaling.Input) scaling.Decision {
		t := now.Sub(start)
		want := peak(t, t+lookahead)
		for _, i := range in.Instances {
			if !i.State.Leaving() {
				want = max(want, i.RunningJobs) // never below what runs
			}
		}
		target := min(max((want+concurrency-1)/concurrency, in.GroupMin), in.GroupMax)
		d := scaling.Decision{Desired: max(in.Desired, target), State: in.State}
		for _, i := range in.Instances {
			if target >= in.Desired-len(d.Remove) {
				break
			}
			if i.Idle() {
				d.Remove = append(d.Remove, i.ID)
			}
		}
		if len(d.Remove) > 0 {
			d.Desired = in.Desired - len(d.Remove)
		}
		return d
	}}
}

// TestOracleOnTheWeek measures what foresight buys on the shipped week trace: knowing every
// arrival four minutes ahead (boot plus a tick), no job waits, yet the instance-hours are about
// the AWS sample's. So on this trace "30 % of the sample's p95 at no more of its instance-hours"
// is at the edge of what any policy that removes only idle instances can do, and out of reach
// of one that only reacts (see TestShippedTracesDefaultVersusSeed).
func TestOracleOnTheWeek(t *testing.T) {
	t.Parallel()
	tr := shipped(t, KindWeek)
	cfg := Config{Start: tr.Start}
	seed, err := Run(cfg, SeedPolicy(4), tr.Jobs)
	if err != nil {
		t.Fatal(err)
	}
	o, err := Run(cfg, oracle(tr.Jobs, tr.Start, 4*time.Minute, 4), tr.Jobs)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("oracle: p95 %.0f s, %.1f instance-hours (%.2f × the sample's %.1f)", o.P95, o.InstanceHours, o.InstanceHours/seed.InstanceHours, seed.InstanceHours)
	if o.P95 > 10 {
		t.Errorf("oracle p95 %.0f s: with four minutes of foresight jobs should not wait", o.P95)
	}
	if o.Killed != 0 {
		t.Errorf("oracle killed %d jobs", o.Killed)
	}
	if r := o.InstanceHours / seed.InstanceHours; r < 0.9 {
		t.Errorf("oracle at %.2f × the sample's instance-hours: the sample is not as lean as this test claims", r)
	}
}
