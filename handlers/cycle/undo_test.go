package cycle

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/messages"
)

// The undo of a failed cycle's surge that Auto Scaling refuses is not dropped: the ticks after
// take it up again, holding the capacity meanwhile, until it is done.
func TestARefusedUndoIsRetriedUntilDone(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	g.terminateErr = fakeAPIError{code: "Throttling", message: "Rate exceeded"}
	r := newRig(t, g, nil)
	r.hl.unknownNew = true // the replacement never serves: the cycle fails, and its undo retires it
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	if rec := r.tickUntilDone(t, 30); rec.Status != StatusFailed {
		t.Fatalf("status %s (%s); want failed", rec.Status, rec.Reason)
	}
	ctx := context.Background()
	for i := range 2 {
		if holds, err := r.h.Active(ctx, "blue"); err != nil || !holds {
			t.Fatalf("after %d refused undo(s): Active = %v, %v; want the cycle to hold the capacity until its undo is done", i+1, holds, err)
		}
		if _, terminated := g.snapshot(); len(terminated) != 0 {
			t.Fatalf("terminated %v while Auto Scaling refuses", terminated)
		}
		r.ticks(t, 1)
	}
	g.setTerminateErr(nil)
	r.ticks(t, 1)
	st, terminated := g.snapshot()
	if len(terminated) != 1 || !strings.HasPrefix(terminated[0], "i-new") || st.Desired != 3 {
		t.Fatalf("retired %v, desired %d; want the broken replacement retired and desired back at 3", terminated, st.Desired)
	}
	if holds, err := r.h.Active(ctx, "blue"); err != nil || holds {
		t.Fatalf("after the undo: Active = %v, %v; want the capacity back to scaling", holds, err)
	}
	r.ticks(t, 2)
	if _, again := g.snapshot(); !slices.Equal(again, terminated) {
		t.Fatalf("retired %v after the undo was done, want nothing more than %v", again, terminated)
	}
}

// An undo Auto Scaling keeps refusing is left after undoRetryFor, and said so: scaling does not
// hold still for ever.
func TestAnUndoRefusedForLongIsLeft(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	g.terminateErr = fakeAPIError{code: "AccessDenied", message: "not authorized"}
	r := newRig(t, g, nil)
	r.hl.unknownNew = true
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	rec := r.tickUntilDone(t, 30)
	if rec.Status != StatusFailed || !rec.UndoPending {
		t.Fatalf("status %s, undo pending %v; want failed with its undo pending", rec.Status, rec.UndoPending)
	}
	r.ticks(t, int(undoRetryFor/time.Minute)+1)
	rec = r.st.get("blue")
	if rec.UndoPending || rec.HoldsCapacity() || !strings.Contains(rec.Events[len(rec.Events)-1].Text, "left undone") {
		t.Fatalf("undo pending %v, holds %v, last event %q; want the undo left, and said so", rec.UndoPending, rec.HoldsCapacity(), rec.Events[len(rec.Events)-1].Text)
	}
}

// A token change while the undo of the last cycle's surge is pending starts its cycle once the
// undo is done; a cycle command meanwhile is refused with why.
func TestAPendingUndoGoesBeforeANewCycle(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	g.terminateErr = errors.New("Throttling: Rate exceeded")
	r := newRig(t, g, nil)
	r.hl.unknownNew = true
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	r.tickUntilDone(t, 30)
	err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1})
	if !messages.IsPermanent(err) || !strings.Contains(err.Error(), "undo of its surge is not done") {
		t.Fatalf("cycle command during the undo = %v; want it refused, saying why", err)
	}
	if err := r.h.ParameterChange(context.Background(), &messages.ParameterChange{Name: "/runnerfleet/blue/token", Operation: messages.ParameterUpdate}, "ev"); err != nil {
		t.Fatal(err)
	}
	if rec := r.st.get("blue"); rec.Trigger == TriggerToken || rec.TokenChangedAt.IsZero() {
		t.Fatalf("token change during the undo: trigger %s, token changed %v; want it deferred", rec.Trigger, rec.TokenChangedAt)
	}
	r.hl.mu.Lock()
	r.hl.unknownNew = false
	r.hl.mu.Unlock()
	g.setTerminateErr(nil)
	r.ticks(t, 1) // the undo
	r.ticks(t, 1) // the token cycle starts
	if rec := r.st.get("blue"); rec.Trigger != TriggerToken || !rec.Active() {
		t.Fatalf("after the undo: %s cycle %s (%s); want the token cycle running", rec.Trigger, rec.Status, rec.Reason)
	}
}

// The undo taken up again is planned from the group as it is then: a replacement that began to
// serve while the undo waited has taken over from an old instance, which goes in its place.
func TestARetriedUndoIsPlannedFromTheGroupAsItIsThen(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	g.terminateErr = fakeAPIError{code: "Throttling", message: "Rate exceeded"}
	r := newRig(t, g, nil)
	r.hl.unknownNew = true
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	if rec := r.tickUntilDone(t, 30); rec.Status != StatusFailed || !strings.Contains(rec.Reason, "retiring i-new01") {
		t.Fatalf("status %s (%s); want failed, its undo retiring i-new01", rec.Status, rec.Reason)
	}
	r.hl.mu.Lock()
	r.hl.unknownNew = false // i-new01 serves now
	r.hl.mu.Unlock()
	g.setTerminateErr(nil)
	r.ticks(t, 1)
	st, terminated := g.snapshot()
	if len(terminated) != 1 || terminated[0] == "i-new01" || st.Desired != 3 || g.minServing < 2 {
		t.Fatalf("retired %v, desired %d, min serving %d; want one old instance retired in place of the replacement that serves, desired 3, at least 2 serving",
			terminated, st.Desired, g.minServing)
	}
}

// A look the worker cannot make while the undo is pending (the replacements' addresses not read:
// DescribeInstances throttled) does not end the undo: a replacement seen not serving when the
// cycle failed is not spared for one blind look. The undo stays pending, nothing is said done,
// and once the worker looks again it retires the broken replacement and lowers desired.
func TestABlindLookDoesNotEndAPendingUndo(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	g.terminateErr = fakeAPIError{code: "Throttling", message: "Rate exceeded"}
	r := newRig(t, g, nil)
	r.hl.unknownNew = true // broken: its runner never answers
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	if rec := r.tickUntilDone(t, 30); rec.Status != StatusFailed || !rec.UndoPending || !strings.Contains(rec.Reason, "retiring i-new01") {
		t.Fatalf("status %s (%s), undo pending %v; want failed, its undo retiring i-new01 pending", rec.Status, rec.Reason, rec.UndoPending)
	}
	g.setTerminateErr(nil)
	r.hl.setBlindNew(WorkerThrottled)
	r.ticks(t, 3)
	rec := r.st.get("blue")
	st, terminated := g.snapshot()
	if !rec.UndoPending || !rec.HoldsCapacity() || eventsWith(rec, "carried out") != 0 || len(terminated) != 0 || st.Desired != 4 {
		t.Fatalf("while the worker cannot look: undo pending %v, holds %v, retired %v, desired %d, events %v; want the undo pending, nothing done",
			rec.UndoPending, rec.HoldsCapacity(), terminated, st.Desired, rec.Events)
	}
	if n := eventsWith(rec, "the undo of the surge waits: the worker could not look at [i-new01 (throttled)]"); n != 1 {
		t.Errorf("%d events saying the undo waits for a look, want 1: %v", n, rec.Events)
	}
	r.hl.setBlindNew("")
	r.ticks(t, 1)
	rec = r.st.get("blue")
	st, terminated = g.snapshot()
	if !slices.Equal(terminated, []string{"i-new01"}) || st.Desired != 3 || rec.UndoPending || eventsWith(rec, "the undo of the surge is carried out") != 1 {
		t.Fatalf("after a real look: retired %v, desired %d, undo pending %v, events %v; want i-new01 retired, desired 3, the undo done",
			terminated, st.Desired, rec.UndoPending, rec.Events)
	}
}

// A worker that cannot look for the whole of undoRetryFor leaves the undo as before, and says
// which replacements it left because it could not look at them.
func TestAnUndoBlindForLongIsLeftNamingWhatTheWorkerCouldNotLookAt(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	g.terminateErr = fakeAPIError{code: "Throttling", message: "Rate exceeded"}
	r := newRig(t, g, nil)
	r.hl.unknownNew = true
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	if rec := r.tickUntilDone(t, 30); rec.Status != StatusFailed || !rec.UndoPending {
		t.Fatalf("status %s (%s), undo pending %v; want failed with its undo pending", rec.Status, rec.Reason, rec.UndoPending)
	}
	g.setTerminateErr(nil)
	r.hl.setBlindNew(WorkerDeadline)
	r.ticks(t, int(undoRetryFor/time.Minute)+1)
	rec := r.st.get("blue")
	last := rec.Events[len(rec.Events)-1].Text
	if rec.UndoPending || rec.HoldsCapacity() || !strings.Contains(last, "left undone") || !strings.Contains(last, "could not look at [i-new01 (deadline)]") {
		t.Fatalf("undo pending %v, holds %v, last event %q; want the undo left, naming i-new01 the worker could not look at", rec.UndoPending, rec.HoldsCapacity(), last)
	}
	if _, terminated := g.snapshot(); len(terminated) != 0 {
		t.Fatalf("retired %v without a look", terminated)
	}
}
