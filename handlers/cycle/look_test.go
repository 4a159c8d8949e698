package cycle

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/messages"
)

// A stack update that replaces the launch template (or a group switched to another template)
// gives launches a new template whose version is again 1: the instances of the old template's
// version 1 are old all the same, and so is one launched from a launch configuration; the one
// already on the new template is kept. The reason names the template, not only the version.
func TestInstancesOnAnotherTemplateWithTheSameVersionAreOld(t *testing.T) {
	g := newFakeGroup("1", "i-a", "i-b", "i-c", "i-lc")
	g.state.CurrentTemplate = "lt-0new"
	g.state.Members[0].Template, g.state.Members[1].Template = "lt-0old", "lt-0old"
	g.state.Members[2].Template = "lt-0new"
	g.state.Members[3].Version = "" // launched from a launch configuration: no template at all
	r := newRig(t, g, nil)
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	rec := r.st.get("blue")
	if want := []string{"i-a", "i-b", "i-lc"}; !slices.Equal(rec.Old, want) || !slices.Equal(rec.Kept, []string{"i-c"}) {
		t.Fatalf("old %v, kept %v; want old %v (another template, version 1 alike, or none) and i-c kept", rec.Old, rec.Kept, want)
	}
	if rec.TargetTemplate != "lt-0new" || rec.TargetVersion != "1" ||
		!strings.Contains(rec.Events[0].Text, "replacing 3 of 4 instances not on launch template lt-0new version 1") {
		t.Fatalf("target %q version %q, first event %q", rec.TargetTemplate, rec.TargetVersion, rec.Events[0].Text)
	}
	rec = r.tickUntilDone(t, 60)
	st, terminated := g.snapshot()
	slices.Sort(terminated)
	if rec.Status != StatusSucceeded || !slices.Equal(terminated, []string{"i-a", "i-b", "i-lc"}) {
		t.Fatalf("status %s (%s), retired %v; want succeeded, the three old ones retired", rec.Status, rec.Reason, terminated)
	}
	for _, m := range st.Members {
		if !st.Current(m) {
			t.Errorf("member %s on %q version %q after the cycle, want lt-0new version 1", m.ID, m.Template, m.Version)
		}
	}
}

// An instance whose launch template specification has a version but no template id (some API
// shapes, a mixed instances override) is compared by its version only: one on the version a
// launch uses now is kept, not replaced by every cycle (and its replacement by the next). One
// launched from a launch configuration (no template at all) is still old.
func TestAnInstanceWithoutATemplateIDIsComparedByItsVersion(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c", "i-lc")
	g.state.CurrentTemplate = "lt-0new"
	g.state.Members[0].Version = "2" // version 2, no template id
	g.state.Members[1].Template, g.state.Members[1].Version = "lt-0new", "2"
	g.state.Members[3].Version = "" // launched from a launch configuration
	for _, c := range []struct {
		m    Member
		want bool
	}{
		{g.state.Members[0], true},
		{g.state.Members[1], true},
		{g.state.Members[2], false}, // version 1, no template id
		{g.state.Members[3], false},
		{Member{ID: "i-other", Template: "lt-0old", Version: "2"}, false},
	} {
		if got := g.state.Current(c.m); got != c.want {
			t.Errorf("Current(%s on %q version %q) = %v, want %v", c.m.ID, c.m.Template, c.m.Version, got, c.want)
		}
	}
	noID := GroupState{CurrentVersion: "2"} // the adapter gave no id for the group's template
	if !noID.Current(Member{Template: "lt-0new", Version: "2"}) || noID.Current(Member{Template: "lt-0new", Version: "1"}) || noID.Current(Member{}) {
		t.Error("a group without a template id: want its members compared by version, one from a launch configuration old")
	}
	r := newRig(t, g, nil)
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	rec := r.st.get("blue")
	if want := []string{"i-c", "i-lc"}; !slices.Equal(rec.Old, want) || !slices.Equal(rec.Kept, []string{"i-a", "i-b"}) {
		t.Fatalf("old %v, kept %v; want old %v and i-a (version 2, no template id), i-b kept", rec.Old, rec.Kept, want)
	}
}

// A group without a launch template (a launch configuration): a cycle replaces nothing, saying
// why, unless it is a cycle of every instance, which still replaces them all.
func TestAGroupWithoutATemplateIsCycledOnlyWithAll(t *testing.T) {
	g := newFakeGroup("", "i-a", "i-b", "i-c")
	for i := range g.state.Members {
		g.state.Members[i].Version = ""
	}
	r := newRig(t, g, nil)
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	if rec := r.st.get("blue"); rec.Status != StatusSucceeded || len(rec.Old) != 0 || !strings.Contains(rec.Reason, "no launch template") {
		t.Fatalf("status %s (%s), old %v; want nothing to replace, saying the group has no launch template", rec.Status, rec.Reason, rec.Old)
	}
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1, All: true}); err != nil {
		t.Fatal(err)
	}
	rec := r.tickUntilDone(t, 60)
	_, terminated := g.snapshot()
	slices.Sort(terminated)
	if rec.Status != StatusSucceeded || !slices.Equal(terminated, []string{"i-a", "i-b", "i-c"}) {
		t.Fatalf("status %s (%s), retired %v; want all three replaced", rec.Status, rec.Reason, terminated)
	}
}

// eventsWith counts the record's events containing text.
func eventsWith(rec Record, text string) int {
	n := 0
	for _, e := range rec.Events {
		if strings.Contains(e.Text, text) {
			n++
		}
	}
	return n
}

// A replacement the worker cannot look at (its address not read: DescribeInstances throttled)
// for longer than the health timeout does not fail the cycle: it is neither healthy nor unhealthy,
// the cycle waits and says so once, and its deadline is extended by the time the worker could not
// look. Once the worker can look and the runner is healthy, the cycle goes on and succeeds.
func TestAReplacementTheWorkerCannotLookAtDoesNotFailTheCycle(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	r := newRig(t, g, nil)
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	r.ticks(t, 1) // the replacement launches (seen at +1m)
	r.hl.setBlindNew(WorkerThrottled)
	r.ticks(t, 8) // +2m … +9m: 8 minutes blind, longer than the 5m health timeout
	rec := r.st.get("blue")
	if rec.Status != StatusRunning {
		t.Fatalf("status %s (%s) after the worker could not look for 8m; want still running", rec.Status, rec.Reason)
	}
	if _, terminated := g.snapshot(); len(terminated) != 0 {
		t.Fatalf("retired %v while the worker could not look at the replacement", terminated)
	}
	if n := eventsWith(rec, "the worker could not look at [i-new01 (throttled)]"); n != 1 {
		t.Errorf("%d events saying the worker could not look, want 1: %v", n, rec.Events)
	}
	if rec.BlindSince.IsZero() || rec.Progress.Unlooked != 1 || rec.Progress.WaitingForHealth != 1 || !slices.Equal(rec.Unlooked, []string{"i-new01"}) {
		t.Errorf("blind since %v, progress %+v, unlooked %v; want a spell open, 1 runner not looked at, waiting", rec.BlindSince, rec.Progress, rec.Unlooked)
	}
	r.hl.setBlindNew("")
	rec = r.tickUntilDone(t, 60)
	_, terminated := g.snapshot()
	slices.Sort(terminated)
	if rec.Status != StatusSucceeded || !slices.Equal(terminated, []string{"i-a", "i-b", "i-c"}) {
		t.Fatalf("status %s (%s), retired %v; want succeeded once the worker could look", rec.Status, rec.Reason, terminated)
	}
	if !rec.BlindSince.IsZero() || rec.BlindFor < 8*time.Minute {
		t.Errorf("blind since %v, blind for %s; want the spell closed, at least 8m long", rec.BlindSince, rec.BlindFor)
	}
	if !slices.Contains(rec.Healthy, "i-new01") {
		t.Errorf("healthy %v; want the replacement the worker could not look at, healthy once it could", rec.Healthy)
	}
}

// A group the worker cannot describe (Auto Scaling throttles it) takes no step, and the time it
// could not look extends the deadline: a replacement that becomes healthy soon after is not
// failed for the worker's outage. The outage costs one write (the spell), not one a tick.
func TestAGroupTheWorkerCannotDescribeDoesNotRunOutTheDeadline(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	r := newRig(t, g, nil)
	r.hl.unknownNew = true // booting: its runner does not answer yet
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	r.ticks(t, 2) // launched at +1m, InService and not answering at +2m
	saves := r.st.saveCount()
	throttled := &WorkerError{Reason: WorkerThrottled, Err: fakeAPIError{code: "Throttling", message: "Rate exceeded"}}
	g.setDescribeErr(fmt.Errorf("describing group grp: %w", throttled))
	ctx := context.Background()
	for i := range 5 { // +3m … +7m
		r.clk.add(time.Minute)
		_, err := r.h.Advance(ctx, "blue", fmt.Sprintf("blind-%d", i))
		if err == nil || messages.IsPermanent(err) {
			t.Fatalf("tick %d while the group cannot be described: %v; want a transient error", i, err)
		}
	}
	rec := r.st.get("blue")
	if r.st.saveCount() != saves+1 || rec.BlindSince.IsZero() || eventsWith(rec, "the worker could not describe the group (throttled") != 1 {
		t.Fatalf("%d writes, blind since %v, events %v; want one write opening the spell, told once", r.st.saveCount()-saves, rec.BlindSince, rec.Events)
	}
	g.setDescribeErr(nil)
	r.ticks(t, 1) // +8m: 7m after the replacement was seen, not answering yet
	if rec := r.st.get("blue"); rec.Status != StatusRunning || !rec.BlindSince.IsZero() || rec.BlindFor < 5*time.Minute {
		t.Fatalf("status %s (%s), blind since %v for %s; want running, the spell closed and counted", rec.Status, rec.Reason, rec.BlindSince, rec.BlindFor)
	}
	r.hl.mu.Lock()
	r.hl.unknownNew = false
	r.hl.mu.Unlock()
	if rec := r.tickUntilDone(t, 60); rec.Status != StatusSucceeded {
		t.Fatalf("status %s (%s); want succeeded", rec.Status, rec.Reason)
	}
}

// A replacement whose runner really does not answer (the runner's failure: a timeout) still fails
// the cycle at its health timeout, and the undo retires it as one that never served.
func TestAReplacementThatDoesNotAnswerStillFailsAtItsTimeout(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	r := newRig(t, g, nil)
	r.hl.unknownNew = true
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	rec := r.tickUntilDone(t, 30)
	if rec.Status != StatusFailed || !strings.Contains(rec.Reason, "not healthy within 5m0s (waiting since") ||
		!strings.Contains(rec.Reason, "runner metrics: timeout") || strings.Contains(rec.Reason, "worker") {
		t.Fatalf("status %s reason %q; want failed at the plain health timeout, blaming the runner", rec.Status, rec.Reason)
	}
	if took := rec.FinishedAt.Sub(rec.StartedAt); took <= 5*time.Minute || took > 7*time.Minute {
		t.Errorf("failed %s after the start, want just past the 5m health timeout", took)
	}
	if _, terminated := g.snapshot(); !slices.Equal(terminated, []string{"i-new01"}) {
		t.Fatalf("retired %v, want the replacement that never served", terminated)
	}
}

// The worker's failures extend the deadline by at most the health timeout: a worker that never
// looks again fails the cycle then, saying it is its own failure, and the undo keeps the
// replacement it could not look at (it may serve) with the desired capacity it takes, rather
// than retire it as one that never served. No old instance is retired.
func TestAWorkerThatNeverLooksAgainFailsTheCycleAtTheBoundAndKeepsTheReplacement(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	r := newRig(t, g, nil)
	r.hl.setBlindNew(WorkerAccessDenied)
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	rec := r.tickUntilDone(t, 30)
	if rec.Status != StatusFailed || !strings.Contains(rec.Reason, "not healthy within 5m0s (extended by the 5m0s the worker could not look; waiting since") ||
		!strings.Contains(rec.Reason, "the worker still could not look at [i-new01 (access-denied)]") ||
		!strings.Contains(rec.Reason, "kept: [i-new01]") {
		t.Fatalf("status %s reason %q; want failed at the bound, saying the worker could not look and the replacement is kept", rec.Status, rec.Reason)
	}
	if took := rec.FinishedAt.Sub(rec.StartedAt); took <= 10*time.Minute || took > 13*time.Minute {
		t.Errorf("failed %s after the start, want just past twice the 5m health timeout", took)
	}
	st, terminated := g.snapshot()
	if len(terminated) != 0 || st.Desired != 4 || rec.UndoPending {
		t.Fatalf("retired %v, desired %d, undo pending %v; want nothing retired, the kept replacement's room kept (4), nothing pending",
			terminated, st.Desired, rec.UndoPending)
	}
}

// An old instance the worker cannot look at is not counted as serving: with max-unavailable 1 and
// one old runner unreadable to the worker, the cycle keeps the floor of serving instances it can
// see, and the cycle still completes.
func TestAnOldRunnerTheWorkerCannotLookAtIsNotCountedAsServing(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	r := newRig(t, g, nil)
	r.hl.blind = map[string]string{"i-b": WorkerNetwork}
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	rec := r.tickUntilDone(t, 60)
	if rec.Status != StatusSucceeded {
		t.Fatalf("status %s (%s); want succeeded", rec.Status, rec.Reason)
	}
	if n := eventsWith(rec, "the worker could not look at [i-b (network)]"); n != 1 {
		t.Errorf("%d events about i-b, want 1: %v", n, rec.Events)
	}
}

// workerReason reads a WorkerError through wrapping; anything else is WorkerOther.
func TestWorkerReason(t *testing.T) {
	if got := workerReason(fmt.Errorf("x: %w", &WorkerError{Reason: WorkerThrottled, Err: errors.New("slow down")})); got != WorkerThrottled {
		t.Errorf("wrapped: %q", got)
	}
	if got := workerReason(errors.New("dynamodb down")); got != WorkerOther {
		t.Errorf("plain: %q", got)
	}
}

// A record of schema 3 (before the worker's failures to look were recorded) is read and carried
// on, and written back with this code's schema.
func TestARecordOfSchema3IsCarriedOnAndWrittenAs4(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	r := newRig(t, g, nil)
	now := r.clk.now()
	r.st.rec["blue"] = Record{Schema: 3, ID: "c1", Status: StatusRunning, StartedAt: now, UpdatedAt: now, MovedAt: now, Desired: 3,
		MaxUnavailable: 1, Surge: 1, OriginalMax: 3, HealthTimeout: 5 * time.Minute, TargetVersion: "2", Old: []string{"i-a", "i-b", "i-c"}}
	r.st.ver["blue"] = 5
	r.hl.setBlindNew(WorkerDeadline)
	r.ticks(t, 3)
	rec := r.st.get("blue")
	if rec.Schema != recordSchema || recordSchema != 4 || rec.Status != StatusRunning || rec.BlindSince.IsZero() {
		t.Fatalf("schema %d (code %d), status %s, blind since %v; want carried on as 4, the spell recorded", rec.Schema, recordSchema, rec.Status, rec.BlindSince)
	}
	r.hl.setBlindNew("")
	if rec := r.tickUntilDone(t, 60); rec.Status != StatusSucceeded {
		t.Fatalf("status %s (%s); want succeeded", rec.Status, rec.Reason)
	}
}
