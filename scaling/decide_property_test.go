package scaling

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
)

// TestDecideInvariants checks, over many random fleets, what must hold whatever the policy:
// only idle, scraped, members are removed, never more than the step, never below the floor;
// scale-out stays within the bounds; busy instances are protected and never unprotected.
func TestDecideInvariants(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	states := []fleet.LifecycleState{fleet.StatePending, fleet.StateInService, fleet.StateInService, fleet.StateInService, fleet.StateTerminatingWait}
	for n := range 5000 {
		p := fleet.Policy{
			MinInstances: 1 + rng.IntN(3), MaxInstances: 4 + rng.IntN(10), IdleSlots: rng.IntN(6),
			ScaleFactor: rng.Float64(), MaxScaleInStep: 1 + rng.IntN(4),
			ScaleInWindow: time.Duration(rng.IntN(15)) * time.Minute, MinUptime: time.Duration(rng.IntN(15)) * time.Minute,
			MaxUnknownShare: rng.Float64(),
		}
		var in Input
		for i := range rng.IntN(12) {
			inst := fleet.Instance{
				ID: fmt.Sprintf("i-%02d", i), State: states[rng.IntN(len(states))],
				LaunchedAt: monday0900.Add(-time.Duration(rng.IntN(40)) * time.Minute),
				Protected:  rng.IntN(2) == 0, Healthy: rng.IntN(8) > 0, IntakeStopped: rng.IntN(10) == 0,
				Unknown: rng.IntN(8) == 0, Capacity: 4, RunningJobs: rng.IntN(5) * rng.IntN(2),
				QueueSize: rng.IntN(20), QueueAge: time.Duration(rng.IntN(600)) * time.Second, QueueStale: rng.IntN(2) == 0,
			}
			in.Instances = append(in.Instances, inst)
		}
		// Desired may be below the members listed (protected instances kept, a termination not yet
		// seen) or above them (launches not yet listed).
		in.Desired = max(0, len(in.Instances)+rng.IntN(6)-3)
		in.State.SpareSince = monday0900.Add(-time.Duration(rng.IntN(30)) * time.Minute)
		for _, inst := range in.Instances {
			if inst.Unknown && rng.IntN(2) == 0 {
				if in.State.UnknownSince == nil {
					in.State.UnknownSince = map[string]time.Time{}
				}
				in.State.UnknownSince[inst.ID] = monday0900.Add(-time.Duration(rng.IntN(60)) * time.Minute)
			}
		}
		if rng.IntN(10) == 0 {
			pin := rng.IntN(6)
			in.Pinned = &pin
		}
		d := Decide(monday0900, p, in)

		byID := map[string]fleet.Instance{}
		for _, i := range in.Instances {
			byID[i.ID] = i
		}
		for _, id := range d.Remove {
			i, ok := byID[id]
			if !ok || !i.Idle() || i.State.Leaving() {
				t.Fatalf("case %d: removed %s which is not an idle member: %+v\n%s", n, id, i, d.Reason)
			}
			if in.Pinned == nil && monday0900.Sub(i.LaunchedAt) < p.MinUptime {
				t.Fatalf("case %d: removed %s younger than min uptime\n%s", n, id, d.Reason)
			}
		}
		if len(d.Remove) > 0 {
			if d.Desired != in.Desired-len(d.Remove) {
				t.Fatalf("case %d: desired %d after %d removals from %d", n, d.Desired, len(d.Remove), in.Desired)
			}
			if in.Pinned == nil && len(d.Remove) > p.MaxScaleInStep {
				t.Fatalf("case %d: %d removals, step %d", n, len(d.Remove), p.MaxScaleInStep)
			}
			if in.Pinned == nil && d.Desired < p.MinInstances {
				t.Fatalf("case %d: removal below min %d\n%s", n, p.MinInstances, d.Reason)
			}
			if in.Pinned != nil && d.Desired < max(*in.Pinned, in.GroupMin, 0) {
				t.Fatalf("case %d: removal below the pin %d: desired %d\n%s", n, *in.Pinned, d.Desired, d.Reason)
			}
		} else if d.Desired < in.Desired {
			// Only launches the group has not made are cancelled: never below the members listed.
			if d.Desired < live(in) || !strings.Contains(d.Reason, "cancelling") {
				t.Fatalf("case %d: desired %d from %d without removals, %d members listed\n%s", n, d.Desired, in.Desired, live(in), d.Reason)
			}
		} else if d.Desired != in.Desired && in.Pinned == nil && d.Desired > p.MaxInstances && d.Desired != inService(in) {
			// Above the maximum only to cover the members listed (a repair), never to launch.
			t.Fatalf("case %d: desired %d from %d without removals (max %d)\n%s", n, d.Desired, in.Desired, p.MaxInstances, d.Reason)
		}
		if serving := inService(in); in.Desired < serving && (in.Pinned == nil || *in.Pinned > 0) && (len(d.Unprotect) > 0 || len(d.Remove) > 0 || d.Desired < serving) {
			// Below its members in service, the group would remove unprotected ones itself: the
			// capacity is set back to them before anything is unprotected or removed.
			t.Fatalf("case %d: desired %d below %d in service: decided %d, unprotect %v, remove %v\n%s",
				n, in.Desired, serving, d.Desired, d.Unprotect, d.Remove, d.Reason)
		}
		if len(d.Remove) > 0 && in.Pinned == nil && !strings.Contains(d.Reason, "removing idle rejected") {
			// The usual scale-in never removes while too many in-service instances are unknown.
			unknown := count(in, func(i fleet.Instance) bool {
				return i.State.InService() && i.Unknown && !i.IntakeStopped && !i.SpotInterrupted
			})
			if blocked := unknownGuard(p.WithDefaults(), unknown, inService(in)); blocked != "" {
				t.Fatalf("case %d: removed %v while %s\n%s", n, d.Remove, blocked, d.Reason)
			}
		}
		if len(d.Replace) > 1 {
			t.Fatalf("case %d: %d replacements in one decision: %v", n, len(d.Replace), d.Replace)
		}
		for _, id := range d.Replace {
			if i := byID[id]; !i.Unknown || !i.State.InService() || slices.Contains(d.Remove, id) || d.Observation.Booting > 0 {
				t.Fatalf("case %d: replaces %s, which is not an unknown in-service instance, or is removed too, or while %d boot\n%s",
					n, id, d.Observation.Booting, d.Reason)
			}
		}
		for _, id := range d.Unprotect {
			if !byID[id].Idle() || slices.Contains(d.Remove, id) {
				t.Fatalf("case %d: unprotects %s which is not idle or is removed", n, id)
			}
		}
		for _, i := range in.Instances {
			if i.Busy() && !i.State.Leaving() && !i.Protected && !slices.Contains(d.Protect, i.ID) {
				t.Fatalf("case %d: busy %s left unprotected", n, i.ID)
			}
		}
	}
}

// count counts in's instances for which keep holds.
func count(in Input, keep func(fleet.Instance) bool) int {
	n := 0
	for _, i := range in.Instances {
		if keep(i) {
			n++
		}
	}
	return n
}

// live counts in's members that are not leaving; inService, those in service.
func live(in Input) int { return count(in, func(i fleet.Instance) bool { return !i.State.Leaving() }) }
func inService(in Input) int {
	return count(in, func(i fleet.Instance) bool { return i.State.InService() })
}
