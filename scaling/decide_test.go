package scaling

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
)

// monday0900 is a Monday, 09:00 UTC.
var monday0900 = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

// inst builds a scraped, healthy, in-service instance with 4 slots launched an hour before
// monday0900.
func inst(id string, running int) fleet.Instance {
	return fleet.Instance{
		ID: id, State: fleet.StateInService, LaunchedAt: monday0900.Add(-time.Hour),
		Healthy: true, Capacity: 4, RunningJobs: running, QueueStale: true,
	}
}

func with(i fleet.Instance, f func(*fleet.Instance)) fleet.Instance { f(&i); return i }

func ptr(n int) *int { return &n }

func basePolicy() fleet.Policy {
	return fleet.Policy{MinInstances: 1, MaxInstances: 10, ScaleInWindow: 10 * time.Minute,
		MinUptime: 10 * time.Minute, MaxScaleInStep: 1}
}

// spareFor is a state whose fleet has had spare capacity for d before monday0900.
func spareFor(d time.Duration) State { return State{SpareSince: monday0900.Add(-d)} }

func TestDecide(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		now        time.Time
		policy     func(*fleet.Policy)
		in         Input
		desired    int
		remove     []string
		protect    []string
		unprotect  []string
		reasonHas  string
		checkState func(t *testing.T, s State)
	}{
		{
			name:    "min: an empty group is raised to the floor at once",
			policy:  func(p *fleet.Policy) { p.MinInstances = 2 },
			in:      Input{Desired: 0},
			desired: 2, reasonHas: "scale out 0 → 2",
		},
		{
			name: "repair: desired lowered below the instances listed is set back first; nothing is unprotected while it is below",
			in: Input{Desired: 0, Instances: []fleet.Instance{with(inst("a", 0), func(i *fleet.Instance) { i.Protected = true }),
				with(inst("b", 0), func(i *fleet.Instance) { i.Protected = true }), inst("c", 2)}, State: spareFor(time.Hour)},
			desired: 3, protect: []string{"c"}, reasonHas: "repair 0 → 3: the desired capacity 0 is below the 3 instances in service",
		},
		{
			name: "repair: a policy wanting more scales out from the instances listed in the same decision",
			in: Input{Desired: 1, Instances: []fleet.Instance{inst("a", 4), with(inst("b", 0), func(i *fleet.Instance) { i.Protected = true }),
				with(inst("c", 4), func(i *fleet.Instance) { i.QueueStale, i.QueueAge, i.QueueSize = false, time.Second, 8 })}},
			desired: 4, protect: []string{"a", "c"}, reasonHas: "below the 3 instances in service, so Auto Scaling would remove unprotected ones on its own; scale out 3 → 4",
		},
		{
			name: "repair: not for an instance booting (Auto Scaling launches before it terminates when it rebalances zones)",
			in: Input{Desired: 2, Instances: []fleet.Instance{inst("a", 0), inst("b", 1),
				with(inst("c", 0), func(i *fleet.Instance) { i.State = fleet.StatePendingWait })}, State: spareFor(time.Hour)},
			desired: 1, remove: []string{"a"}, protect: []string{"b"}, reasonHas: "scale in 2 → 1, removing idle a",
		},
		{
			name: "rejected: a pinned decision with runners served clears the rejection's clock too",
			in: Input{Desired: 2, Pinned: ptr(2), State: State{RejectedSince: monday0900.Add(-48 * time.Hour)},
				Instances: []fleet.Instance{inst("a", 1), inst("b", 0)}},
			desired: 2, protect: []string{"a"},
			checkState: func(t *testing.T, s State) {
				if !s.RejectedSince.IsZero() {
					t.Errorf("RejectedSince %v after a pinned decision with runners served: want it cleared", s.RejectedSince)
				}
			},
		},
		{
			name:    "no scale-in: the reason names the guard that kept the idle instance (saturation without a queue signal)",
			in:      Input{Desired: 2, Instances: []fleet.Instance{inst("a", 4), inst("b", 0)}, State: spareFor(time.Hour)},
			desired: 2, protect: []string{"a"}, reasonHas: "no scale-in: spare capacity but removing b would leave no free slot, and no queue signal says none is needed",
		},
		{
			name:    "repair: within the group's maximum",
			in:      Input{Desired: 1, GroupMax: 2, Instances: []fleet.Instance{inst("a", 1), inst("b", 1), inst("c", 1)}},
			desired: 2, protect: []string{"a", "b", "c"}, reasonHas: "repair 1 → 2",
		},
		{
			name:    "missing launches: cancelled before any running instance is removed",
			policy:  func(p *fleet.Policy) { p.MinInstances = 2 },
			in:      Input{Desired: 3, Instances: []fleet.Instance{inst("a", 0), inst("b", 0)}, State: spareFor(time.Hour)},
			desired: 2, reasonHas: "cancelling 1 launch(es) the group has not made",
		},
		{
			name:    "missing launches: a burst's unmade launches go, then idle instances can",
			in:      Input{Desired: 10, Instances: idleInstances(6), State: spareFor(3 * time.Hour)},
			desired: 6, reasonHas: "cancelling 4 launch(es)",
		},
		{
			name:   "rejected: GitLab rejects every runner, the fleet does not grow for it (a probe launched lately); the oldest idle one above the floor goes",
			policy: func(p *fleet.Policy) { p.IdleSlots = 4 },
			in: Input{Desired: 2, State: State{RejectedSince: monday0900.Add(-10 * time.Minute)}, Instances: []fleet.Instance{with(inst("a", 0), func(i *fleet.Instance) { i.Healthy = false }),
				with(inst("b", 0), func(i *fleet.Instance) { i.Healthy, i.LaunchedAt = false, monday0900.Add(-10*time.Minute) })}},
			desired: 1, remove: []string{"a"}, reasonHas: "removing idle rejected a: GitLab rejects the job requests of all 2",
		},
		{
			name:   "rejected: for less than the scale-in window (a minute of 403s from a proxy), nothing is removed",
			policy: func(p *fleet.Policy) { p.IdleSlots = 4 },
			in: Input{Desired: 2, State: State{RejectedSince: monday0900.Add(-time.Minute)}, Instances: []fleet.Instance{with(inst("a", 0), func(i *fleet.Instance) { i.Healthy = false }),
				with(inst("b", 0), func(i *fleet.Instance) { i.Healthy, i.LaunchedAt = false, monday0900.Add(-10*time.Minute) })}},
			desired: 2, reasonHas: "idle ones above the floor go once rejected for 10m0s; 1m0s so far",
			checkState: func(t *testing.T, s State) {
				if !s.RejectedSince.Equal(monday0900.Add(-time.Minute)) {
					t.Errorf("RejectedSince %v: want it carried from the previous decision", s.RejectedSince)
				}
			},
		},
		{
			name:    "rejected: one runner served again clears the rejection's clock",
			in:      Input{Desired: 2, State: State{RejectedSince: monday0900.Add(-time.Hour)}, Instances: []fleet.Instance{inst("a", 1), with(inst("b", 0), func(i *fleet.Instance) { i.Healthy = false })}},
			desired: 2, protect: []string{"a"},
			checkState: func(t *testing.T, s State) {
				if !s.RejectedSince.IsZero() {
					t.Errorf("RejectedSince %v: want it cleared once a runner is served", s.RejectedSince)
				}
			},
		},
		{
			name:    "rejected: at its floor, the fleet probes with one instance every half hour (the token parameter may be fixed)",
			policy:  func(p *fleet.Policy) { p.MinInstances, p.IdleSlots = 2, 4 },
			in:      Input{Desired: 2, Instances: []fleet.Instance{with(inst("a", 0), func(i *fleet.Instance) { i.Healthy = false }), with(inst("b", 0), func(i *fleet.Instance) { i.Healthy = false })}},
			desired: 3, reasonHas: "one instance probes",
		},
		{
			name:    "rejected: the policy's floor still holds",
			policy:  func(p *fleet.Policy) { p.MinInstances, p.IdleSlots = 3, 4 },
			in:      Input{Desired: 2, Instances: []fleet.Instance{with(inst("a", 0), func(i *fleet.Instance) { i.Healthy = false }), with(inst("b", 0), func(i *fleet.Instance) { i.Healthy = false })}},
			desired: 3, reasonHas: "scale out 2 → 3",
		},
		{
			name:    "rejected: one healthy runner is enough to grow",
			policy:  func(p *fleet.Policy) { p.IdleSlots = 4 },
			in:      Input{Desired: 2, Instances: []fleet.Instance{inst("a", 4), with(inst("b", 0), func(i *fleet.Instance) { i.Healthy = false })}},
			desired: 3, protect: []string{"a"}, reasonHas: "scale out 2 → 3",
		},
		{
			name: "marks: an intake-stopped instance whose scrape fails offers no slots",
			in: Input{Desired: 2, Instances: []fleet.Instance{inst("a", 4),
				with(inst("s", 0), func(i *fleet.Instance) { i.Unknown, i.IntakeStopped, i.SpotInterrupted = true, true, true })}},
			desired: 3, protect: []string{"a"}, reasonHas: "have 4 on 2 instances (0 booting, 0 unknown)",
		},
		{
			name:    "max: a huge queue is capped by the policy",
			policy:  func(p *fleet.Policy) { p.MaxInstances = 3 },
			in:      Input{Desired: 1, Instances: []fleet.Instance{with(inst("a", 4), func(i *fleet.Instance) { i.QueueStale, i.QueueSize = false, 100 })}},
			desired: 3, protect: []string{"a"},
		},
		{
			name:    "max: the group's own max caps too",
			in:      Input{Desired: 1, GroupMax: 2, Instances: []fleet.Instance{with(inst("a", 4), func(i *fleet.Instance) { i.QueueStale, i.QueueSize = false, 100 })}},
			desired: 2, protect: []string{"a"},
		},
		{
			name:    "idle slots: full fleet plus 2 spare slots needs one more instance",
			policy:  func(p *fleet.Policy) { p.IdleSlots = 2 },
			in:      Input{Desired: 2, Instances: []fleet.Instance{inst("a", 4), inst("b", 4)}},
			desired: 3, protect: []string{"a", "b"},
		},
		{
			name: "idle slots zero: a full fleet with a fresh empty queue is steady",
			in: Input{Desired: 2, Instances: []fleet.Instance{inst("a", 4),
				with(inst("b", 4), func(i *fleet.Instance) { i.QueueStale, i.QueueAge = false, time.Minute })}},
			desired: 2, protect: []string{"a", "b"}, reasonHas: "steady",
		},
		{
			name:    "saturated without a queue signal: one instance's worth of free slots",
			in:      Input{Desired: 2, Instances: []fleet.Instance{inst("a", 4), inst("b", 4)}},
			desired: 3, protect: []string{"a", "b"}, reasonHas: "queued unseen",
		},
		{
			name:    "saturated with enough free slots asked for: nothing added",
			policy:  func(p *fleet.Policy) { p.IdleSlots = 6 },
			in:      Input{Desired: 2, Instances: []fleet.Instance{inst("a", 4), inst("b", 4)}},
			desired: 4, protect: []string{"a", "b"},
		},
		{
			name:    "scale factor: 12 in use × 1.0 asks 12 spare slots",
			policy:  func(p *fleet.Policy) { p.ScaleFactor = 1 },
			in:      Input{Desired: 3, Instances: []fleet.Instance{inst("a", 4), inst("b", 4), inst("c", 4)}},
			desired: 6, protect: []string{"a", "b", "c"},
		},
		{
			name:   "scale factor limit caps the spare slots",
			policy: func(p *fleet.Policy) { p.ScaleFactor, p.ScaleFactorLimit = 1, 4 },
			in: Input{Desired: 3, Instances: []fleet.Instance{inst("a", 4), inst("b", 4),
				with(inst("c", 4), func(i *fleet.Instance) { i.QueueStale = false })}},
			desired: 4, protect: []string{"a", "b", "c"},
		},
		{
			name:    "saturated without a queue signal: free slots for half the running jobs",
			in:      Input{Desired: 3, Instances: []fleet.Instance{inst("a", 4), inst("b", 4), inst("c", 4)}},
			desired: 5, protect: []string{"a", "b", "c"}, reasonHas: "want 18 slots",
		},
		{
			name:    "scale factor below idle slots: idle slots win",
			policy:  func(p *fleet.Policy) { p.ScaleFactor, p.IdleSlots = 0.1, 4 },
			in:      Input{Desired: 1, Instances: []fleet.Instance{inst("a", 4)}},
			desired: 2, protect: []string{"a"},
		},
		{
			name:    "fresh queue signal: 9 waiting on a full fleet needs 3 instances more",
			in:      Input{Desired: 1, Instances: []fleet.Instance{with(inst("a", 4), func(i *fleet.Instance) { i.QueueStale, i.QueueSize, i.QueueAge = false, 9, 30*time.Second })}},
			desired: 4, protect: []string{"a"}, reasonHas: "queued 9",
		},
		{
			name: "the freshest queue signal wins",
			in: Input{Desired: 2, Instances: []fleet.Instance{
				with(inst("a", 4), func(i *fleet.Instance) { i.QueueStale, i.QueueSize, i.QueueAge = false, 40, 5*time.Minute }),
				with(inst("b", 4), func(i *fleet.Instance) { i.QueueStale, i.QueueSize, i.QueueAge = false, 4, 10*time.Second }),
			}},
			desired: 3, protect: []string{"a", "b"}, reasonHas: "queued 4",
		},
		{
			name:    "stale queue signal is ignored",
			in:      Input{Desired: 1, Instances: []fleet.Instance{with(inst("a", 3), func(i *fleet.Instance) { i.QueueStale, i.QueueSize = true, 9 })}},
			desired: 1, protect: []string{"a"}, reasonHas: "queued unseen",
		},
		{
			name:    "queue signal older than queue_max_age is ignored",
			policy:  func(p *fleet.Policy) { p.QueueMaxAge = time.Minute },
			in:      Input{Desired: 1, Instances: []fleet.Instance{with(inst("a", 3), func(i *fleet.Instance) { i.QueueStale, i.QueueSize, i.QueueAge = false, 9, 2*time.Minute })}},
			desired: 1, protect: []string{"a"},
		},
		{
			name:    "disable_queue_signals ignores a fresh queue",
			policy:  func(p *fleet.Policy) { p.DisableQueueSignals = true },
			in:      Input{Desired: 1, Instances: []fleet.Instance{with(inst("a", 3), func(i *fleet.Instance) { i.QueueStale, i.QueueSize = false, 9 })}},
			desired: 1, protect: []string{"a"},
		},
		{
			name:    "queuing exceeded without a fresh queue signal adds one instance",
			in:      Input{Desired: 1, Instances: []fleet.Instance{with(inst("a", 4), func(i *fleet.Instance) { i.QueuingExceededRate = 0.1 })}},
			desired: 2, protect: []string{"a"},
		},
		{
			name: "booting instances count as coming capacity: no second launch",
			in: Input{Desired: 2, Instances: []fleet.Instance{
				with(inst("a", 4), func(i *fleet.Instance) { i.QueueStale, i.QueueSize = false, 4 }),
				{ID: "b", State: fleet.StatePending, LaunchedAt: monday0900},
			}},
			desired: 2, protect: []string{"a"},
		},
		{
			name: "launches not yet listed count as coming capacity",
			in: Input{Desired: 2, Instances: []fleet.Instance{
				with(inst("a", 4), func(i *fleet.Instance) { i.QueueStale, i.QueueSize = false, 4 }),
			}},
			desired: 2, protect: []string{"a"},
		},
		{
			name:   "intake stopped, unhealthy and spot-interrupted instances offer no slots",
			policy: func(p *fleet.Policy) { p.IdleSlots = 1 },
			in: Input{Desired: 4, Instances: []fleet.Instance{
				inst("a", 4),
				with(inst("b", 0), func(i *fleet.Instance) { i.IntakeStopped = true }),
				with(inst("c", 0), func(i *fleet.Instance) { i.Healthy = false }),
				with(inst("d", 0), func(i *fleet.Instance) { i.SpotInterrupted = true }),
			}},
			desired: 5, protect: []string{"a"},
		},
		{
			name: "leaving instances are ignored",
			in: Input{Desired: 1, Instances: []fleet.Instance{
				inst("a", 1),
				with(inst("z", 3), func(i *fleet.Instance) { i.State = fleet.StateTerminatingWait }),
			}},
			desired: 1, protect: []string{"a"}, reasonHas: "steady",
		},
		{
			name:    "stabilization: spare capacity seen just now removes nothing",
			in:      Input{Desired: 2, Instances: []fleet.Instance{inst("a", 1), inst("b", 0)}},
			desired: 2, protect: []string{"a"}, reasonHas: "no scale-in yet",
			checkState: func(t *testing.T, s State) {
				if !s.SpareSince.Equal(monday0900) {
					t.Errorf("SpareSince = %v, want now", s.SpareSince)
				}
			},
		},
		{
			name:    "stabilization: spare for less than the window removes nothing",
			in:      Input{Desired: 2, State: spareFor(9 * time.Minute), Instances: []fleet.Instance{inst("a", 1), inst("b", 0)}},
			desired: 2, protect: []string{"a"}, reasonHas: "no scale-in yet",
		},
		{
			name:    "stabilization: spare for the window removes the idle instance only",
			in:      Input{Desired: 2, State: spareFor(10 * time.Minute), Instances: []fleet.Instance{inst("a", 1), with(inst("b", 0), func(i *fleet.Instance) { i.Protected = true })}},
			desired: 1, remove: []string{"b"}, protect: []string{"a"}, reasonHas: "scale in 2 → 1",
			checkState: func(t *testing.T, s State) {
				if !s.LastScaleIn.Equal(monday0900) {
					t.Errorf("LastScaleIn = %v, want now", s.LastScaleIn)
				}
			},
		},
		{
			name:    "scale-out resets the stabilization window",
			policy:  func(p *fleet.Policy) { p.IdleSlots = 8 },
			in:      Input{Desired: 2, State: spareFor(time.Hour), Instances: []fleet.Instance{inst("a", 4), inst("b", 1)}},
			desired: 4, protect: []string{"a", "b"},
			checkState: func(t *testing.T, s State) {
				if !s.SpareSince.IsZero() || !s.LastScaleOut.Equal(monday0900) {
					t.Errorf("state = %+v, want SpareSince zero and LastScaleOut now", s)
				}
			},
		},
		{
			name:    "busy fleet clears the spare mark",
			in:      Input{Desired: 2, State: spareFor(time.Hour), Instances: []fleet.Instance{inst("a", 4), inst("b", 1)}},
			desired: 2, protect: []string{"a", "b"}, reasonHas: "steady",
			checkState: func(t *testing.T, s State) {
				if !s.SpareSince.IsZero() {
					t.Errorf("SpareSince = %v, want zero", s.SpareSince)
				}
			},
		},
		{
			name:    "max_scale_in_step bounds one decision",
			policy:  func(p *fleet.Policy) { p.MaxScaleInStep = 2 },
			in:      Input{Desired: 5, State: spareFor(time.Hour), Instances: []fleet.Instance{inst("a", 1), inst("b", 0), inst("c", 0), inst("d", 0), inst("e", 0)}},
			desired: 3, remove: []string{"b", "c"}, protect: []string{"a"},
		},
		{
			name: "min_uptime: a young idle instance stays",
			in: Input{Desired: 3, State: spareFor(time.Hour), Instances: []fleet.Instance{
				inst("a", 1),
				with(inst("young", 0), func(i *fleet.Instance) { i.LaunchedAt = monday0900.Add(-5 * time.Minute) }),
				with(inst("old", 0), func(i *fleet.Instance) { i.LaunchedAt = monday0900.Add(-20 * time.Minute) }),
			}},
			desired: 2, remove: []string{"old"}, protect: []string{"a"},
		},
		{
			name: "min_uptime: only young idle instances means no scale-in",
			in: Input{Desired: 2, State: spareFor(time.Hour), Instances: []fleet.Instance{
				inst("a", 1),
				with(inst("young", 0), func(i *fleet.Instance) { i.LaunchedAt = monday0900.Add(-5 * time.Minute) }),
			}},
			desired: 2, protect: []string{"a"}, reasonHas: "no idle instance older than",
		},
		{
			name:    "scale-in never goes below min",
			policy:  func(p *fleet.Policy) { p.MinInstances, p.MaxScaleInStep = 2, 5 },
			in:      Input{Desired: 4, State: spareFor(time.Hour), Instances: []fleet.Instance{inst("a", 0), inst("b", 0), inst("c", 0), inst("d", 0)}},
			desired: 2, remove: []string{"a", "b"},
		},
		{
			name:    "scale-in keeps the slots wanted: only one of two idle goes",
			policy:  func(p *fleet.Policy) { p.IdleSlots, p.MaxScaleInStep = 3, 5 },
			in:      Input{Desired: 3, State: spareFor(time.Hour), Instances: []fleet.Instance{inst("a", 2), inst("b", 0), inst("c", 0)}},
			desired: 2, remove: []string{"b"}, protect: []string{"a"},
		},
		{
			name: "unknown guard: 1 of 4 unknown is above the default share 0.2",
			in: Input{Desired: 4, State: spareFor(time.Hour), Instances: []fleet.Instance{
				inst("a", 1), inst("b", 0), inst("c", 0),
				{ID: "u", State: fleet.StateInService, LaunchedAt: monday0900.Add(-time.Hour), Unknown: true, UnknownReason: "timeout"},
			}},
			desired: 4, protect: []string{"a"}, reasonHas: "1 of 4 in-service instances unknown",
		},
		{
			name:   "unknown guard: a share of 0.25 allowed by max_unknown_share 0.5",
			policy: func(p *fleet.Policy) { p.MaxUnknownShare = 0.5 },
			in: Input{Desired: 4, State: spareFor(time.Hour), Instances: []fleet.Instance{
				inst("a", 1), inst("b", 0), inst("c", 0),
				{ID: "u", State: fleet.StateInService, LaunchedAt: monday0900.Add(-time.Hour), Unknown: true},
			}},
			desired: 3, remove: []string{"b"}, protect: []string{"a"},
		},
		{
			name:   "unknown guard: a negative share forbids any unknown",
			policy: func(p *fleet.Policy) { p.MaxUnknownShare = -1 },
			in: Input{Desired: 11, State: spareFor(time.Hour), Instances: append([]fleet.Instance{
				{ID: "u", State: fleet.StateInService, LaunchedAt: monday0900.Add(-time.Hour), Unknown: true},
			}, idleInstances(10)...)},
			desired: 11, reasonHas: "unknown",
		},
		{
			name:   "unknown instances are never removed and keep their protection",
			policy: func(p *fleet.Policy) { p.MaxUnknownShare = 1 },
			in: Input{Desired: 2, State: spareFor(time.Hour), Instances: []fleet.Instance{
				{ID: "u", State: fleet.StateInService, LaunchedAt: monday0900.Add(-time.Hour), Unknown: true, Protected: true},
				{ID: "v", State: fleet.StateInService, LaunchedAt: monday0900.Add(-time.Hour), Unknown: true},
			}},
			desired: 2, reasonHas: "steady",
		},
		{
			// u may be running four jobs: without a, b and u would offer 8 slots for 7 jobs,
			// one free against the 2 asked for, and the fleet would grow again next tick.
			name:   "an unknown instance's slots are never spare",
			policy: func(p *fleet.Policy) { p.MaxUnknownShare = 1; p.IdleSlots = 2 },
			in: Input{Desired: 3, State: spareFor(time.Hour), Instances: []fleet.Instance{
				{ID: "u", State: fleet.StateInService, LaunchedAt: monday0900.Add(-time.Hour), Unknown: true},
				inst("a", 0), inst("b", 3),
			}},
			desired: 3, protect: []string{"b"}, reasonHas: "steady",
		},
		{
			name:    "over max: idle instances go without waiting for the window",
			policy:  func(p *fleet.Policy) { p.MaxInstances = 2 },
			in:      Input{Desired: 3, Instances: []fleet.Instance{inst("a", 4), inst("b", 4), inst("c", 0)}},
			desired: 2, remove: []string{"c"}, protect: []string{"a", "b"},
		},
		{
			// Auto Scaling refuses to go below its MinSize: "over max" removals would fail every tick.
			name:    "a group minimum above the policy's maximum wins",
			policy:  func(p *fleet.Policy) { p.MaxInstances = 2 },
			in:      Input{Desired: 3, GroupMin: 3, Instances: []fleet.Instance{inst("a", 4), inst("b", 0), inst("c", 0)}},
			desired: 3, protect: []string{"a"}, reasonHas: "steady",
		},
		{
			name:   "removal prefers instances offering no slots, then the longest idle",
			policy: func(p *fleet.Policy) { p.MaxScaleInStep = 2 },
			in: Input{Desired: 4, State: State{SpareSince: monday0900.Add(-time.Hour), IdleSince: map[string]time.Time{
				"a": monday0900.Add(-time.Minute), "b": monday0900.Add(-30 * time.Minute), "c": monday0900.Add(-2 * time.Minute),
			}}, Instances: []fleet.Instance{inst("a", 0), inst("b", 0), inst("c", 0), with(inst("sick", 0), func(i *fleet.Instance) { i.Healthy = false })}},
			desired: 2, remove: []string{"sick", "b"},
		},
		{
			name:    "instance_slots: a booting instance is assumed to bring 4 slots",
			policy:  func(p *fleet.Policy) { p.IdleSlots, p.InstanceSlots = 6, 4 },
			in:      Input{Desired: 1, Instances: []fleet.Instance{{ID: "a", State: fleet.StatePending, LaunchedAt: monday0900}}},
			desired: 2,
		},
		{
			name:    "instance_slots: a booting instance is assumed to bring 1 slot",
			policy:  func(p *fleet.Policy) { p.IdleSlots, p.InstanceSlots = 6, 1 },
			in:      Input{Desired: 1, Instances: []fleet.Instance{{ID: "a", State: fleet.StatePending, LaunchedAt: monday0900}}},
			desired: 6,
		},
		{
			name:    "reported capacity beats instance_slots",
			policy:  func(p *fleet.Policy) { p.IdleSlots, p.InstanceSlots = 6, 1 },
			in:      Input{Desired: 2, Instances: []fleet.Instance{inst("a", 0), {ID: "b", State: fleet.StatePending, LaunchedAt: monday0900}}},
			desired: 2, reasonHas: "steady",
		},
		{
			name:   "removal prefers a rebalance-marked idle instance to the longest idle",
			policy: func(p *fleet.Policy) { p.MaxScaleInStep = 1 },
			in: Input{Desired: 3, State: State{SpareSince: monday0900.Add(-time.Hour), IdleSince: map[string]time.Time{
				"a": monday0900.Add(-30 * time.Minute), "b": monday0900.Add(-time.Minute),
			}}, Instances: []fleet.Instance{inst("a", 0), with(inst("b", 0), func(i *fleet.Instance) { i.RebalanceRecommended = true }), inst("c", 1)}},
			desired: 2, remove: []string{"b"}, protect: []string{"c"},
		},
		{
			name:    "no scale-in that would leave the fleet saturated without a queue signal",
			in:      Input{Desired: 2, State: spareFor(time.Hour), Instances: []fleet.Instance{inst("a", 4), inst("b", 0)}},
			desired: 2, protect: []string{"a"}, reasonHas: "no scale-in",
		},
		{
			name: "a fresh empty queue lets the same fleet scale in",
			in: Input{Desired: 2, State: spareFor(time.Hour), Instances: []fleet.Instance{
				with(inst("a", 4), func(i *fleet.Instance) { i.QueueStale, i.QueueAge = false, time.Minute }), inst("b", 0)}},
			desired: 1, remove: []string{"b"}, protect: []string{"a"},
		},
		{
			name: "schedule: working hours raise the floor",
			policy: func(p *fleet.Policy) {
				p.Schedules = []fleet.Schedule{{Periods: []string{"* 8-17 * * mon-fri"}, Timezone: "Europe/Berlin", Min: ptr(3)}}
			},
			in:      Input{Desired: 1, Instances: []fleet.Instance{inst("a", 0)}},
			desired: 3,
		},
		{
			name: "schedule: outside its periods the base floor holds",
			now:  time.Date(2026, 1, 4, 9, 0, 0, 0, time.UTC), // Sunday
			policy: func(p *fleet.Policy) {
				p.Schedules = []fleet.Schedule{{Periods: []string{"* 8-17 * * mon-fri"}, Timezone: "Europe/Berlin", Min: ptr(3)}}
			},
			in:      Input{Desired: 1, Instances: []fleet.Instance{inst("a", 0)}},
			desired: 1, reasonHas: "steady",
		},
		{
			name: "schedule: the time zone decides (07:30 UTC is 08:30 in Berlin, 02:30 in New York)",
			now:  time.Date(2026, 1, 5, 7, 30, 0, 0, time.UTC),
			policy: func(p *fleet.Policy) {
				p.Schedules = []fleet.Schedule{
					{Periods: []string{"* 8-17 * * mon-fri"}, Timezone: "America/New_York", Min: ptr(5)},
					{Periods: []string{"* 8-17 * * mon-fri"}, Timezone: "Europe/Berlin", IdleSlots: ptr(8)},
				}
			},
			in:      Input{Desired: 1, Instances: []fleet.Instance{inst("a", 0)}},
			desired: 2,
		},
		{
			name: "schedule: the last matching one wins",
			policy: func(p *fleet.Policy) {
				p.Schedules = []fleet.Schedule{
					{Periods: []string{"* * * * *"}, Min: ptr(5)},
					{Periods: []string{"* 9 * * *"}, Min: ptr(2)},
				}
			},
			in:      Input{Desired: 1, Instances: []fleet.Instance{inst("a", 0)}},
			desired: 2,
		},
		{
			name:    "pinned above: raise at once",
			in:      Input{Desired: 1, Pinned: ptr(4), Instances: []fleet.Instance{inst("a", 0)}},
			desired: 4, reasonHas: "pinned at 4",
		},
		{
			name:    "pinned below busy instances: only idle ones go, no window",
			in:      Input{Desired: 3, Pinned: ptr(1), Instances: []fleet.Instance{inst("a", 1), inst("b", 2), with(inst("c", 0), func(i *fleet.Instance) { i.LaunchedAt = monday0900 })}},
			desired: 2, remove: []string{"c"}, protect: []string{"a", "b"},
		},
		{
			name:    "pinned below launches the group has not made: those are cancelled first",
			in:      Input{Desired: 10, Pinned: ptr(6), Instances: idleInstances(6)},
			desired: 6, reasonHas: "cancelling 4 launch(es)",
		},
		{
			name:    "pinned with every instance busy waits",
			in:      Input{Desired: 2, Pinned: ptr(1), Instances: []fleet.Instance{inst("a", 1), inst("b", 2)}},
			desired: 2, protect: []string{"a", "b"}, reasonHas: "waiting",
		},
		{
			name:    "protection: busy protected, idle unprotected, booting untouched",
			policy:  func(p *fleet.Policy) { p.IdleSlots = 4 },
			in:      Input{Desired: 3, Instances: []fleet.Instance{inst("a", 2), with(inst("b", 0), func(i *fleet.Instance) { i.Protected = true }), {ID: "c", State: fleet.StatePending, Protected: true}}},
			desired: 3, protect: []string{"a"}, unprotect: []string{"b"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := basePolicy()
			if tc.policy != nil {
				tc.policy(&p)
			}
			if err := ValidatePolicy(p.WithDefaults()); err != nil {
				t.Fatalf("test policy invalid: %v", err)
			}
			now := tc.now
			if now.IsZero() {
				now = monday0900
			}
			d := Decide(now, p, tc.in)
			if d.Desired != tc.desired {
				t.Errorf("Desired = %d, want %d (%s)", d.Desired, tc.desired, d.Reason)
			}
			for _, c := range []struct {
				what      string
				got, want []string
			}{{"Remove", d.Remove, tc.remove}, {"Protect", d.Protect, tc.protect}, {"Unprotect", d.Unprotect, tc.unprotect}} {
				if !slices.Equal(c.got, c.want) {
					t.Errorf("%s = %v, want %v (%s)", c.what, c.got, c.want, d.Reason)
				}
			}
			if !strings.Contains(d.Reason, tc.reasonHas) {
				t.Errorf("Reason = %q, want it to contain %q", d.Reason, tc.reasonHas)
			}
			if len(d.Remove) > 0 && d.Desired != tc.in.Desired-len(d.Remove) {
				t.Errorf("Desired %d with %d removals from %d", d.Desired, len(d.Remove), tc.in.Desired)
			}
			if tc.checkState != nil {
				tc.checkState(t, d.State)
			}
		})
	}
}

func idleInstances(n int) []fleet.Instance {
	out := make([]fleet.Instance, n)
	for i := range out {
		out[i] = inst(fmt.Sprintf("i%02d", i), 0)
	}
	return out
}

// A pin far below the fleet's size removes at most MaxPinnedRemovals a decision: a tick's
// terminations are made in series within its apply timeout.
func TestPinRemovesInBatches(t *testing.T) {
	t.Parallel()
	in := Input{Desired: 300, Pinned: ptr(1), Instances: idleInstances(300)}
	d := Decide(monday0900, basePolicy(), in)
	if len(d.Remove) != MaxPinnedRemovals || d.Desired != 300-MaxPinnedRemovals {
		t.Fatalf("removed %d, desired %d; want %d removed, desired %d", len(d.Remove), d.Desired, MaxPinnedRemovals, 300-MaxPinnedRemovals)
	}
}

// A fleet whose every runner GitLab rejects, for a day, with every new runner rejected too:
// probes replace old rejected instances rather than add up to the maximum.
func TestRejectedFleetStaysNearItsFloor(t *testing.T) {
	t.Parallel()
	p := basePolicy()
	p.IdleSlots, p.MaxInstances = 4, 40
	var members []fleet.Instance
	for _, id := range []string{"a", "b"} {
		members = append(members, with(inst(id, 0), func(i *fleet.Instance) { i.Healthy = false }))
	}
	desired, state, next := 2, State{}, 0
	for minute := range 24 * 60 {
		now := monday0900.Add(time.Duration(minute) * time.Minute)
		for i := range members { // a launch boots for 3 minutes, then its runner is rejected
			if members[i].State.Booting() && now.Sub(members[i].LaunchedAt) >= 3*time.Minute {
				members[i] = fleet.Instance{ID: members[i].ID, State: fleet.StateInService, LaunchedAt: members[i].LaunchedAt, Capacity: 4, QueueStale: true}
			}
		}
		d := Decide(now, p, Input{Desired: desired, Instances: members, State: state})
		members = slices.DeleteFunc(members, func(i fleet.Instance) bool { return slices.Contains(d.Remove, i.ID) })
		for len(members) < d.Desired {
			next++
			members = append(members, fleet.Instance{ID: fmt.Sprintf("n%03d", next), State: fleet.StatePending, LaunchedAt: now})
		}
		desired, state = d.Desired, d.State
		if desired > p.MinInstances+1 {
			t.Fatalf("minute %d: desired %d, want at most the floor and one probe (%s)", minute, desired, d.Reason)
		}
	}
	if next < 40 || next > 50 {
		t.Errorf("%d probes in a day, want about one every %s", next, RejectedProbeEvery)
	}
}

func TestDecideIdleSinceCarried(t *testing.T) {
	t.Parallel()
	p := basePolicy()
	in := Input{Desired: 2, Instances: []fleet.Instance{inst("a", 0), inst("b", 1)}}
	d1 := Decide(monday0900, p, in)
	if got := d1.State.IdleSince["a"]; !got.Equal(monday0900) {
		t.Fatalf("IdleSince[a] = %v, want %v", got, monday0900)
	}
	if _, ok := d1.State.IdleSince["b"]; ok {
		t.Fatalf("busy b has an idle mark")
	}
	in.State = d1.State
	in.Instances = []fleet.Instance{inst("a", 0), inst("b", 0)}
	later := monday0900.Add(time.Minute)
	d2 := Decide(later, p, in)
	if got := d2.State.IdleSince["a"]; !got.Equal(monday0900) {
		t.Errorf("IdleSince[a] = %v, want kept %v", got, monday0900)
	}
	if got := d2.State.IdleSince["b"]; !got.Equal(later) {
		t.Errorf("IdleSince[b] = %v, want %v", got, later)
	}
	if !d2.State.SpareSince.Equal(monday0900) {
		t.Errorf("SpareSince = %v, want carried %v", d2.State.SpareSince, monday0900)
	}
}

func TestDecidePure(t *testing.T) {
	t.Parallel()
	in := Input{Desired: 3, State: spareFor(time.Hour), Instances: []fleet.Instance{inst("a", 1), inst("b", 0), inst("c", 0)}}
	before := fmt.Sprintf("%+v", in)
	a := Decide(monday0900, basePolicy(), in)
	b := Decide(monday0900, basePolicy(), in)
	if fmt.Sprintf("%+v", a) != fmt.Sprintf("%+v", b) {
		t.Errorf("two decisions on the same input differ:\n%+v\n%+v", a, b)
	}
	if after := fmt.Sprintf("%+v", in); after != before {
		t.Errorf("Decide changed its input")
	}
}

func TestValidatePolicyListsEveryProblem(t *testing.T) {
	t.Parallel()
	p := fleet.Policy{MinInstances: 0, MaxInstances: -1, IdleSlots: -1, ScaleFactor: -1, ScaleFactorLimit: -1,
		InstanceSlots: -1, ScaleInWindow: -time.Second, MaxScaleInStep: -1, MinUptime: -time.Second,
		MaxUnknownShare: 2, QueueMaxAge: -time.Second,
		Schedules: []fleet.Schedule{{Periods: []string{"not cron", "@every 1m"}, Timezone: "Mars/Olympus", Min: ptr(0), IdleSlots: ptr(-1)}, {}}}
	err := ValidatePolicy(p)
	if err == nil {
		t.Fatal("ValidatePolicy accepted an invalid policy")
	}
	for _, want := range []string{"min must be at least 1", "max (-1)", "idle_slots", "scale_factor must", "scale_factor_limit",
		"instance_slots", "scale_in_window", "max_scale_in_step", "min_uptime", "max_unknown_share", "queue_max_age",
		"schedules[0]: timezone", "schedules[0]: min", "schedules[0]: idle_slots", "schedules[1]: periods must not be empty",
		`schedules[0].periods[0] "not cron"`, `schedules[0].periods[1] "@every 1m": @every is an interval`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if err := ValidatePolicy(fleet.Policy{}.WithDefaults()); err != nil {
		t.Errorf("default policy invalid: %v", err)
	}
}

// A runner whose metrics stop answering for ReplaceUnknownAfter while others answer is replaced
// (terminated without lowering desired): one at a time, the longest failing first, never while
// anything boots, never when every runner fails (the scrape's path, not the instances), never
// when disabled; its failing clock starts at the first failed scrape and survives decisions.
func TestReplaceAnInstanceWhoseMetricsStopAnswering(t *testing.T) {
	t.Parallel()
	unknown := func(id string) fleet.Instance {
		return with(inst(id, 0), func(i *fleet.Instance) { i.Unknown = true })
	}
	failing := func(d time.Duration, ids ...string) State {
		s := State{UnknownSince: map[string]time.Time{}}
		for _, id := range ids {
			s.UnknownSince[id] = monday0900.Add(-d)
			d -= time.Minute // later ids started failing a minute later
		}
		return s
	}
	for _, c := range []struct {
		name    string
		policy  func(*fleet.Policy)
		in      Input
		replace []string
	}{
		{"failing for 31m while the others answer: the longest failing goes",
			nil, Input{Desired: 4, Instances: []fleet.Instance{inst("a", 1), unknown("u1"), unknown("u2"), inst("b", 0)}, State: failing(32*time.Minute, "u2", "u1")},
			[]string{"u2"}},
		{"failing for 20m: not yet", nil,
			Input{Desired: 2, Instances: []fleet.Instance{inst("a", 1), unknown("u1")}, State: failing(20*time.Minute, "u1")}, nil},
		{"first failed scrape: its clock starts now", nil,
			Input{Desired: 2, Instances: []fleet.Instance{inst("a", 1), unknown("u1")}}, nil},
		{"every runner failing: the scrape's path, nothing is replaced", nil,
			Input{Desired: 2, Instances: []fleet.Instance{unknown("u1"), unknown("u2")}, State: failing(time.Hour, "u1", "u2")}, nil},
		{"an instance booting: wait for it", nil,
			Input{Desired: 3, Instances: []fleet.Instance{inst("a", 1), unknown("u1"), with(inst("p", 0), func(i *fleet.Instance) { i.State = fleet.StatePending })},
				State: failing(time.Hour, "u1")}, nil},
		{"disabled", func(p *fleet.Policy) { p.ReplaceUnknownAfter = -1 },
			Input{Desired: 2, Instances: []fleet.Instance{inst("a", 1), unknown("u1")}, State: failing(time.Hour, "u1")}, nil},
		{"intake stopped by a notice: not the policy's to replace", nil,
			Input{Desired: 2, Instances: []fleet.Instance{inst("a", 1), with(unknown("u1"), func(i *fleet.Instance) { i.IntakeStopped = true })},
				State: failing(time.Hour, "u1")}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := basePolicy()
			if c.policy != nil {
				c.policy(&p)
			}
			d := Decide(monday0900, p, c.in)
			if !slices.Equal(d.Replace, c.replace) {
				t.Errorf("Replace = %v, want %v (%s)", d.Replace, c.replace, d.Reason)
			}
			if len(c.replace) > 0 && (d.Desired < c.in.Desired || !strings.Contains(d.Reason, "replacing "+c.replace[0]+": its runner's metrics have not answered for 32m0s")) {
				t.Errorf("desired %d from %d, reason %q: want desired kept and the reason naming the instance", d.Desired, c.in.Desired, d.Reason)
			}
			for _, inst := range c.in.Instances {
				_, tracked := d.State.UnknownSince[inst.ID]
				if want := inst.Unknown && inst.State.InService() && !inst.IntakeStopped; tracked != want {
					t.Errorf("UnknownSince has %s: %v, want %v", inst.ID, tracked, want)
				}
			}
			if prev, ok := c.in.State.UnknownSince["u1"]; ok && d.State.UnknownSince["u1"] != prev && d.State.UnknownSince["u1"] != (time.Time{}) {
				t.Errorf("u1's failing clock moved: %v → %v", prev, d.State.UnknownSince["u1"])
			}
		})
	}
}
