package scale

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
)

// newHeldRig is newRig with a Deps.Hold that reports active.
func newHeldRig(t *testing.T, p fleet.Policy, ids ...string) *rig {
	t.Helper()
	r := newRig(t, p, ids...)
	r.hold = &fakeHold{active: true}
	r.rebuild(t, p)
	return r
}

// TestHeldTickReportsButDoesNotResize: while a cycle holds the fleet, a tick that the policy
// would scale out still scrapes, publishes, records and logs its decision (saying it is held and
// what the policy wants), protects busy instances, and leaves the desired capacity alone. Once
// the hold ends, the next tick applies.
func TestHeldTickReportsButDoesNotResize(t *testing.T) {
	t.Parallel()
	r := newHeldRig(t, fleet.Policy{}, "i-1", "i-2")
	for _, id := range []string{"i-1", "i-2"} {
		inst := busy(2, 2)
		inst.QueueSize, inst.QueueAge, inst.QueueStale = 4, 20*time.Second, false
		r.scr.set(id, inst)
	}
	r.tick(t, "tick-1")

	desired, terminated, protected, calls := r.group.snapshot()
	if desired != 2 || slices.Contains(calls, "set_desired") || len(terminated) != 0 {
		t.Errorf("held tick changed the group: desired=%d terminated=%v calls=%v", desired, terminated, calls)
	}
	if !protected["i-1"] || !protected["i-2"] {
		t.Errorf("busy instances not protected during the hold: %v", protected)
	}
	if asked := r.hold.asked; len(asked) != 1 || asked[0] != fleetName {
		t.Errorf("hold asked %v, want once for %s", asked, fleetName)
	}
	fm, n := r.sink.last()
	if n != 1 || fm.DesiredCapacity != 2 || fm.ActiveJobs != 4 || fm.QueuedJobs != 4 || fm.InServiceInstances != 2 {
		t.Errorf("held tick published %d times, last %+v; want the figures with desired 2", n, fm)
	}
	if got := value(t, r.reg, "runnerfleet_fleet_active_jobs", fleetName); got != 4 {
		t.Errorf("/metrics active_jobs = %v, want 4", got)
	}
	if got := value(t, r.reg, "runnerfleet_scale_decisions_total", actionHeld, fleetName); got != 1 {
		t.Errorf("decisions_total{action=held} = %v, want 1", got)
	}
	lines := r.logs.lines(t, "scale decision")
	if len(lines) != 1 {
		t.Fatalf("%d decision log lines, want 1", len(lines))
	}
	l := lines[0]
	reason := fmt.Sprint(l["reason"])
	if l["action"] != actionHeld || l["held"] != true || l["policy_action"] != "scale_out" || l["policy_desired"] != float64(4) ||
		l["desired"] != float64(2) || !strings.Contains(reason, "cycle is in progress") || !strings.Contains(reason, "scale out 2 → 4") {
		t.Errorf("held decision log line: %v", l)
	}
	if rec := r.store.get(fleetName); rec.LastMessageID != "tick-1" || !strings.HasPrefix(rec.LastReason, "held") {
		t.Errorf("held tick not recorded as decided and held: %+v", rec)
	}

	r.hold.set(false, nil)
	r.advance(time.Minute)
	r.tick(t, "tick-2")
	if desired, _, _, _ := r.group.snapshot(); desired != 4 {
		t.Errorf("after the hold, desired = %d, want 4", desired)
	}
	if got := value(t, r.reg, "runnerfleet_scale_decisions_total", "scale_out", fleetName); got != 1 {
		t.Errorf("decisions_total{action=scale_out} = %v, want 1", got)
	}
}

// TestHeldTickRemovesNothing: idle instances past the scale-in window stay while held, and stay
// protected (unprotecting would offer them to the group's own scale-in). Spare capacity seen while
// held does not count: after the hold the window starts again.
func TestHeldTickRemovesNothing(t *testing.T) {
	t.Parallel()
	p := fleet.Policy{ScaleInWindow: 10 * time.Minute, MaxScaleInStep: 2}
	r := newHeldRig(t, p, "i-busy", "i-idle1", "i-idle2")
	r.hold.set(false, nil)
	r.scr.set("i-busy", busy(1, 2))
	r.scr.set("i-idle1", busy(0, 2))
	r.scr.set("i-idle2", busy(0, 2))
	if err := r.group.SetProtection(t.Context(), groupName, []string{"i-idle1"}, true); err != nil {
		t.Fatal(err)
	}
	r.tick(t, "free-0") // the window starts
	if _, _, _, calls := r.group.snapshot(); !slices.Contains(calls, "unprotect") {
		t.Fatalf("an unheld tick did not unprotect the idle instance: %v", calls)
	}
	if err := r.group.SetProtection(t.Context(), groupName, []string{"i-idle1"}, true); err != nil {
		t.Fatal(err)
	}
	r.advance(11 * time.Minute)

	// A cycle starts when the window has passed: the policy would scale in now.
	r.hold.set(true, nil)
	r.tick(t, "held-0")
	lines := r.logs.lines(t, "scale decision")
	if last := lines[len(lines)-1]; last["action"] != actionHeld || last["policy_action"] != "scale_in" ||
		!strings.Contains(fmt.Sprint(last["reason"]), "scale in 3 → 1") {
		t.Errorf("held tick does not say the policy would scale in: %v", last)
	}
	for i := 1; i <= 12; i++ {
		r.advance(time.Minute)
		r.tick(t, fmt.Sprintf("held-%d", i))
	}
	desired, terminated, protected, calls := r.group.snapshot()
	if len(terminated) != 0 || desired != 3 || slices.Contains(calls, "set_desired") {
		t.Fatalf("held ticks removed %v (desired %d, calls %v)", terminated, desired, calls)
	}
	if strings.Count(strings.Join(calls, ","), "unprotect") != 1 || !protected["i-idle1"] {
		t.Errorf("held ticks unprotected an idle instance: protected=%v calls=%v", protected, calls)
	}
	if !protected["i-busy"] {
		t.Error("busy instance not protected during the hold")
	}
	if rec := r.store.get(fleetName); !rec.Scaling.SpareSince.IsZero() || !rec.Scaling.LastScaleIn.IsZero() {
		t.Errorf("held ticks kept the scale-in window or recorded a scale-in: %+v", rec.Scaling)
	}

	// The hold ends: the window starts now, so no removal until it has passed.
	r.hold.set(false, nil)
	r.advance(time.Minute)
	r.tick(t, "free-1")
	if _, terminated, _, _ := r.group.snapshot(); len(terminated) != 0 {
		t.Fatalf("removed %v right after the hold: the window must start afresh", terminated)
	}
	r.advance(11 * time.Minute)
	r.tick(t, "free-2")
	_, terminated, _, _ = r.group.snapshot()
	if len(terminated) == 0 || slices.Contains(terminated, "i-busy") {
		t.Errorf("after the window: terminated %v, want idle instances only", terminated)
	}
}

// TestHoldThatCannotTellHolds: when Hold fails, the tick holds (no resize in what may be the
// middle of a cycle), still publishes, says why, and does not fail the message.
func TestHoldThatCannotTellHolds(t *testing.T) {
	t.Parallel()
	r := newHeldRig(t, fleet.Policy{IdleSlots: 2}, "i-1")
	r.hold.set(false, errors.New("dynamodb: throttled"))
	r.scr.set("i-1", busy(2, 2))
	r.tick(t, "tick-1")
	if desired, _, _, calls := r.group.snapshot(); desired != 1 || slices.Contains(calls, "set_desired") {
		t.Errorf("tick resized although the hold could not be read: desired=%d calls=%v", desired, calls)
	}
	if _, n := r.sink.last(); n != 1 {
		t.Errorf("%d publishes, want 1", n)
	}
	lines := r.logs.lines(t, "scale decision")
	if len(lines) != 1 || lines[0]["action"] != actionHeld || !strings.Contains(fmt.Sprint(lines[0]["reason"]), "cannot tell") {
		t.Errorf("decision log: %v", lines)
	}
	if w := r.logs.lines(t, "cannot tell whether a cycle is in progress; holding scaling this tick"); len(w) != 1 || w[0]["error"] != "dynamodb: throttled" {
		t.Errorf("hold failure warning: %v", w)
	}
}

// TestPinDuringHoldWaits: a scale pin taken while a cycle holds the fleet is recorded at once
// and applied by the first tick after the hold.
func TestPinDuringHoldWaits(t *testing.T) {
	t.Parallel()
	r := newHeldRig(t, fleet.Policy{}, "i-1")
	r.scr.set("i-1", busy(0, 2))
	three := 3
	if err := r.h.Handle(t.Context(), scaleCommand(t, t0, &three, false, 0)); err != nil {
		t.Fatal(err)
	}
	if desired, _, _, _ := r.group.snapshot(); desired != 1 {
		t.Errorf("pin applied during the hold: desired = %d", desired)
	}
	if rec := r.store.get(fleetName); rec.Pin == nil || rec.Pin.Desired != 3 || !strings.Contains(rec.LastReason, "pinned at 3") {
		t.Errorf("pin not recorded, or the held reason hides it: %+v", rec)
	}
	r.hold.set(false, nil)
	r.advance(time.Minute)
	r.tick(t, "tick-after")
	if desired, _, _, _ := r.group.snapshot(); desired != 3 {
		t.Errorf("after the hold, desired = %d, want the pin's 3", desired)
	}
}

// TestHeldReasonSaysWhatHolds: the held decision's reason is the hold's own words — a pending
// undo of a cycle's surge is not "a cycle in progress" (runnerfleet_cycle_in_progress is 0 then).
func TestHeldReasonSaysWhatHolds(t *testing.T) {
	t.Parallel()
	r := newHeldRig(t, fleet.Policy{}, "i-1")
	const why = "cycle c7 aborted; the undo of its surge is pending (ticks take it up again until 2026-11-27T18:10:00Z) and owns the desired capacity"
	r.hold.mu.Lock()
	r.hold.why = why
	r.hold.mu.Unlock()
	r.scr.set("i-1", busy(0, 2))
	r.tick(t, "tick-1")
	lines := r.logs.lines(t, "scale decision")
	if len(lines) != 1 || lines[0]["action"] != actionHeld || !strings.HasPrefix(fmt.Sprint(lines[0]["reason"]), "held: "+why+";") {
		t.Errorf("decision log: %v; want the held reason to begin with the hold's words", lines)
	}
	if rec := r.store.get(fleetName); !strings.Contains(rec.LastReason, "the undo of its surge is pending") {
		t.Errorf("recorded reason %q; want the hold's words", rec.LastReason)
	}
}
