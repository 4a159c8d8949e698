package cycle

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/messages"
)

// pausedApplyTimeout is the apply timeout of the replica these tests pause mid-step: the only
// real time they spend, waiting for its calls' context to end. Its claims last twice as long by
// the rig's clock, which the tests move by hand. The other replica keeps the default, so that
// its own steps never run out of time on a slow machine.
const pausedApplyTimeout = 50 * time.Millisecond

// replica is another worker over the rig's store, group, runners and clock (applyTimeout 0: the
// default).
func (r *rig) replica(t *testing.T, applyTimeout time.Duration) *Handler {
	t.Helper()
	h, err := New(Config{Fleets: []FleetConfig{r.fleet}, Now: r.clk.now, ApplyTimeout: applyTimeout},
		Deps{Group: r.g, Health: r.hl, State: r.st, Registerer: prometheus.NewRegistry()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// pauseAfterFirstStep makes the writer of the cycle's first step (paused) stop right after its
// write lands — before any Auto Scaling call — and run meanwhile (the rest of the world while it
// is stopped), then stay stopped until its step's context has ended: a replica paused (SIGSTOP, a
// long GC) between its claim and its calls. The wait is bounded for a step whose context never
// ends, so the test fails rather than hangs. Before it stops, it checks that its calls' deadline
// lies inside its claim (checkCallsInsideClaim).
func (r *rig) pauseAfterFirstStep(t *testing.T, paused *Handler, meanwhile func()) (ran func() bool) {
	t.Helper()
	fired := false
	r.st.afterSave = func(ctx context.Context, rec Record) {
		if fired || rec.Steps != 1 {
			return
		}
		fired = true
		checkCallsInsideClaim(t, paused, ctx, rec.Claim, r.clk.now(), time.Now())
		meanwhile()
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
			t.Error("the paused step's context never ended: its calls may run at any time after it resumes")
		}
	}
	return func() bool { return fired }
}

// checkCallsInsideClaim checks that the calls of a claimed step (their context, stepCtx) end
// inside its claim, leaving ClaimFor − ApplyTimeout of it for clock skew and a late answer: their
// deadline is at or before claim.Until − (ClaimFor − ApplyTimeout). The claim's end is by the
// handler's clock and the deadline by real time: clockNow and realNow, read together once the
// claim is written, map one onto the other (lenient by the time since the claim was written:
// microseconds). A deadline of ClaimFor after the step began, say, would outlive the claim:
// another replica's later step could begin before the calls are dead.
func checkCallsInsideClaim(t *testing.T, h *Handler, stepCtx context.Context, claim *Claim, clockNow, realNow time.Time) {
	t.Helper()
	if claim == nil {
		t.Error("a step that calls Auto Scaling wrote no claim")
		return
	}
	if claim.Owner != h.cfg.Owner || claim.Owner == "" {
		t.Errorf("claim owner %q; want this replica's %q", claim.Owner, h.cfg.Owner)
	}
	deadline, ok := stepCtx.Deadline()
	if !ok {
		t.Error("the claimed step's calls have no deadline: they may run at any time after the claim")
		return
	}
	latest := realNow.Add(claim.Until.Sub(clockNow)).Add(-(h.cfg.ClaimFor - h.cfg.ApplyTimeout))
	if deadline.After(latest) {
		t.Errorf("the claimed step's calls end %s after the latest the claim allows (its end less ClaimFor %s − ApplyTimeout %s): they may outlive the claim",
			deadline.Sub(latest), h.cfg.ClaimFor, h.cfg.ApplyTimeout)
	}
}

// A claimed step's calls run on a context detached from the message's cancellation, whose
// deadline lies strictly inside the claim (the defaults: 20 s of a 40 s claim), by the real clock.
func TestAClaimedStepsCallsEndInsideItsClaim(t *testing.T) {
	st := newFakeStore()
	h, err := New(Config{Fleets: []FleetConfig{{Settings: fleet.Settings{Name: "blue", GroupName: "grp"}}}},
		Deps{Group: newFakeGroup("2"), Health: &fakeHealth{}, State: st, Registerer: prometheus.NewRegistry()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	parent, cancelParent := context.WithCancel(context.Background())
	rec := Record{ID: "c1", Status: StatusRunning}
	stepCtx, cancel, claimed, err := h.claim(parent, "blue", &rec, 0)
	clockNow, realNow := h.cfg.Now(), time.Now()
	if err != nil || !claimed {
		t.Fatalf("claim = %v, %v; want it written", claimed, err)
	}
	defer cancel()
	checkCallsInsideClaim(t, h, stepCtx, rec.Claim, clockNow, realNow)
	if saved := st.get("blue"); saved.Claim == nil || *saved.Claim != *rec.Claim {
		t.Fatalf("stored claim %+v; want %+v", saved.Claim, rec.Claim)
	}
	cancelParent()
	if err := stepCtx.Err(); err != nil {
		t.Fatalf("the claimed step's context ended with the message's: %v", err)
	}
}

// A replica paused between its claim and its calls makes no call when it resumes: meanwhile an
// abort landed and another replica carried out the undo of the surge, and a late SetCapacity
// would raise the desired capacity again after it (a stale surge, for ever: the cycle is over).
func TestAStepPausedAfterItsClaimMakesNoLateCall(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	r := newRig(t, g, nil)
	a, b := r.replica(t, pausedApplyTimeout), r.replica(t, 0)
	ctx := context.Background()
	var holdsMeanwhile bool
	ran := r.pauseAfterFirstStep(t, a, func() {
		// Replica a claimed the surge (desired 3 → 4) and stopped. An operator aborts; replica b
		// takes the command, and a tick once a's claim has ended.
		c := messages.NewCommand("blue", messages.CommandCycle, r.clk.now())
		c.Cycle.Abort = true
		if err := b.Command(ctx, &c); err != nil {
			t.Errorf("abort: %v", err)
		}
		r.clk.add(time.Minute)
		var err error
		if holdsMeanwhile, err = b.Advance(ctx, "blue", "tick-b"); err != nil {
			t.Errorf("tick: %v", err)
		}
	})
	c := messages.NewCommand("blue", messages.CommandCycle, r.clk.now())
	*c.Cycle = messages.CycleArgs{MaxUnavailable: 1, Surge: 1}
	if err := a.Command(ctx, &c); err != nil {
		t.Fatal(err)
	}
	if !ran() {
		t.Fatal("the cycle's first step wrote nothing")
	}
	if holdsMeanwhile {
		t.Error("the aborted cycle still holds the capacity after the tick that undid its surge")
	}
	setCalls, desired := g.capacity()
	if setCalls != 0 || desired != 3 {
		t.Fatalf("%d SetCapacity calls, desired %d; want none and 3: the paused step raised the surge after the abort's undo", setCalls, desired)
	}
	if rec := r.st.get("blue"); rec.Status != StatusAborted {
		t.Fatalf("status %s (%s); want aborted", rec.Status, rec.Reason)
	}
	if holds, err := a.Active(ctx, "blue"); err != nil || holds {
		t.Fatalf("Active = %v, %v after the undo; want false", holds, err)
	}
}

// A second replica ticking while the first one's claim holds takes no step — no write, no call,
// no error — and takes it once the claim has ended; the first one's late call never comes.
func TestASecondReplicaWaitsForTheClaimToEnd(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	r := newRig(t, g, nil)
	a, b := r.replica(t, pausedApplyTimeout), r.replica(t, 0)
	ctx := context.Background()
	ran := r.pauseAfterFirstStep(t, a, func() {
		for i, wait := range []time.Duration{0, pausedApplyTimeout} { // still within a's claim (2 × its apply timeout)
			r.clk.add(wait)
			saves, describes := r.st.saveCount(), g.describeCount()
			holds, err := b.Advance(ctx, "blue", "tick-early-"+string(rune('0'+i)))
			if err != nil || !holds {
				t.Errorf("tick during the claim: Advance = %v, %v; want it to hold, without error", holds, err)
			}
			if setCalls, _ := g.capacity(); setCalls != 0 || r.st.saveCount() != saves || g.describeCount() != describes {
				t.Errorf("tick during the claim: %d SetCapacity calls, %d writes, %d describes; want none",
					setCalls, r.st.saveCount()-saves, g.describeCount()-describes)
			}
		}
		r.clk.add(time.Minute) // the claim has ended
		if _, err := b.Advance(ctx, "blue", "tick-b"); err != nil {
			t.Errorf("tick after the claim: %v", err)
		}
		if rec := r.st.get("blue"); rec.Steps != 2 || rec.LastMessageID != "tick-b" {
			t.Errorf("after the claim ended: step %d by %q; want the second step, by tick-b", rec.Steps, rec.LastMessageID)
		}
		if setCalls, desired := g.capacity(); setCalls != 1 || desired != 4 {
			t.Errorf("after the claim ended: %d SetCapacity calls, desired %d; want the surge raised once, to 4", setCalls, desired)
		}
	})
	c := messages.NewCommand("blue", messages.CommandCycle, r.clk.now())
	*c.Cycle = messages.CycleArgs{MaxUnavailable: 1, Surge: 1}
	if err := a.Command(ctx, &c); err != nil {
		t.Fatal(err)
	}
	if !ran() {
		t.Fatal("the cycle's first step wrote nothing")
	}
	if setCalls, desired := g.capacity(); setCalls != 1 || desired != 4 {
		t.Fatalf("%d SetCapacity calls, desired %d; want only the second replica's call: the paused one's came late", setCalls, desired)
	}
}

// The claim of a replica that died mid-step never blocks the cycle: it lapses at its end.
func TestAClaimOfADeadReplicaLapses(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	r := newRig(t, g, nil)
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	r.st.mu.Lock()
	rec := r.st.rec["blue"]
	rec.Claim = &Claim{Owner: "dead", Until: r.clk.now().Add(DefaultClaimFor)}
	r.st.rec["blue"] = rec
	r.st.ver["blue"]++
	r.st.mu.Unlock()
	steps := rec.Steps
	r.clk.add(DefaultClaimFor / 2)
	if _, err := r.h.Advance(context.Background(), "blue", "early"); err != nil {
		t.Fatal(err)
	}
	if got := r.st.get("blue"); got.Steps != steps || got.Claim == nil || got.Claim.Owner != "dead" {
		t.Fatalf("a step was taken under a claim that holds: steps %d → %d, claim %+v", steps, got.Steps, got.Claim)
	}
	r.clk.add(DefaultClaimFor)
	if _, err := r.h.Advance(context.Background(), "blue", "late"); err != nil {
		t.Fatal(err)
	}
	if got := r.st.get("blue"); got.Steps != steps+1 || got.Claim != nil {
		t.Fatalf("after the claim lapsed: steps %d → %d, claim %+v; want one step, and the lapsed claim gone", steps, got.Steps, got.Claim)
	}
	if rec := r.tickUntilDone(t, 50); rec.Status != StatusSucceeded {
		t.Fatalf("status %s (%s)", rec.Status, rec.Reason)
	}
}

// claimAfterLastCycle stores a finished cycle c0 whose step in flight (its MaxSize given back)
// another replica claimed until d from now.
func (r *rig) claimAfterLastCycle(d time.Duration) {
	now := r.clk.now()
	r.st.mu.Lock()
	defer r.st.mu.Unlock()
	r.st.rec["blue"] = Record{Schema: recordSchema, ID: "c0", Status: StatusSucceeded, StartedAt: now.Add(-2 * time.Hour),
		FinishedAt: now.Add(-time.Hour), UpdatedAt: now, Claim: &Claim{Owner: "other", Until: now.Add(d)}}
	r.st.ver["blue"] = 3
}

// waits makes the handler's waits move the rig's clock, and records them; a wait that begins
// after a write fails the test (a command must not write under another step's claim).
func (r *rig) waits(t *testing.T) *[]time.Duration {
	t.Helper()
	var waited []time.Duration
	saves := r.st.saveCount()
	r.h.sleep = func(ctx context.Context, d time.Duration) error {
		if n := r.st.saveCount(); n != saves {
			t.Errorf("%d writes under another step's claim", n-saves)
		}
		waited = append(waited, d)
		r.clk.add(d)
		return ctx.Err()
	}
	return &waited
}

func cycleCommand(r *rig, args messages.CycleArgs) *messages.Command {
	c := messages.NewCommand("blue", messages.CommandCycle, r.clk.now())
	c.Issuer = "alice"
	*c.Cycle = args
	return &c
}

// A cycle command that finds a step in flight (here the last cycle's MaxSize given back) waits
// in its handler until the claim ends, then starts the cycle — no error: the router would retry
// it at once while the claim holds, then nack it, and past the queue's maxReceiveCount SQS would
// move the command to the DLQ by itself, with no reason and no refusal.
func TestACycleCommandWaitsForAClaim(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b")
	r := newRig(t, g, nil)
	r.claimAfterLastCycle(10 * time.Second)
	waited := r.waits(t)
	c := cycleCommand(r, messages.CycleArgs{MaxUnavailable: 1, Surge: 1})
	if err := r.h.Command(context.Background(), c); err != nil {
		t.Fatalf("command under a claim = %v; want it to wait for the claim and start the cycle", err)
	}
	if !slices.Equal(*waited, []time.Duration{10 * time.Second}) {
		t.Fatalf("waited %v; want the rest of the claim, 10s, once", *waited)
	}
	if rec := r.st.get("blue"); rec.ID != c.ID || !rec.Active() || rec.Claim != nil || rec.Steps != 1 {
		t.Fatalf("after the claim: cycle %s active %v, step %d, claim %+v; want %s started, its first step taken and its claim released",
			rec.ID, rec.Active(), rec.Steps, rec.Claim, c.ID)
	}
}

// A lapsed claim (here its replica's release was lost) is not waited on.
func TestACycleCommandDoesNotWaitForALapsedClaim(t *testing.T) {
	r2 := newRig(t, newFakeGroup("2", "i-a", "i-b"), nil)
	r2.claimAfterLastCycle(-time.Second)
	waited2 := r2.waits(t)
	c2 := cycleCommand(r2, messages.CycleArgs{MaxUnavailable: 1, Surge: 1})
	if err := r2.h.Command(context.Background(), c2); err != nil {
		t.Fatal(err)
	}
	if len(*waited2) != 0 {
		t.Fatalf("waited %v on a lapsed claim", *waited2)
	}
	if rec := r2.st.get("blue"); rec.ID != c2.ID || !rec.Active() {
		t.Fatalf("after a lapsed claim: cycle %s (%s); want %s started", rec.ID, rec.Status, c2.ID)
	}
}

// A cycle command whose deadline comes before the claim's end fails — transient, so the router's
// next attempt waits for what is left of it — and writes nothing. The wait is a real one, ended
// by the context.
func TestACycleCommandWaitingForAClaimEndsWithItsContext(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b")
	r := newRig(t, g, nil)
	r.claimAfterLastCycle(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := r.h.Command(ctx, cycleCommand(r, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}))
	if err == nil || messages.IsPermanent(err) || !strings.Contains(err.Error(), "claimed by other") {
		t.Fatalf("command past its deadline under a claim = %v; want a transient error naming the claim", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("command past its deadline under a claim = %v; want the wait ended by its context", err)
	}
	if r.st.saveCount() != 0 || g.describeCount() != 0 {
		t.Fatalf("%d writes, %d describes under another step's claim", r.st.saveCount(), g.describeCount())
	}
}

// A claim whose end a skewed clock put far ahead is waited out at most ClaimFor at a time, and
// maxClaimWaits times: then the command fails, transient, without a write.
func TestACycleCommandWaitsForAClaimABoundedTime(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b")
	r := newRig(t, g, nil)
	r.claimAfterLastCycle(time.Hour)
	waited := r.waits(t)
	err := r.h.Command(context.Background(), cycleCommand(r, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}))
	if err == nil || messages.IsPermanent(err) {
		t.Fatalf("command under an hour's claim = %v; want a transient error", err)
	}
	if want := slices.Repeat([]time.Duration{DefaultClaimFor}, maxClaimWaits); !slices.Equal(*waited, want) {
		t.Fatalf("waited %v; want %v", *waited, want)
	}
	if r.st.saveCount() != 0 {
		t.Fatalf("%d writes under another step's claim", r.st.saveCount())
	}
}

// A token change while a step in flight holds the fleet is recorded — no error, no wait — and the
// first tick after the claim starts its cycle of every instance; ticks during the claim do not.
func TestATokenChangeUnderAClaimStartsItsCycleAfterTheClaim(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b")
	r := newRig(t, g, nil)
	r.claimAfterLastCycle(30 * time.Second)
	waited := r.waits(t)
	ctx := context.Background()
	if err := r.h.ParameterChange(ctx, &messages.ParameterChange{Name: "/runnerfleet/blue/token", Operation: messages.ParameterUpdate}, "ev"); err != nil {
		t.Fatalf("token change under a claim = %v; want it recorded, without error", err)
	}
	rec := r.st.get("blue")
	if rec.ID != "c0" || rec.TokenChangedAt.IsZero() || rec.Claim == nil || rec.Claim.Owner != "other" || len(*waited) != 0 || g.describeCount() != 0 {
		t.Fatalf("cycle %s, token changed %v, claim %+v, waited %v, %d describes; want c0 with the token change recorded, the claim kept, no wait, the group untouched",
			rec.ID, rec.TokenChangedAt, rec.Claim, *waited, g.describeCount())
	}
	r.clk.add(10 * time.Second)
	if _, err := r.h.Advance(ctx, "blue", "tick-during"); err != nil {
		t.Fatal(err)
	}
	if rec := r.st.get("blue"); rec.ID != "c0" {
		t.Fatalf("a tick during the claim started cycle %s", rec.ID)
	}
	r.clk.add(time.Minute)
	if _, err := r.h.Advance(ctx, "blue", "tick-after"); err != nil {
		t.Fatal(err)
	}
	if rec := r.st.get("blue"); rec.Trigger != TriggerToken || !rec.Active() || !rec.All || rec.Progress.Total != 2 {
		t.Fatalf("after the claim: %s cycle %s (%s), all %v; want the token cycle of both instances running", rec.Trigger, rec.ID, rec.Status, rec.All)
	}
}

// A token change and a cycle command both arriving while a step in flight holds the fleet: the
// command waits the claim out and starts its cycle, which keeps the token change (it replaces
// only what is off the current launch template), and the token cycle follows it.
func TestATokenChangeAndACycleCommandUnderAClaimBothStart(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b")
	r := newRig(t, g, nil)
	r.claimAfterLastCycle(30 * time.Second)
	ctx := context.Background()
	if err := r.h.ParameterChange(ctx, &messages.ParameterChange{Name: "/runnerfleet/blue/token", Operation: messages.ParameterUpdate}, "ev"); err != nil {
		t.Fatal(err)
	}
	r.waits(t)
	c := cycleCommand(r, messages.CycleArgs{MaxUnavailable: 1, Surge: 1})
	if err := r.h.Command(ctx, c); err != nil {
		t.Fatalf("command under a claim = %v", err)
	}
	rec := r.st.get("blue")
	if rec.ID != c.ID || !rec.Active() || rec.TokenChangedAt.IsZero() {
		t.Fatalf("cycle %s active %v, token changed %v; want %s started, the token change kept for after it", rec.ID, rec.Active(), rec.TokenChangedAt, c.ID)
	}
	if rec = r.tickUntilDone(t, 30); rec.Status != StatusSucceeded {
		t.Fatalf("command cycle: %s (%s)", rec.Status, rec.Reason)
	}
	r.ticks(t, 1)
	if rec := r.st.get("blue"); rec.Trigger != TriggerToken || !rec.Active() || !rec.All {
		t.Fatalf("after the command's cycle: %s cycle %s (%s); want the token cycle of every instance running", rec.Trigger, rec.ID, rec.Status)
	}
}

// A record of the last schema (no claim, no undo pending) decodes and is stepped; the step writes
// it with this schema, a newer one. A claim and a pending undo survive the state table's JSON.
func TestARecordOfTheLastSchemaIsSteppedAndTheNewFieldsSurviveJSON(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b", "i-c")
	r := newRig(t, g, nil)
	body := `{"schema":2,"id":"c1","trigger":"command","status":"running","started_at":"2026-11-27T17:58:00Z",` +
		`"updated_at":"2026-11-27T17:58:00Z","max_unavailable":1,"surge":1,"health_timeout":300000000000,` +
		`"desired":3,"original_max":3,"old":["i-a","i-b","i-c"],"progress":{"total":3,"replaced":0,"draining":0,` +
		`"waiting_for_health":0,"serving":3,"floor":2,"rejected":0},"steps":1}`
	var old Record
	if err := json.Unmarshal([]byte(body), &old); err != nil {
		t.Fatal(err)
	}
	if old.Claim != nil || old.UndoPending {
		t.Fatalf("a schema 2 record decodes with claim %+v, undo pending %v", old.Claim, old.UndoPending)
	}
	r.st.rec["blue"], r.st.ver["blue"] = old, 2
	r.ticks(t, 1)
	rec := r.st.get("blue")
	// Above 2: a worker that knows schema 2 would step a fleet a claim holds and drop an undo
	// pending when it saves; it leaves a record of a newer schema to newer replicas.
	if rec.Schema != recordSchema || rec.Schema <= old.Schema || rec.Steps != 2 || rec.Claim != nil {
		t.Fatalf("schema %d, step %d, claim %+v; want the step taken, written with a schema above %d, its claim released", rec.Schema, rec.Steps, rec.Claim, old.Schema)
	}
	if _, desired := g.capacity(); desired != 4 {
		t.Fatalf("desired %d; want the surge raised to 4", desired)
	}

	rec.Claim = &Claim{Owner: "a", Until: time.Date(2026, 11, 27, 18, 0, 40, 0, time.UTC)}
	rec.UndoPending = true
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	var back Record
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Claim == nil || *back.Claim != *rec.Claim || !back.UndoPending {
		t.Fatalf("after JSON: claim %+v, undo pending %v; want %+v, true", back.Claim, back.UndoPending, rec.Claim)
	}
}

func TestClaimMustOutlastTheApplyTimeout(t *testing.T) {
	c := Config{Fleets: []FleetConfig{{Settings: fleet.Settings{Name: "a", GroupName: "g"}, Surge: 1, OnTokenChange: OnTokenCycle}}, ApplyTimeout: time.Minute, ClaimFor: time.Minute}
	if err := (Config{Fleets: c.Fleets, ApplyTimeout: time.Minute, ClaimFor: 2 * time.Minute}).Validate(); err != nil {
		t.Fatalf("Validate of a claim twice the apply timeout: %v", err)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "at least twice the apply timeout") {
		t.Fatalf("Validate: %v; want the claim refused as shorter than twice the apply timeout", err)
	}
}
