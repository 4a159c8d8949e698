package cycle

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/messages"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type rig struct {
	h     *Handler
	g     *fakeGroup
	hl    *fakeHealth
	st    *fakeStore
	clk   *clock
	fleet FleetConfig
}

func newRig(t *testing.T, g *fakeGroup, tweak func(*FleetConfig)) *rig {
	t.Helper()
	hl := &fakeHealth{unknown: map[string]bool{}, rejected: map[string]bool{}}
	g.health = hl
	f := FleetConfig{Settings: fleet.Settings{Name: "blue", GroupName: "grp", TokenParameter: "/runnerfleet/blue/token"},
		HealthTimeout: 5 * time.Minute}
	if tweak != nil {
		tweak(&f)
	}
	clk := &clock{t: time.Date(2026, 11, 27, 18, 0, 0, 0, time.UTC)}
	st := newFakeStore()
	h, err := New(Config{Fleets: []FleetConfig{f}, Now: clk.now},
		Deps{Group: g, Health: hl, State: st, Registerer: prometheus.NewRegistry()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return &rig{h: h, g: g, hl: hl, st: st, clk: clk, fleet: f}
}

func (r *rig) command(t *testing.T, args messages.CycleArgs) error {
	t.Helper()
	c := messages.NewCommand("blue", messages.CommandCycle, r.clk.now())
	c.Issuer = "alice"
	*c.Cycle = args
	return r.h.Command(context.Background(), &c)
}

// tickUntilRetired advances the cycle once a minute until it has retired n instances (at most
// 60 ticks).
func (r *rig) tickUntilRetired(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < 60 && len(r.st.get("blue").Retired) < n; i++ {
		r.clk.add(time.Minute)
		if _, err := r.h.Advance(context.Background(), "blue", fmt.Sprintf("retire-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
}

// ticks advances the cycle n times, once a minute.
func (r *rig) ticks(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		r.clk.add(time.Minute)
		if _, err := r.h.Advance(context.Background(), "blue", fmt.Sprintf("tick-%d-%s", i, r.clk.now().Format("150405"))); err != nil {
			t.Fatalf("tick %d: %v", i, err)
		}
	}
}

// tickUntilDone advances the cycle once a minute until it ends (or n ticks).
func (r *rig) tickUntilDone(t *testing.T, n int) Record {
	t.Helper()
	for i := range n {
		r.clk.add(time.Minute)
		if _, err := r.h.Advance(context.Background(), "blue", "tick-"+string(rune('a'+i%26))+r.clk.now().Format("150405")); err != nil {
			t.Fatalf("tick %d: %v", i, err)
		}
		if !r.st.get("blue").Active() { // Advance's answer is whether it holds the capacity
			break
		}
	}
	return r.st.get("blue")
}

func TestCycleReplacesEveryOldInstanceKeepingTheFloor(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	r := newRig(t, g, nil)
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	rec := r.tickUntilDone(t, 50)
	if rec.Status != StatusSucceeded {
		t.Fatalf("status %s (%s); events %v", rec.Status, rec.Reason, rec.Events)
	}
	st, terminated := g.snapshot()
	slices.Sort(terminated)
	if want := []string{"i-a", "i-b", "i-c"}; !slices.Equal(terminated, want) {
		t.Fatalf("terminated %v, want %v", terminated, want)
	}
	for _, m := range st.Members {
		if m.Version != "2" {
			t.Fatalf("member %s still on version %s", m.ID, m.Version)
		}
	}
	if len(st.Members) != 3 || st.Desired != 3 || st.Max != 3 || g.restored != 1 {
		t.Fatalf("group ends with %d members, desired %d, max %d (restored %d times); want 3/3/3/1", len(st.Members), st.Desired, st.Max, g.restored)
	}
	if g.minServing < 2 {
		t.Fatalf("serving dropped to %d, below desired − max-unavailable = 2", g.minServing)
	}
	if rec.Progress.Replaced != 3 || rec.Progress.Total != 3 {
		t.Fatalf("progress %+v", rec.Progress)
	}
}

func TestCycleWithSurgeNeverRetiresBeforeAReplacementIsHealthy(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	r := newRig(t, g, nil)
	// Max-unavailable 2 would allow retiring at once; with a surge, replacements come first.
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 2, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	if _, terminated := g.snapshot(); len(terminated) != 0 {
		t.Fatalf("first step retired %v before any replacement was healthy", terminated)
	}
	rec := r.tickUntilDone(t, 50)
	if rec.Status != StatusSucceeded || g.minServing < 3 {
		t.Fatalf("status %s, min serving %d (want succeeded, never below 3 with a surge)", rec.Status, g.minServing)
	}
}

func TestCycleWithoutSurgeSpendsTheBudget(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	r := newRig(t, g, nil)
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1}); err == nil {
		// MaxUnavailable 1 with Surge 0 from the command: zero means "fleet default" only when both are 0.
	} else {
		t.Fatal(err)
	}
	if _, terminated := g.snapshot(); len(terminated) != 1 {
		t.Fatalf("no surge, max-unavailable 1: the first step retires one; got %v", terminated)
	}
	rec := r.tickUntilDone(t, 50)
	if rec.Status != StatusSucceeded || g.minServing < 2 {
		t.Fatalf("status %s, min serving %d", rec.Status, g.minServing)
	}
}

// A cycle without surge on a group at its MinSize: Auto Scaling refuses every decrement, so
// the cycle replaces in place (no decrement) and finishes, never below the floor.
func TestCycleWithoutSurgeAtMinSizeReplacesInPlace(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	g.state.Min = 3
	r := newRig(t, g, nil)
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1}); err != nil {
		t.Fatal(err)
	}
	rec := r.tickUntilDone(t, 50)
	st, _ := g.snapshot()
	if rec.Status != StatusSucceeded || len(g.inPlace) != 3 || st.Desired != 3 || g.minServing < 2 {
		t.Fatalf("status %s (%s), in place %v, desired %d, min serving %d; want succeeded, all 3 in place, desired 3, never below 2",
			rec.Status, rec.Reason, g.inPlace, st.Desired, g.minServing)
	}
}

// An old instance an operator puts into Standby during the cycle is set aside: the cycle
// neither retires it nor waits for it (it would hold scaling for as long as it stays there),
// and says so when it ends.
func TestAnOldInstanceInStandbyIsSetAside(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	r := newRig(t, g, nil)
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	g.setState("i-c", fleet.StateStandby)
	rec := r.tickUntilDone(t, 50)
	if rec.Status != StatusSucceeded || rec.Progress.Aside != 1 || !strings.Contains(rec.Reason, "i-c (Standby)") {
		t.Fatalf("status %s reason %q progress %+v; want succeeded with i-c set aside", rec.Status, rec.Reason, rec.Progress)
	}
	if _, terminated := g.snapshot(); slices.Contains(terminated, "i-c") {
		t.Errorf("the cycle terminated i-c, in Standby")
	}
}

func TestUnhealthyReplacementStopsTheCycle(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	r := newRig(t, g, nil)
	r.hl.unknownNew = true // replacements' runners never answer
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	rec := r.tickUntilDone(t, 30)
	if rec.Status != StatusFailed || !strings.Contains(rec.Reason, "not healthy within 5m0s") || !strings.Contains(rec.Reason, "timeout") {
		t.Fatalf("status %s reason %q", rec.Status, rec.Reason)
	}
	// No old instance is retired; the cycle's own replacement, which never served, is, so the
	// fleet is back where it started: desired 3, MaxSize 3.
	if _, terminated := g.snapshot(); !slices.Equal(terminated, []string{"i-new01"}) {
		t.Fatalf("retired %v, want only the replacement that never served", terminated)
	}
	if m := g.maxSize(); m != 3 {
		t.Errorf("MaxSize %d after the failed cycle, want the original 3 (the surge's room given back)", m)
	}
	if st, _ := g.snapshot(); st.Desired != 3 {
		t.Errorf("desired %d after the failed cycle, want 3", st.Desired)
	}
	// Later ticks do nothing.
	active, err := r.h.Advance(context.Background(), "blue", "later")
	if err != nil || active {
		t.Fatalf("advance after failure: active %v err %v", active, err)
	}
}

// A group that launches nothing (no capacity, a broken launch template) would hold a cycle — and
// with it scaling — for ever: the cycle fails once it has not moved for the health timeout.
func TestAGroupThatLaunchesNothingFailsTheCycle(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	g.launchFails = true
	r := newRig(t, g, nil)
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	rec := r.tickUntilDone(t, 30)
	if rec.Status != StatusFailed || !strings.Contains(rec.Reason, "no progress for") ||
		!strings.Contains(rec.Reason, "3 instances for a desired capacity of 4") {
		t.Fatalf("status %s reason %q", rec.Status, rec.Reason)
	}
	if took := rec.FinishedAt.Sub(rec.StartedAt); took <= 5*time.Minute || took > 7*time.Minute {
		t.Errorf("failed %s after the start, want just past the 5m health timeout", took)
	}
	if _, terminated := g.snapshot(); len(terminated) != 0 {
		t.Fatalf("retired %v although no replacement launched", terminated)
	}
	if m := g.maxSize(); m != 3 {
		t.Errorf("MaxSize %d after the failed cycle, want the original 3", m)
	}
}

// An instance the cycle keeps (already current) that does not serve leaves too few healthy
// instances to retire any old one within the budget: the cycle fails and names it.
func TestAKeptInstanceThatDoesNotServeFailsTheCycleWithItsName(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-kept")
	g.state.Members[2].Version = "2"
	r := newRig(t, g, nil)
	r.hl.unknown["i-kept"] = true
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	rec := r.tickUntilDone(t, 30)
	if rec.Status != StatusFailed || !strings.Contains(rec.Reason, "i-kept (runner metrics: timeout)") {
		t.Fatalf("status %s reason %q", rec.Status, rec.Reason)
	}
	// The failed cycle gives back its surge: its healthy replacement took over from the oldest
	// old instance, which is retired, so desired and MaxSize are back at 3; never below the
	// floor of 2 serving.
	st, terminated := g.snapshot()
	if !slices.Equal(terminated, []string{"i-a"}) || st.Desired != 3 || g.maxSize() != 3 || g.minServing < 2 {
		t.Fatalf("retired %v, desired %d, MaxSize %d, min serving %d; want [i-a], 3, 3, at least 2", terminated, st.Desired, g.maxSize(), g.minServing)
	}
}

// Waiting for drains is not a stall: a drain runs as long as its jobs do, so a cycle whose drains
// outlast the health timeout many times over still succeeds.
func TestLongDrainsAreNotAStall(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b")
	g.drainSteps = 40 // 40 one-minute ticks, eight times the 5m health timeout
	r := newRig(t, g, nil)
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	rec := r.tickUntilDone(t, 200)
	if rec.Status != StatusSucceeded {
		t.Fatalf("status %s reason %q", rec.Status, rec.Reason)
	}
	if took := rec.FinishedAt.Sub(rec.StartedAt); took < 40*time.Minute {
		t.Fatalf("finished after %s: the drains were not waited for", took)
	}
}

// Once only drains are left, the cycle gives the capacity back to scaling (a long job would
// otherwise hold the fleet's scaling for as long as it runs), takes no part in the desired
// capacity and ignores what scaling launches, and still succeeds when the drains end.
func TestTheTailOfDrainsDoesNotHoldScaling(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b")
	g.drainSteps = 40
	g.state.Max = 4 // room for the surge and for scaling: MaxSize is not the cycle's here
	r := newRig(t, g, nil)
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var released time.Time
	for i := range 200 {
		r.clk.add(time.Minute)
		holds, err := r.h.Advance(ctx, "blue", fmt.Sprintf("tick-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		rec := r.st.get("blue")
		if !rec.Active() {
			break
		}
		if active, err := r.h.Active(ctx, "blue"); err != nil || active != holds {
			t.Fatalf("Active = %v, %v; Advance said %v", active, err, holds)
		}
		if holds {
			continue
		}
		if released.IsZero() {
			released = r.clk.now()
			if rec.Progress.Draining == 0 {
				t.Fatalf("released the capacity with nothing draining: %+v", rec.Progress)
			}
			// Scaling, now in charge, grows the fleet by one; its new instance never serves.
			g.mu.Lock()
			g.state.Desired++
			g.mu.Unlock()
			r.hl.unknownNew = true
		}
	}
	rec := r.st.get("blue")
	if released.IsZero() || rec.Status != StatusSucceeded {
		t.Fatalf("released at %v, status %s (%s); want the capacity released in the tail, then success", released, rec.Status, rec.Reason)
	}
	if took := rec.FinishedAt.Sub(released); took < 30*time.Minute {
		t.Errorf("succeeded %s after the release: the drains were not waited for", took)
	}
	if st, _ := g.snapshot(); st.Desired != 3 {
		t.Errorf("desired %d at the end, want scaling's 3 left as it is", st.Desired)
	}
}

// Without surge the last retirement lowers the desired capacity and the next step raises it
// back: the cycle succeeds only once the group has launched that replacement, not while it is
// short of an instance (no capacity, a quota).
func TestCycleWithoutSurgeWaitsForTheLastReplacement(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b")
	r := newRig(t, g, nil)
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1}); err != nil {
		t.Fatal(err)
	}
	r.tickUntilRetired(t, 2)
	g.setLaunchFails(true)
	r.ticks(t, 4)
	if rec := r.st.get("blue"); rec.Status != StatusRunning {
		st, _ := g.snapshot()
		t.Fatalf("status %s (%s) with %d members for desired %d; want running until the replacement launches", rec.Status, rec.Reason, len(st.Members), st.Desired)
	}
	g.setLaunchFails(false)
	if rec := r.tickUntilDone(t, 20); rec.Status != StatusSucceeded {
		t.Fatalf("status %s (%s) once the group launches", rec.Status, rec.Reason)
	}
}

type fakeMarks map[string]string

func (m fakeMarks) IntakeStopped(context.Context, string) (map[string]string, error) { return m, nil }

// A runner a spot notice stopped still answers (cumulative counters, configured slots) while its
// jobs finish: the cycle counts it as not serving, and retires it before serving ones.
func TestARunnerANoticeStoppedDoesNotServe(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	r := newRig(t, g, nil)
	r.h.deps.Marks = fakeMarks{"i-b": "spot interruption warning: being reclaimed"}
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	if p := r.st.get("blue").Progress; p.Serving != 2 {
		t.Fatalf("serving %d at the start, want 2: i-b's intake is stopped", p.Serving)
	}
	rec := r.tickUntilDone(t, 60)
	if rec.Status != StatusSucceeded {
		t.Fatalf("status %s (%s)", rec.Status, rec.Reason)
	}
	first := ""
	for _, e := range rec.Events {
		if strings.HasPrefix(e.Text, "retiring ") {
			first = e.Text
			break
		}
	}
	if !strings.HasPrefix(first, "retiring i-b (spot interruption warning") {
		t.Errorf("first retirement %q, want i-b, with why", first)
	}
}

// The surge's MaxSize goes back when the tail begins, so scaling, in charge again, is held to the
// group's own maximum; and a fleet scaling shrank during the tail still ends the cycle as a
// success (its size is scaling's by then).
func TestTheTailGivesBackMaxSizeAndSurvivesAScaleIn(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	g.drainSteps = 20
	r := newRig(t, g, nil)
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	shrunk := false
	for i := 0; i < 200 && r.st.get("blue").Active(); i++ {
		r.clk.add(time.Minute)
		holds, err := r.h.Advance(ctx, "blue", fmt.Sprintf("t-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if holds || shrunk || !r.st.get("blue").Active() {
			continue
		}
		if m := g.maxSize(); m != 3 {
			t.Fatalf("MaxSize %d when the tail began, want the original 3 back", m)
		}
		g.mu.Lock() // scaling removes an idle replacement
		for j, m := range g.state.Members {
			if strings.HasPrefix(m.ID, "i-new") && m.State.InService() {
				g.state.Members = slices.Delete(g.state.Members, j, j+1)
				g.state.Desired--
				break
			}
		}
		g.mu.Unlock()
		shrunk = true
	}
	if rec := r.st.get("blue"); !shrunk || rec.Status != StatusSucceeded {
		t.Fatalf("shrunk %v, status %s (%s); want success after scaling shrank the fleet in the tail", shrunk, rec.Status, rec.Reason)
	}
}

// Without surge, the tail does not begin before the last replacement is listed, so its health is
// still the cycle's to judge: a last replacement that never serves fails the cycle.
func TestTheTailWaitsForTheLastReplacement(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b")
	g.drainSteps = 10
	r := newRig(t, g, nil)
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1}); err != nil {
		t.Fatal(err)
	}
	r.tickUntilRetired(t, 2)
	g.setLaunchFails(true)
	r.ticks(t, 2)
	if rec := r.st.get("blue"); rec.Tail {
		t.Fatalf("tail began with the last replacement not launched: %+v", rec.Progress)
	}
	g.setLaunchFails(false)
	r.hl.unknownNew = true // the last replacement (and every later one) never answers
	if rec := r.tickUntilDone(t, 30); rec.Status != StatusFailed || !strings.Contains(rec.Reason, "not healthy within") {
		t.Fatalf("status %s (%s); want failed: the last replacement never served", rec.Status, rec.Reason)
	}
}

// A MaxSize someone else changed while the cycle ran (a stack update, an operator's cost cap) is
// theirs: the cycle gives back only the room its own surge took.
func TestMaxSizeChangedDuringTheCycleIsLeftAsItIs(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b")
	r := newRig(t, g, nil)
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	if m := g.maxSize(); m != 3 {
		t.Fatalf("MaxSize %d after the first step, want the surge's 3", m)
	}
	g.mu.Lock()
	g.state.Max = 20 // publisher update raised it
	g.mu.Unlock()
	rec := r.tickUntilDone(t, 50)
	if rec.Status != StatusSucceeded {
		t.Fatalf("status %s (%s)", rec.Status, rec.Reason)
	}
	if m := g.maxSize(); m != 20 || g.restored != 0 {
		t.Fatalf("MaxSize %d (restored %d times), want the operator's 20 left as it is", m, g.restored)
	}
}

func TestAbortStopsAfterTheStepInFlight(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	r := newRig(t, g, nil)
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	if mid := r.tickUntilDone(t, 2); len(mid.Healthy) != 1 || len(mid.Retired) != 1 {
		t.Fatalf("setup: healthy %v, retired %v after two steps; want one replacement healthy and one old instance retired", mid.Healthy, mid.Retired)
	}
	_, before := g.snapshot()
	if err := r.command(t, messages.CycleArgs{Abort: true}); err != nil {
		t.Fatal(err)
	}
	rec := r.tickUntilDone(t, 10)
	_, after := g.snapshot()
	if rec.Status != StatusAborted || !strings.Contains(rec.Reason, "alice") {
		t.Fatalf("status %s reason %q", rec.Status, rec.Reason)
	}
	if len(after) != len(before) {
		t.Fatalf("retired %v after the abort (before: %v)", after, before)
	}
	if m := g.maxSize(); m != 3 {
		t.Errorf("MaxSize %d after the abort, want the original 3 (the surge's room given back)", m)
	}
}

// A cycle that ended with a healthy surge instance (aborted before its retirement) leaves the
// desired capacity above the original MaxSize: the surge's MaxSize stays until scaling brings the
// desired capacity down, and a later tick then gives it back, rather than the cycle lowering the
// desired capacity and letting Auto Scaling pick an old, healthy instance to terminate.
func TestSurgeMaxSizeIsGivenBackOnceTheDesiredCapacityAllows(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c", "i-new01")
	g.state.Max = 4
	r := newRig(t, g, nil)
	now := r.clk.now()
	r.st.rec["blue"] = Record{ID: "c1", Status: StatusAborted, FinishedAt: now, Desired: 3, OriginalMax: 3, RaisedMax: 4,
		Old: []string{"i-a", "i-b", "i-c"}, Seen: map[string]time.Time{"i-new01": now}, Healthy: []string{"i-new01"}}
	r.st.ver["blue"] = 5
	advance := func() {
		t.Helper()
		r.clk.add(time.Minute)
		if holds, err := r.h.Advance(context.Background(), "blue", ""); err != nil || holds {
			t.Fatalf("Advance = %v, %v; want an ended cycle, holding nothing", holds, err)
		}
	}
	advance()
	if m := g.maxSize(); m != 4 {
		t.Fatalf("MaxSize %d while the desired capacity is 4, want it left at 4", m)
	}
	if _, terminated := g.snapshot(); len(terminated) != 0 {
		t.Fatalf("terminated %v; the surge's healthy instance and the old ones are scaling's to remove", terminated)
	}
	g.mu.Lock() // scaling removes the idle surplus
	g.state.Desired = 3
	g.state.Members = g.state.Members[:3]
	g.mu.Unlock()
	advance()
	if m := g.maxSize(); m != 3 {
		t.Fatalf("MaxSize %d once the desired capacity is 3, want the original 3 given back", m)
	}
	// Given back: later ticks do not look at the group for it any more.
	if !r.st.get("blue").MaxGivenBack {
		t.Fatal("the record does not say MaxSize was given back")
	}
	g.mu.Lock()
	before := g.describes
	g.mu.Unlock()
	advance()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.describes != before {
		t.Errorf("%d more Describe calls after MaxSize was given back, want none", g.describes-before)
	}
}

func TestSecondCycleWhileOneRunsIsRefused(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b")
	r := newRig(t, g, nil)
	if err := r.command(t, messages.CycleArgs{}); err != nil {
		t.Fatal(err)
	}
	err := r.command(t, messages.CycleArgs{All: true})
	if !messages.IsPermanent(err) || !strings.Contains(messages.Reason(err), "in progress") {
		t.Fatalf("second cycle: %v", err)
	}
}

func TestNothingToReplaceSucceedsAtOnce(t *testing.T) {
	g := newFakeGroup("1", "i-a", "i-b")
	r := newRig(t, g, nil)
	if err := r.command(t, messages.CycleArgs{}); err != nil {
		t.Fatal(err)
	}
	rec := r.st.get("blue")
	if rec.Status != StatusSucceeded || !strings.Contains(rec.Reason, "nothing to replace") || g.setCalls != 0 {
		t.Fatalf("status %s reason %q set calls %d", rec.Status, rec.Reason, g.setCalls)
	}
	// --all replaces even current instances.
	if err := r.command(t, messages.CycleArgs{All: true}); err != nil {
		t.Fatal(err)
	}
	if rec := r.tickUntilDone(t, 40); rec.Status != StatusSucceeded || rec.Progress.Replaced != 2 {
		t.Fatalf("--all: %s %+v", rec.Status, rec.Progress)
	}
}

func TestDuplicateTickAndLostRaceApplyNothing(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	r := newRig(t, g, nil)
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r.clk.add(time.Minute)
	if _, err := r.h.Advance(ctx, "blue", "m1"); err != nil {
		t.Fatal(err)
	}
	_, t1 := g.snapshot()
	steps := r.st.get("blue").Steps
	if _, err := r.h.Advance(ctx, "blue", "m1"); err != nil { // redelivered
		t.Fatal(err)
	}
	r.st.loseNext = true // another replica wins this step
	if _, err := r.h.Advance(ctx, "blue", "m2"); err != nil {
		t.Fatal(err)
	}
	_, t2 := g.snapshot()
	if got := r.st.get("blue").Steps; got != steps || len(t2) != len(t1) {
		t.Fatalf("duplicate or lost step acted: steps %d→%d, terminated %v→%v", steps, got, t1, t2)
	}
}

func TestRestartResumesFromTheRecord(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	r := newRig(t, g, nil)
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	r.tickUntilDone(t, 3)
	// A new handler (a restarted worker) over the same store and group carries on.
	h2, err := New(Config{Fleets: []FleetConfig{r.fleet}, Now: r.clk.now},
		Deps{Group: g, Health: r.hl, State: r.st, Registerer: prometheus.NewRegistry()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r.h = h2
	if rec := r.tickUntilDone(t, 50); rec.Status != StatusSucceeded {
		t.Fatalf("after restart: %s %s", rec.Status, rec.Reason)
	}
}

func TestFailedTerminateIsRetried(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b")
	r := newRig(t, g, nil)
	g.terminateErr = errTest
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	r.tickUntilDone(t, 3)
	g.mu.Lock()
	g.terminateErr = nil
	g.mu.Unlock()
	if rec := r.tickUntilDone(t, 50); rec.Status != StatusSucceeded {
		t.Fatalf("%s %s %v", rec.Status, rec.Reason, rec.Events)
	}
}

type testErr string

func (e testErr) Error() string { return string(e) }

const errTest = testErr("throttled")

func TestTokenChangeCyclesAndRetiresRejectedFirst(t *testing.T) {
	g := newFakeGroup("1", "i-a", "i-b", "i-c")
	r := newRig(t, g, nil)
	r.hl.rejected["i-c"] = true
	ctx := context.Background()
	pc := &messages.ParameterChange{Name: "runnerfleet/blue/token", Operation: messages.ParameterUpdate}
	if err := r.h.ParameterChange(ctx, pc, "ev-1"); err != nil {
		t.Fatal(err)
	}
	if err := r.h.ParameterChange(ctx, pc, "ev-1"); err != nil { // redelivered
		t.Fatal(err)
	}
	rec := r.st.get("blue")
	if rec.Trigger != TriggerToken || !rec.All || len(rec.Old) != 3 {
		t.Fatalf("token cycle: %+v", rec)
	}
	if len(rec.Retired) != 1 || rec.Retired[0] != "i-c" {
		t.Fatalf("first step retired %v, want the rejected i-c first without waiting", rec.Retired)
	}
	if rec := r.tickUntilDone(t, 50); rec.Status != StatusSucceeded {
		t.Fatalf("%s %s", rec.Status, rec.Reason)
	}
}

func TestTokenChangeReportOnly(t *testing.T) {
	g := newFakeGroup("1", "i-a")
	r := newRig(t, g, func(f *FleetConfig) { f.OnTokenChange = OnTokenReport })
	err := r.h.ParameterChange(context.Background(), &messages.ParameterChange{Name: "/runnerfleet/blue/token", Operation: messages.ParameterUpdate}, "ev")
	if err != nil || r.st.get("blue").ID != "" {
		t.Fatalf("report-only fleet started a cycle: %v %+v", err, r.st.get("blue"))
	}
	if r.h.Handles(&messages.Message{Payload: &messages.ParameterChange{Name: "other"}}) {
		t.Fatal("handles another parameter")
	}
}

func TestTokenChangeDuringACycleFollowsIt(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b")
	r := newRig(t, g, nil)
	if err := r.command(t, messages.CycleArgs{}); err != nil {
		t.Fatal(err)
	}
	if err := r.h.ParameterChange(context.Background(), &messages.ParameterChange{Name: "/runnerfleet/blue/token", Operation: messages.ParameterUpdate}, "ev"); err != nil {
		t.Fatal(err)
	}
	r.tickUntilDone(t, 50)
	rec := r.tickUntilDone(t, 50)
	if rec.Trigger != TriggerToken || rec.Status != StatusSucceeded || len(rec.Old) != 2 {
		t.Fatalf("no token cycle followed: %+v", rec)
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{Fleets: []FleetConfig{
		{Settings: fleet.Settings{Name: "a"}, OnTokenChange: "maybe", MaxUnavailable: -1, Surge: 0},
		{Settings: fleet.Settings{Name: "a", GroupName: "g"}},
	}}
	err := c.Validate()
	for _, want := range []string{"empty group", "maybe", "negative", "duplicate"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v; want %q", err, want)
		}
	}
	if _, err := New(Config{}, Deps{}, nil); err == nil {
		t.Fatal("New accepted nil deps")
	}
}

func TestStaleAndUnknownCommandsAreRejected(t *testing.T) {
	g := newFakeGroup("2", "i-a")
	r := newRig(t, g, nil)
	c := messages.NewCommand("blue", messages.CommandCycle, r.clk.now().Add(-time.Hour))
	if err := r.h.Command(context.Background(), &c); !messages.IsPermanent(err) {
		t.Fatalf("stale: %v", err)
	}
	c = messages.NewCommand("green", messages.CommandCycle, r.clk.now())
	if err := r.h.Command(context.Background(), &c); !messages.IsPermanent(err) {
		t.Fatalf("unknown fleet: %v", err)
	}
}

func TestHandlesAndDispatch(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b")
	r := newRig(t, g, nil)
	c := messages.NewCommand("blue", messages.CommandCycle, r.clk.now())
	tick := messages.NewCommand("blue", messages.CommandTick, r.clk.now())
	for _, tc := range []struct {
		msg  *messages.Message
		want bool
	}{
		{&messages.Message{Payload: &c}, true},
		{&messages.Message{Payload: &tick}, false},
		{&messages.Message{Payload: &messages.FleetStep{Fleet: "blue", Work: messages.FleetWorkCycle}}, true},
		{&messages.Message{Payload: &messages.FleetStep{Fleet: "blue", Work: messages.FleetWorkUpdate}}, false},
		{&messages.Message{Payload: &messages.ParameterChange{Name: "arn:aws:ssm:us-east-1:1:parameter/runnerfleet/blue/token"}}, true},
		{&messages.Message{Payload: &messages.Scheduled{}}, false},
	} {
		if got := r.h.Handles(tc.msg); got != tc.want {
			t.Errorf("Handles(%T) = %v, want %v", tc.msg.Payload, got, tc.want)
		}
	}
	if err := r.h.Handle(context.Background(), &messages.Message{ID: "m1", Payload: &c}); err != nil {
		t.Fatal(err)
	}
	if rec := r.st.get("blue"); !rec.Active() || rec.ID != c.ID {
		t.Fatalf("the command started no cycle: %+v", rec)
	}
	steps := r.st.get("blue").Steps
	r.clk.add(time.Minute)
	if err := r.h.Handle(context.Background(), &messages.Message{ID: "step-1", Payload: &messages.FleetStep{Fleet: "blue"}}); err != nil {
		t.Fatal(err)
	}
	if got := r.st.get("blue").Steps; got != steps+1 {
		t.Fatalf("a fleet step took %d steps", got-steps)
	}
	if err := r.h.Handle(context.Background(), &messages.Message{Payload: &messages.Scheduled{}}); !messages.IsPermanent(err) {
		t.Fatalf("a foreign message: %v", err)
	}
}

func TestAbortDropsAFollowingTokenCycle(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b")
	r := newRig(t, g, nil)
	if err := r.command(t, messages.CycleArgs{}); err != nil {
		t.Fatal(err)
	}
	if err := r.h.ParameterChange(context.Background(), &messages.ParameterChange{Name: "/runnerfleet/blue/token", Operation: messages.ParameterUpdate}, "ev"); err != nil {
		t.Fatal(err)
	}
	if err := r.command(t, messages.CycleArgs{Abort: true}); err != nil {
		t.Fatal(err)
	}
	rec := r.tickUntilDone(t, 5)
	if rec.Status != StatusAborted || rec.Trigger != TriggerCommand || !rec.TokenChangedAt.IsZero() {
		t.Fatalf("after the abort: %s %s token changed %v", rec.Status, rec.Trigger, rec.TokenChangedAt)
	}
}

// A cycle record a newer worker wrote (a rolling deploy) is left to a newer replica: a tick
// takes no step (saving it would drop fields this code does not know) but holds as the record
// says, and an abort or a new cycle is retried rather than refused.
func TestARecordOfANewerSchemaIsLeftAlone(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b")
	r := newRig(t, g, nil)
	r.st.rec["blue"] = Record{Schema: recordSchema + 1, ID: "c-new", Status: StatusRunning, Desired: 2, Old: []string{"i-a", "i-b"}}
	r.st.ver["blue"] = 3
	holds, err := r.h.Advance(context.Background(), "blue", "tick-1")
	if err != nil || !holds {
		t.Fatalf("Advance = %v, %v; want it to hold, without error", holds, err)
	}
	if r.st.saves != 0 || g.setCalls != 0 {
		t.Fatalf("%d saves, %d capacity calls on a newer worker's cycle; want none", r.st.saves, g.setCalls)
	}
	for _, args := range []messages.CycleArgs{{Abort: true}, {MaxUnavailable: 1, Surge: 1}} {
		err := r.command(t, args)
		if err == nil || messages.IsPermanent(err) || !strings.Contains(err.Error(), "newer worker") {
			t.Errorf("command %+v = %v; want a retried (not rejected) error naming the newer worker", args, err)
		}
	}
	if r.st.saves != 0 {
		t.Errorf("%d saves; want the newer record untouched", r.st.saves)
	}
}

// A tail that began with the desired capacity still above the original MaxSize (the last
// retirement's terminate failed and was retried) gives MaxSize back on a later tail step, once
// the desired capacity is down, not only when the cycle ends.
func TestTheTailGivesBackMaxSizeOnceItCan(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-new01", "i-new02", "i-new03")
	g.drainSteps = 50
	g.state.Desired, g.state.Max = 3, 4
	g.state.Members[0].Version = "1"
	r := newRig(t, g, nil)
	now := r.clk.now()
	r.st.rec["blue"] = Record{Schema: recordSchema, ID: "c1", Status: StatusRunning, StartedAt: now, MovedAt: now, Tail: true,
		Desired: 3, MaxUnavailable: 1, Surge: 1, OriginalMax: 3, RaisedMax: 4, HealthTimeout: 5 * time.Minute,
		Old: []string{"i-a"}, Retired: []string{"i-a"}, RetiredAt: map[string]time.Time{"i-a": now},
		Seen:    map[string]time.Time{"i-new01": now, "i-new02": now, "i-new03": now},
		Healthy: []string{"i-new01", "i-new02", "i-new03"}}
	r.st.ver["blue"] = 7
	r.clk.add(30 * time.Second)
	if _, err := r.h.Advance(context.Background(), "blue", "tick-1"); err != nil {
		t.Fatal(err)
	}
	if m := g.maxSize(); m != 3 {
		t.Fatalf("MaxSize %d on a tail step with the desired capacity at 3, want the original 3 back", m)
	}
}

// A failed cycle undoing its surge retires an old instance that serves nothing before one that
// serves, and never takes the serving instances below the floor.
func TestUndoRetiresWhatServesNothingFirst(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	r := newRig(t, g, nil)
	r.hl.unknown["i-b"], r.hl.unknown["i-c"] = true, true
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	rec := r.tickUntilDone(t, 30)
	st, terminated := g.snapshot()
	if rec.Status != StatusFailed || !slices.Equal(terminated, []string{"i-b"}) || st.Desired != 3 || g.maxSize() != 3 {
		t.Fatalf("status %s (%s), retired %v, desired %d, MaxSize %d; want failed, [i-b] (unreadable) retired, 3, 3",
			rec.Status, rec.Reason, terminated, st.Desired, g.maxSize())
	}
}

// A failed or aborted cycle undoes its surge back to the desired capacity from before it even
// when the group had room for the surge in MaxSize (nothing to restore there): a broken
// replacement does not stay, and an old instance a healthy replacement took over from goes.
func TestAFailedOrAbortedCycleUndoesItsSurgeInAGroupWithRoom(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(*rig)
		abort   bool
		status  Status
		retired []string
	}{
		{name: "broken replacement, failed", setup: func(r *rig) { r.hl.unknownNew = true },
			status: StatusFailed, retired: []string{"i-new01"}},
		{name: "broken replacement, aborted", setup: func(r *rig) { r.hl.unknownNew = true }, abort: true,
			status: StatusAborted, retired: []string{"i-new01"}},
		{name: "a kept instance that does not serve, failed", setup: func(r *rig) {
			r.g.state.Members[2].Version = "2"
			r.hl.unknown["i-c"] = true
		}, status: StatusFailed, retired: []string{"i-a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGroup("2", "i-a", "i-b", "i-c")
			g.state.Max = 10 // room for the surge: MaxSize is never raised
			r := newRig(t, g, nil)
			tc.setup(r)
			if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
				t.Fatal(err)
			}
			if tc.abort {
				r.ticks(t, 2) // the replacement launched and seen, never healthy
				if err := r.command(t, messages.CycleArgs{Abort: true}); err != nil {
					t.Fatal(err)
				}
			}
			rec := r.tickUntilDone(t, 30)
			st, terminated := g.snapshot()
			if rec.Status != tc.status || !slices.Equal(terminated, tc.retired) || st.Desired != 3 || st.Max != 10 || g.minServing < 2 {
				t.Fatalf("status %s (%s), retired %v, desired %d, MaxSize %d, min serving %d; want %s, %v, 3, 10, at least 2",
					rec.Status, rec.Reason, terminated, st.Desired, st.Max, g.minServing, tc.status, tc.retired)
			}
		})
	}
}

// A new template that never serves fails the cycle within the health timeout even when each
// broken replacement is lost before the timeout (the launch gate abandons it, EC2's health check
// replaces it) and the group launches another: the deadline is the cycle's, not each instance's.
func TestReplacementsLostUnhealthyStillFailTheCycle(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	g.loseUnhealthyAfter = 3 // each broken replacement goes after 3 minutes; the timeout is 5
	r := newRig(t, g, nil)
	r.hl.unknownNew = true
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	rec := r.tickUntilDone(t, 30)
	if rec.Status != StatusFailed || !strings.Contains(rec.Reason, "not healthy within 5m0s") || !strings.Contains(rec.Reason, "lost before serving") {
		t.Fatalf("status %s reason %q; want failed, naming the replacements lost before serving", rec.Status, rec.Reason)
	}
	if took := rec.FinishedAt.Sub(rec.StartedAt); took > 7*time.Minute {
		t.Errorf("failed %s after the start, want just past the 5m health timeout", took)
	}
	st, terminated := g.snapshot()
	if len(g.lost) < 1 || st.Desired != 3 || len(terminated) != 1 || !strings.HasPrefix(terminated[0], "i-new") {
		t.Fatalf("lost %v, retired %v, desired %d; want replacements lost, the last one retired by the undo, desired 3", g.lost, terminated, st.Desired)
	}
}

// A record written before the cycle-wide health deadline existed still advances: its deadline
// starts at the Seen of the oldest replacement waiting.
func TestARecordWithoutTheHealthDeadlineStillFails(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c", "i-new01")
	g.state.Members[3].Version = "2"
	g.state.Desired, g.state.Max = 4, 4
	r := newRig(t, g, nil)
	r.hl.unknown["i-new01"] = true
	now := r.clk.now()
	r.st.rec["blue"] = Record{Schema: 1, ID: "c1", Status: StatusRunning, StartedAt: now, MovedAt: now, Desired: 3, MaxUnavailable: 1, Surge: 1,
		OriginalMax: 3, RaisedMax: 4, HealthTimeout: 5 * time.Minute, Old: []string{"i-a", "i-b", "i-c"},
		Seen: map[string]time.Time{"i-new01": now.Add(-4 * time.Minute)}}
	r.st.ver["blue"] = 2
	r.ticks(t, 1)
	if rec := r.st.get("blue"); rec.Status != StatusRunning || !rec.UnhealthySince.Equal(now.Add(-4*time.Minute)) {
		t.Fatalf("status %s, unhealthy since %v; want running, since the replacement's Seen", rec.Status, rec.UnhealthySince)
	}
	if rec := r.tickUntilDone(t, 5); rec.Status != StatusFailed || rec.FinishedAt.After(now.Add(6*time.Minute)) {
		t.Fatalf("status %s at %v (%s); want failed once 5m after the replacement was seen", rec.Status, rec.FinishedAt, rec.Reason)
	}
}

// A retirement Auto Scaling refuses for good, or accepts and never carries out, fails the cycle
// once it has been asked for the health timeout, with Auto Scaling's answer (never its encoded
// authorization message) in the reason; asking again adds one event, not one a minute.
func TestARetirementAutoScalingNeverCarriesOutFailsTheCycle(t *testing.T) {
	denied := fakeAPIError{code: "AccessDenied", message: "User: arn:aws:sts::123456789012:assumed-role/runnerfleet-worker/task is not authorized " +
		"to perform: autoscaling:TerminateInstanceInAutoScalingGroup. Encoded authorization failure message: c2VjcmV0LXBvbGljeS1kZXRhaWw"}
	for _, tc := range []struct {
		name  string
		setup func(*fakeGroup)
		want  string
	}{
		{"refused", func(g *fakeGroup) { g.terminateErr = denied }, "Auto Scaling answered AccessDenied: User: arn:aws:sts::123456789012:assumed-role"},
		{"accepted and not carried out", func(g *fakeGroup) { g.terminateIgnored = true }, "accepted the asks and left it InService"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGroup("2", "i-a", "i-b", "i-c")
			tc.setup(g)
			r := newRig(t, g, nil)
			if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
				t.Fatal(err)
			}
			rec := r.tickUntilDone(t, 40)
			if rec.Status != StatusFailed || !strings.Contains(rec.Reason, "retirement not carried out") || !strings.Contains(rec.Reason, tc.want) {
				t.Fatalf("status %s reason %q; want failed, with %q", rec.Status, rec.Reason, tc.want)
			}
			if strings.Contains(rec.Reason, "c2VjcmV0") {
				t.Errorf("the reason carries the encoded authorization message: %q", rec.Reason)
			}
			if took := rec.FinishedAt.Sub(rec.StartedAt); took > 9*time.Minute {
				t.Errorf("failed %s after the start, want soon after the 5m health timeout", took)
			}
			again := 0
			for _, e := range rec.Events {
				if strings.HasPrefix(e.Text, "retiring i-a again") {
					again++
				}
			}
			if s := rec.Stuck["i-a"]; again != 1 || s.Asked < 3 {
				t.Errorf("%d events asking again, i-a asked %d times; want 1 event and the asks counted", again, s.Asked)
			}
		})
	}
}

// A cycle started while the last one's surge still holds MaxSize takes it over: it ends at the
// desired capacity within the original MaxSize and gives that MaxSize back, rather than make the
// earlier surge the group's own.
func TestACycleStartedBeforeTheLastSurgeWasGivenBackTakesItOver(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c", "i-d") // i-d: the aborted cycle's healthy surge instance
	r := newRig(t, g, nil)
	now := r.clk.now()
	r.st.rec["blue"] = Record{Schema: recordSchema, ID: "c1", Status: StatusAborted, FinishedAt: now, Desired: 3, OriginalMax: 3, RaisedMax: 4,
		Old: []string{"i-a", "i-b", "i-c"}, Seen: map[string]time.Time{"i-d": now}, Healthy: []string{"i-d"}}
	r.st.ver["blue"] = 4
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1, All: true}); err != nil {
		t.Fatal(err)
	}
	if rec := r.st.get("blue"); rec.Desired != 3 || rec.OriginalMax != 3 {
		t.Fatalf("the new cycle records desired %d, original MaxSize %d; want the 3 and 3 from before the last surge", rec.Desired, rec.OriginalMax)
	}
	rec := r.tickUntilDone(t, 60)
	st, _ := g.snapshot()
	if rec.Status != StatusSucceeded || st.Desired != 3 || st.Max != 3 || len(st.Members) != 3 || g.minServing < 2 {
		t.Fatalf("status %s (%s), desired %d, MaxSize %d, %d members, min serving %d; want succeeded at 3, 3, 3, never below 2",
			rec.Status, rec.Reason, st.Desired, st.Max, len(st.Members), g.minServing)
	}
}

// A failure's reason says what the undo of the surge does, not that nothing more is retired.
func TestAFailureSaysWhatItsUndoDoes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*rig)
		want  string
	}{
		{"broken replacement", func(r *rig) { r.hl.unknownNew = true },
			"undoing the surge down to desired 3: retiring i-new01 (a replacement that never served)"},
		{"a kept instance that does not serve", func(r *rig) {
			r.g.state.Members[2].Version = "2"
			r.hl.unknown["i-c"] = true
		}, "undoing the surge down to desired 3: retiring i-a (an old instance a healthy replacement took over from)"},
		{"a group that launches nothing", func(r *rig) { r.g.launchFails = true },
			"undoing the surge down to desired 3: cancelling the launches not made (desired 4 → 3)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGroup("2", "i-a", "i-b", "i-c")
			r := newRig(t, g, nil)
			tc.setup(r)
			if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
				t.Fatal(err)
			}
			rec := r.tickUntilDone(t, 30)
			if rec.Status != StatusFailed || !strings.Contains(rec.Reason, tc.want) || strings.Contains(rec.Reason, "nothing more is retired") {
				t.Fatalf("status %s reason %q; want failed, saying %q", rec.Status, rec.Reason, tc.want)
			}
		})
	}
}
