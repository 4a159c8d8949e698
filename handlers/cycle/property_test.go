package cycle

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/runnerfleet/runnerfleet/messages"
)

// Over many fleets, budgets, boot and drain delays and rejected runners, every cycle finishes with
// every old instance replaced, and the instances serving never drop below the floor
// (desired − max-unavailable) because of the cycle — nor below what served at the start when
// rejected runners already put the fleet under it.
func TestCyclePropertyFloorAndCompletion(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	for n := range 300 {
		size := 1 + rng.IntN(6)
		surge, mu := rng.IntN(3), rng.IntN(3)
		if surge+mu == 0 {
			surge = 1
		}
		var ids []string
		for i := range size {
			ids = append(ids, fmt.Sprintf("i-old%d", i))
		}
		g := newFakeGroup("2", ids...)
		g.drainSteps = 1 + rng.IntN(4)
		g.pendingSteps = rng.IntN(3)
		r := newRig(t, g, nil)
		for _, id := range ids {
			if rng.IntN(4) == 0 {
				r.hl.rejected[id] = true
			}
		}
		initialServing := size - len(r.hl.rejected)
		if err := r.command(t, messages.CycleArgs{Surge: surge, MaxUnavailable: mu}); err != nil {
			t.Fatalf("case %d: %v", n, err)
		}
		rec := r.tickUntilDone(t, 400)
		name := fmt.Sprintf("case %d (size %d, surge %d, max-unavailable %d, drain %d, boot %d, rejected %d)",
			n, size, surge, mu, g.drainSteps, g.pendingSteps, len(r.hl.rejected))
		if rec.Status != StatusSucceeded {
			t.Fatalf("%s: %s %q\n%v", name, rec.Status, rec.Reason, rec.Events)
		}
		st, terminated := g.snapshot()
		if len(terminated) != size || len(st.Members) != size || st.Desired != size {
			t.Fatalf("%s: terminated %d, members %d, desired %d", name, len(terminated), len(st.Members), st.Desired)
		}
		if floor := min(size-mu, initialServing); g.minServing < floor {
			t.Fatalf("%s: serving fell to %d, floor %d", name, g.minServing, floor)
		}
	}
}

// When replacements never become healthy, every cycle fails with the reason, retires nothing
// after failing, and still never drops the serving instances below the floor.
func TestCyclePropertyUnhealthyReplacementsFail(t *testing.T) {
	rng := rand.New(rand.NewPCG(20, 20))
	for n := range 200 {
		size := 1 + rng.IntN(6)
		surge, mu := rng.IntN(3), rng.IntN(3)
		if surge+mu == 0 {
			mu = 1
		}
		var ids []string
		for i := range size {
			ids = append(ids, fmt.Sprintf("i-old%d", i))
		}
		g := newFakeGroup("2", ids...)
		g.drainSteps = 1 + rng.IntN(4)
		r := newRig(t, g, nil)
		r.hl.unknownNew = true
		for _, id := range ids {
			if rng.IntN(4) == 0 {
				r.hl.rejected[id] = true
			}
		}
		initialServing := size - len(r.hl.rejected)
		if err := r.command(t, messages.CycleArgs{Surge: surge, MaxUnavailable: mu}); err != nil {
			t.Fatalf("case %d: %v", n, err)
		}
		rec := r.tickUntilDone(t, 400)
		name := fmt.Sprintf("case %d (size %d, surge %d, max-unavailable %d, rejected %d)", n, size, surge, mu, len(r.hl.rejected))
		if rec.Status != StatusFailed {
			t.Fatalf("%s: %s %q", name, rec.Status, rec.Reason)
		}
		_, atFailure := g.snapshot()
		r.tickUntilDone(t, 5)
		if _, after := g.snapshot(); len(after) != len(atFailure) {
			t.Fatalf("%s: retired %v after failing (at failure: %v)", name, after, atFailure)
		}
		if floor := min(size-mu, initialServing); g.minServing < floor {
			t.Fatalf("%s: serving fell to %d, floor %d", name, g.minServing, floor)
		}
	}
}
