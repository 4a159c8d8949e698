package sim

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/scaling"
)

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func jobsOf(pairs ...float64) []Job {
	var out []Job
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, Job{Arrival: secs(pairs[i]), Duration: secs(pairs[i+1])})
	}
	return out
}

// desiredChanges lists (second, desired) at each tick where the desired capacity changed.
func desiredChanges(r Result, start int) [][2]int {
	var out [][2]int
	prev := start
	for _, s := range r.Timeline {
		if s.Desired != prev {
			out = append(out, [2]int{int(s.At.Sub(DefaultStart).Seconds()), s.Desired})
			prev = s.Desired
		}
	}
	return out
}

// TestClockAndQueue: one instance with one slot serves three jobs first come first served; every
// figure is known by hand.
func TestClockAndQueue(t *testing.T) {
	t.Parallel()
	cfg := Config{Concurrency: 1, Min: 1, Max: 1}
	r, err := Run(cfg, SeedPolicy(1), jobsOf(0, 100, 10, 50, 20, 30))
	if err != nil {
		t.Fatal(err)
	}
	// Job 1 runs 0–100; job 2 waits 90 s, runs 100–150; job 3 waits 130 s, runs 150–180.
	if r.P50 != 90 || r.P95 != 130 || r.Max != 130 {
		t.Errorf("waits p50/p95/max = %g/%g/%g, want 90/130/130", r.P50, r.P95, r.Max)
	}
	if r.Duration != 180*time.Second {
		t.Errorf("Duration = %s, want 3m0s", r.Duration)
	}
	if want := 180.0 / 3600; r.InstanceHours != want {
		t.Errorf("InstanceHours = %g, want %g", r.InstanceHours, want)
	}
	if r.ScaleActions != 0 || r.Killed != 0 || r.Jobs != 3 {
		t.Errorf("actions/killed/jobs = %d/%d/%d, want 0/0/3", r.ScaleActions, r.Killed, r.Jobs)
	}
	// Ticks at 0, 60, 120 (the run ends at 180, after the last job).
	if len(r.Timeline) != 4 {
		t.Fatalf("%d samples, want 4 (ticks at 0, 60, 120, 180)", len(r.Timeline))
	}
	s := r.Timeline[1]
	if s.Running != 1 || s.Queued != 2 || s.Capacity != 1 || s.OldestWait != 50*time.Second {
		t.Errorf("at 60 s: %+v, want 1 running, 2 queued, 1 slot, oldest waiting 50 s", s)
	}
	s = r.Timeline[2]
	if s.Running != 1 || s.Queued != 1 || s.OldestWait != 100*time.Second {
		t.Errorf("at 120 s: %+v, want 1 running, 1 queued, oldest waiting 100 s", s)
	}
}

// TestSeedBurst: the sample's arithmetic and timing on a burst of 10 jobs of 1000 s.
func TestSeedBurst(t *testing.T) {
	t.Parallel()
	var pairs []float64
	for range 10 {
		pairs = append(pairs, 0, 1000)
	}
	r, err := Run(Config{}, SeedPolicy(4), jobsOf(pairs...))
	if err != nil {
		t.Fatal(err)
	}
	// t=0: 4 running → ceil(6/4)=2. t=180: the new instance is ready and takes 4 before that
	// tick decides: ceil(10/4)=3; the third is ready at 360 and takes the last 2.
	// t=1000: the first 4 end → t=1020: ceil(8/4)=2, 840 s after the last activity: lower, the
	// oldest (idle) instance goes. Later lowerings wait 600 s; the run ends at 1360.
	want := [][2]int{{0, 2}, {180, 3}, {1020, 2}}
	if got := desiredChanges(r, 1); !slices.Equal(got, want) {
		t.Errorf("desired changes = %v, want %v", got, want)
	}
	if r.ScaleActions != 3 {
		t.Errorf("ScaleActions = %d, want 3", r.ScaleActions)
	}
	// Waits: 4 × 0 s, 4 × 180 s, 2 × 360 s.
	if r.P50 != 180 || r.P95 != 360 || r.Max != 360 {
		t.Errorf("waits p50/p95/max = %g/%g/%g, want 180/360/360", r.P50, r.P95, r.Max)
	}
	// Instance 1: 0–1020; instance 2: 0–1360; instance 3: 180–1360.
	if want := (1020.0 + 1360 + 1180) / 3600; !near(r.InstanceHours, want) {
		t.Errorf("InstanceHours = %g, want %g", r.InstanceHours, want)
	}
	if r.Killed != 0 {
		t.Errorf("Killed = %d, want 0", r.Killed)
	}
}

// TestSeedKillsLongJobOnRemovedInstance: the sample removes the oldest instance, busy with a long
// job, which is killed 3600 s after the removal began. Our policy removes only idle instances.
func TestSeedKillsLongJobOnRemovedInstance(t *testing.T) {
	t.Parallel()
	pairs := []float64{0, 10000}
	for range 7 {
		pairs = append(pairs, 0, 300)
	}
	jobs := jobsOf(pairs...)
	r, err := Run(Config{}, SeedPolicy(4), jobs)
	if err != nil {
		t.Fatal(err)
	}
	// t=0: ceil(6/4)=2; t=180: ceil(10/4)=3, the third instance in service at 360 ends the last
	// activity; t=780 wants ceil(3/4)=1 but the group is in cooldown until 960; t=960: the two
	// oldest go: instance 1 runs the long job, killed at 960+3600 = 4560.
	if got, want := desiredChanges(r, 1), [][2]int{{0, 2}, {180, 3}, {960, 1}}; !slices.Equal(got, want) {
		t.Errorf("desired changes = %v, want %v", got, want)
	}
	if r.Killed != 1 {
		t.Errorf("Killed = %d, want 1", r.Killed)
	}
	if r.Duration != 4560*time.Second {
		t.Errorf("run ended at %s, want 1h16m0s (the kill)", r.Duration)
	}
	// Instance 1: 0–4560; instance 2: 0–960; instance 3: 180–4560.
	if want := (4560.0 + 960 + 4380) / 3600; !near(r.InstanceHours, want) {
		t.Errorf("InstanceHours = %g, want %g", r.InstanceHours, want)
	}

	ours, err := Run(Config{}, OurPolicy(fleet.Policy{}), jobs)
	if err != nil {
		t.Fatal(err)
	}
	if ours.Killed != 0 || ours.Duration != 10000*time.Second {
		t.Errorf("our policy: killed %d, ended at %s; want 0 killed, the long job done at 2h46m40s", ours.Killed, ours.Duration)
	}
}

// TestCooldownCountsFromTheEndOfActivities: a group honouring its cooldown (the sample lowers
// with HonorCooldown true) refuses to lower while an instance launches or drains, and until the
// cooldown has passed since that activity ended; raising is never refused.
func TestCooldownCountsFromTheEndOfActivities(t *testing.T) {
	t.Parallel()
	// One job of 1000 s at 0 (instance 1, the only one in service), one of 10 s at 2000.
	jobs := jobsOf(0, 1000, 2000, 10)
	scripted := func(now time.Time, in scaling.Input) scaling.Decision {
		switch at := now.Sub(DefaultStart); {
		case at < 780*time.Second:
			return scaling.Decision{Desired: 3}
		case at < 840*time.Second:
			return scaling.Decision{Desired: 2}
		}
		return scaling.Decision{Desired: 1}
	}
	cases := []struct {
		name     string
		cooldown time.Duration
		want     [][2]int
	}{
		// t=0: 3, launches in service at 180; t=60..720 wants 3; t=780: 600 s after 180, lower to
		// 2: instance 1 (oldest, busy) drains until 1000; t=840..1560: refused (draining until
		// 1000, then cooling down until 1600); t=1620: 1.
		{"cooldown", SeedCooldown, [][2]int{{0, 3}, {780, 2}, {1620, 1}}},
		// Without a cooldown the group follows the policy at once.
		{"none", 0, [][2]int{{0, 3}, {780, 2}, {840, 1}}},
	}
	for _, c := range cases {
		r, err := Run(Config{}, Policy{Name: c.name, Decide: scripted, KillAfter: SeedHookTimeout, Cooldown: c.cooldown}, jobs)
		if err != nil {
			t.Fatal(err)
		}
		if got := desiredChanges(r, 1); !slices.Equal(got, c.want) {
			t.Errorf("%s: desired changes = %v, want %v", c.name, got, c.want)
		}
		if r.Killed != 0 {
			t.Errorf("%s: killed %d, want 0", c.name, r.Killed)
		}
	}
	// A refused lowering is said in the sample's reason.
	r, _ := Run(Config{}, Policy{Name: "cooldown", Decide: scripted, KillAfter: SeedHookTimeout, Cooldown: SeedCooldown}, jobs)
	if reason := r.Timeline[14].Reason; !strings.Contains(reason, "refused 2 → 1") {
		t.Errorf("reason at 840 s = %q, want the refusal", reason)
	}
}

// TestBootingInstancesAreBilled: our policy, on 6 jobs of 600 s at 0 on one instance of 4 slots,
// launches one instance at 0 (the runner picking up its fourth job saw 2 more waiting); it is
// billed from its launch, not from 180 s when it takes jobs, exactly as the sample's launches.
func TestBootingInstancesAreBilled(t *testing.T) {
	t.Parallel()
	var pairs []float64
	for range 6 {
		pairs = append(pairs, 0, 600)
	}
	r, err := Run(Config{}, OurPolicy(fleet.Policy{}), jobsOf(pairs...))
	if err != nil {
		t.Fatal(err)
	}
	// t=0: launch one (ready at 180, takes the 2 waiting); t=600: instance 1 is idle, spare
	// since 600, the 2-minute window passes at 720: instance 1 goes.
	if got, want := desiredChanges(r, 1), [][2]int{{0, 2}, {720, 1}}; !slices.Equal(got, want) {
		t.Errorf("desired changes = %v, want %v", got, want)
	}
	// Waits: 4 × 0 s, 2 × 180 s; the run ends at 780 when the second instance's jobs end.
	if r.P50 != 0 || r.P95 != 180 || r.Duration != 780*time.Second {
		t.Errorf("p50 %g, p95 %g, ended at %s; want 0, 180, 13m0s", r.P50, r.P95, r.Duration)
	}
	// Instance 1: 0–720; instance 2: 0–780, its 180 s of boot included.
	if want := (720.0 + 780) / 3600; !near(r.InstanceHours, want) {
		t.Errorf("InstanceHours = %g, want %g", r.InstanceHours, want)
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// spy records every input a policy is given.
type spy struct {
	inner  Policy
	inputs []scaling.Input
	times  []time.Time
}

func (s *spy) policy() Policy {
	p := s.inner
	p.Decide = func(now time.Time, in scaling.Input) scaling.Decision {
		s.inputs = append(s.inputs, in)
		s.times = append(s.times, now)
		return s.inner.Decide(now, in)
	}
	return p
}

// TestPolicyIsNotFedTheTrueQueue: queue signals are what runners saw at their last pickup;
// switched off, the policy decides differently and the simulation still serves every job.
func TestPolicyIsNotFedTheTrueQueue(t *testing.T) {
	t.Parallel()
	tr, err := Generate(KindSpike, 3)
	if err != nil {
		t.Fatal(err)
	}
	on := &spy{inner: OurPolicy(fleet.Policy{})}
	rOn, err := Run(Config{}, on.policy(), tr.Jobs)
	if err != nil {
		t.Fatal(err)
	}
	off := &spy{inner: OurPolicy(fleet.Policy{})}
	rOff, err := Run(Config{NoQueueSignals: true}, off.policy(), tr.Jobs)
	if err != nil {
		t.Fatal(err)
	}
	if rOff.Jobs != len(tr.Jobs) || rOff.Duration < tr.Jobs[len(tr.Jobs)-1].Arrival {
		t.Fatalf("without queue signals the run did not serve the trace: %+v", rOff)
	}
	if slices.Equal(desiredChanges(rOn, 1), desiredChanges(rOff, 1)) {
		t.Error("decisions are the same with and without queue signals: the policy does not use them")
	}
	// Without queue signals the fleet still grows when saturated, and serves the spike.
	if rOff.ScaleActions == 0 || rOff.P95 > 2*rOn.P95+600 {
		t.Errorf("without queue signals: %d scale actions, p95 %.0f s (with: %.0f s)", rOff.ScaleActions, rOff.P95, rOn.P95)
	}
	for _, in := range off.inputs {
		for _, i := range in.Instances {
			if i.QueueSize != 0 || i.QueueDepth != 0 || i.QueuingExceededRate != 0 || (i.State.InService() && !i.QueueStale) {
				t.Fatalf("queue signals off, yet instance %s reports %+v", i.ID, i)
			}
		}
	}
	// With signals on, what the policy sees is never the true queue at the tick in general:
	// find a tick where the freshest reported size differs from the simulator's queue.
	differs := false
	for k, in := range on.inputs {
		freshest, age := -1, time.Duration(1<<62)
		for _, i := range in.Instances {
			if i.State.Booting() && (i.RunningJobs != 0 || i.Capacity != 0 || !i.QueueStale && i.QueueSize != 0) {
				t.Fatalf("booting instance %s reports %+v", i.ID, i)
			}
			if !i.QueueStale && i.QueueAge < age {
				freshest, age = i.QueueSize, i.QueueAge
			}
		}
		if freshest >= 0 && freshest != rOn.Timeline[k].Queued {
			differs = true
		}
	}
	if !differs {
		t.Error("the reported queue always equals the true queue: the policy is fed the true queue")
	}
}

func TestScrapeFailuresMakeInstancesUnknown(t *testing.T) {
	t.Parallel()
	tr, _ := Generate(KindSpike, 1)
	s := &spy{inner: OurPolicy(fleet.Policy{})}
	r, err := Run(Config{ScrapeFailure: 0.3, Seed: 4}, s.policy(), tr.Jobs)
	if err != nil {
		t.Fatal(err)
	}
	unknown, inService := 0, 0
	for _, in := range s.inputs {
		for _, i := range in.Instances {
			if i.State.InService() {
				inService++
				if i.Unknown {
					unknown++
					if i.RunningJobs != 0 || i.Capacity != 0 {
						t.Fatalf("unknown instance reports data: %+v", i)
					}
				}
			}
		}
	}
	share := float64(unknown) / float64(inService)
	if share < 0.25 || share > 0.35 {
		t.Errorf("unknown share %.3f, want about 0.3", share)
	}
	if r.Killed != 0 {
		t.Errorf("Killed = %d with unknown instances, want 0", r.Killed)
	}
}

func TestRunRejects(t *testing.T) {
	t.Parallel()
	if _, err := Run(Config{Concurrency: -1, Max: -5}, SeedPolicy(4), nil); err == nil {
		t.Error("invalid config accepted")
	}
	if _, err := Run(Config{}, SeedPolicy(4), jobsOf(10, 1, 0, 1)); err == nil {
		t.Error("unsorted jobs accepted")
	}
}

// TestLongJobsDoNotChurn: a fleet saturated by hour-long jobs, with no queue signal fresh after
// their pickup, grows once to find out whether jobs wait, and keeps that instance rather than
// launching and removing one every few minutes.
func TestLongJobsDoNotChurn(t *testing.T) {
	t.Parallel()
	r, err := Run(Config{}, OurPolicy(fleet.Policy{}), jobsOf(0, 3600, 0, 3600, 0, 3600, 0, 3600))
	if err != nil {
		t.Fatal(err)
	}
	if r.ScaleActions > 2 {
		t.Errorf("%d scale actions in an hour of four long jobs, want at most 2: %v", r.ScaleActions, desiredChanges(r, 1))
	}
	if r.Killed != 0 || r.Max != 0 {
		t.Errorf("killed %d, max wait %g s; want 0 and 0", r.Killed, r.Max)
	}
}
