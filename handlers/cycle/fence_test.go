package cycle

import (
	"context"
	"encoding/json"
	"log/slog"
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

// pauseAfterFirstStep makes the writer of the cycle's first step stop right after its write
// lands — before any Auto Scaling call — and run meanwhile (the rest of the world while it is
// stopped), then stay stopped until its step's context has ended: a replica paused (SIGSTOP, a
// long GC) between its claim and its calls. The wait is bounded for a step whose context never
// ends, so the test fails rather than hangs.
func (r *rig) pauseAfterFirstStep(t *testing.T, meanwhile func()) (ran func() bool) {
	t.Helper()
	fired := false
	r.st.afterSave = func(ctx context.Context, rec Record) {
		if fired || rec.Steps != 1 {
			return
		}
		fired = true
		meanwhile()
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
			t.Error("the paused step's context never ended: its calls may run at any time after it resumes")
		}
	}
	return func() bool { return fired }
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
	ran := r.pauseAfterFirstStep(t, func() {
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
	ran := r.pauseAfterFirstStep(t, func() {
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

// A cycle command that finds a step in flight (here the last cycle's MaxSize given back) is
// retried, not refused, and starts once the claim has ended.
func TestACycleCommandWaitsForAClaim(t *testing.T) {
	g := newFakeGroup("2", "i-a", "i-b")
	r := newRig(t, g, nil)
	now := r.clk.now()
	r.st.rec["blue"] = Record{Schema: recordSchema, ID: "c0", Status: StatusSucceeded, FinishedAt: now.Add(-time.Hour),
		Claim: &Claim{Owner: "other", Until: now.Add(10 * time.Second)}}
	r.st.ver["blue"] = 3
	err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1})
	if err == nil || messages.IsPermanent(err) || !strings.Contains(err.Error(), "claimed by other") {
		t.Fatalf("command under a claim = %v; want a retried error naming the claim", err)
	}
	if r.st.saves != 0 {
		t.Fatalf("%d writes under another step's claim", r.st.saves)
	}
	r.clk.add(11 * time.Second)
	if err := r.command(t, messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	if rec := r.st.get("blue"); !rec.Active() || rec.Claim != nil {
		t.Fatalf("after the claim: active %v, claim %+v; want a cycle started and its first step's claim released", rec.Active(), rec.Claim)
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
