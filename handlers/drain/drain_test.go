package drain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/messages"
)

// Two long jobs: intake stops once, heartbeats keep the hook alive at the validated interval,
// the runner is unregistered only after the jobs end, and the action is completed once.
func TestDrainWaitsForJobsThenCompletes(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 2)
	r.start("i-1", "tok-1")
	endAt := t0.Add(20 * time.Second) // > 3 heartbeat timeouts of 6 s
	r.deliver(1000, func(now time.Time) {
		if !now.Before(endAt) {
			r.world.setJobs("i-1", 0)
		}
	})
	r.world.check(t)
	if n := r.world.sent(DefaultStopIntakeDocument); n != 1 {
		t.Errorf("stop-intake sent %d times, want 1", n)
	}
	if n := r.world.sent(DefaultUnregisterDocument); n != 1 {
		t.Errorf("unregister sent %d times, want 1", n)
	}
	if got := r.world.completes; len(got) != 1 || got[0] != "i-1:CONTINUE" {
		t.Errorf("completions = %v, want [i-1:CONTINUE]", got)
	}
	rec := r.record("tok-1")
	if rec.Phase != phaseDone || rec.Outcome != OutcomeCompleted {
		t.Errorf("drain ended in %s/%s, want done/completed", rec.Phase, rec.Outcome)
	}
	// Heartbeats: the hook (6 s) must never have gone a third of its timeout without one.
	hb := append([]time.Time{t0}, r.world.heartbeats...)
	if len(hb) < 5 {
		t.Errorf("%d heartbeats over 20 s with a 6 s hook, want at least 5", len(hb)-1)
	}
	for i := 1; i < len(hb); i++ {
		if gap := hb[i].Sub(hb[i-1]); gap > 2*time.Second {
			t.Errorf("heartbeat gap %s exceeds a third of the 6 s hook timeout", gap)
		}
	}
	if r.queue.len() != 0 {
		t.Errorf("%d follow-ups left after the drain finished", r.queue.len())
	}
	if got := counterValue(r.m.Finished); got != 1 {
		t.Errorf("finished_total = %v, want 1", got)
	}
	if got := counterValue(r.m.Heartbeats); got != float64(len(r.world.heartbeats)) {
		t.Errorf("heartbeats_total = %v, want %d", got, len(r.world.heartbeats))
	}
}

// SQS delays are whole seconds, rounded up. Against a 5 s hook (a heartbeat due every 1.67 s)
// that rounding alone would space heartbeats 2 s apart; the drain asks for them early enough
// that they still come at most the interval apart.
func TestHeartbeatsKeepTheirIntervalWithWholeSecondDelays(t *testing.T) {
	r := newRig(t, func(c *Config) { c.CommandPoll = 300 * time.Millisecond })
	r.world.hookHeartbeat = 5 * time.Second
	r.queue.wholeSeconds = true
	f := testFleet()
	f.Drain.PollInterval = time.Minute // only heartbeats make the steps come often
	r.cfg.Fleets = []fleet.Settings{f}
	r.h = r.handler("replica-a")
	r.world.addInstance("i-1", 1)
	r.start("i-1", "tok-1")
	endAt := t0.Add(30 * time.Second)
	r.deliver(1000, func(now time.Time) {
		if !now.Before(endAt) {
			r.world.setJobs("i-1", 0)
		}
	})
	r.world.check(t)
	every := 5 * time.Second / 3
	hb := append([]time.Time{t0}, r.world.heartbeats...)
	if len(hb) < 30/2 {
		t.Errorf("%d heartbeats over 30 s with a 5 s hook", len(hb)-1)
	}
	for i := 1; i < len(hb); i++ {
		if gap := hb[i].Sub(hb[i-1]); gap > every {
			t.Errorf("heartbeat %d came %s after the one before; the interval is %s", i, gap, every)
		}
	}
}

// The same event three times, on two replicas: one claim, one stop command, one completion.
func TestDuplicateEventsClaimOnce(t *testing.T) {
	r := newRig(t, nil)
	b := r.handler("replica-b")
	r.world.addInstance("i-1", 0)
	var wg sync.WaitGroup
	for i, h := range []*Handler{r.h, b, r.h} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := &messages.Message{Kind: messages.KindTerminateAction, Payload: action("i-1", "tok-1"), Time: t0}
			if err := h.Handle(context.Background(), msg); err != nil {
				t.Errorf("delivery %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	r.deliver(100, nil)
	if n := r.world.sent(DefaultStopIntakeDocument); n != 1 {
		t.Errorf("stop-intake sent %d times, want 1", n)
	}
	if n := len(r.world.completes); n != 1 {
		t.Errorf("%d completions, want 1", n)
	}
	if !strings.Contains(r.logs.String(), "duplicate: drain already claimed") {
		t.Error("no decision record for the duplicate claims")
	}
}

// A follow-up delivered twice (SQS at-least-once) takes its step once.
func TestDuplicateFollowUpTakesStepOnce(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 1)
	r.start("i-1", "tok-1")
	it, ok := r.queue.pop()
	if !ok {
		t.Fatal("no follow-up after start")
	}
	r.world.advanceTo(it.at)
	before := r.store.version("tok-1")
	for range 2 {
		step := it.step
		if err := r.h.Advance(context.Background(), &step); err != nil {
			t.Fatal(err)
		}
	}
	// The step polls the stop command's status: it takes no lease, so one write (its result).
	if got := r.store.version("tok-1") - before; got != 1 {
		t.Errorf("the record moved %d versions, want 1 (a polling step writes only its result)", got)
	}
	if n := r.queue.len(); n != 1 {
		t.Errorf("%d follow-ups scheduled, want 1", n)
	}
}

// Two replicas take the same polling step at once (a duplicate follow-up, or Sweep racing the
// follow-up): neither holds a lease while it reads the metrics. Both see the jobs end and move on
// to unregister, which sends a command: each must take the lease first, conditioned on the
// version it read, so exactly one sends it and exactly one result is kept.
func TestRacingPollsSendTheNextCommandOnce(t *testing.T) {
	r := newRig(t, nil)
	b := r.handler("replica-b")
	r.world.addInstance("i-1", 1)
	r.start("i-1", "tok-1")
	for r.record("tok-1").Phase != phaseWatch {
		if r.deliver(1, nil) == 0 {
			t.Fatalf("follow-ups ran out before the drain watched: %s", r.record("tok-1").Phase)
		}
	}
	it, ok := r.queue.pop()
	if !ok {
		t.Fatal("no follow-up scheduled in the watch phase")
	}
	r.world.advanceTo(it.at)
	r.world.setJobs("i-1", 0)
	hold, entered := r.world.holdPolls()
	before := r.store.version("tok-1")
	errs := make(chan error, 2)
	for _, h := range []*Handler{r.h, b} {
		step := it.step
		go func() { errs <- h.Advance(context.Background(), &step) }()
	}
	<-entered
	<-entered // both are inside their metrics read, neither holding a lease
	if v := r.store.version("tok-1"); v != before {
		t.Errorf("a polling step wrote the record (version %d → %d) before its read ended", before, v)
	}
	close(hold)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := r.world.sent(DefaultUnregisterDocument); n != 1 {
		t.Errorf("unregister sent %d times, want 1", n)
	}
	if n := r.queue.len(); n != 1 {
		t.Errorf("%d follow-ups scheduled, want 1 (by the replica whose step was kept)", n)
	}
	if got := r.record("tok-1"); got.Phase != phaseUnregisterWait || got.Lease != nil {
		t.Errorf("record after the race: phase %s lease %v, want unregister-wait and no lease", got.Phase, got.Lease)
	}
	if !strings.Contains(r.logs.String(), "lost the drain to another replica") {
		t.Error("no decision record for the replica whose step was dropped")
	}
}

// A replica paused mid-step (after its lease write, before its SSM call) while another one
// takes over after the lease: the paused one can neither repeat the command nor write back.
func TestPausedReplicaCannotRepeatOrUndo(t *testing.T) {
	r := newRig(t, func(c *Config) { c.StepTimeout = 100 * time.Millisecond; c.Lease = time.Second })
	b := r.handler("replica-b")
	r.world.addInstance("i-1", 1)
	pause := make(chan struct{})
	r.world.mu.Lock()
	r.world.pause = pause
	r.world.mu.Unlock()

	done := make(chan error, 1)
	go func() { done <- r.h.Start(context.Background(), action("i-1", "tok-1"), t0) }()
	// Wait until A holds the lease (its claim is written), then let its step time out.
	for r.store.version("tok-1") == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // A's step deadline (100 ms, real time) passes while paused

	// B: before the lease ends nothing happens; after it, B takes the step.
	r.world.mu.Lock()
	r.world.pause = nil
	r.world.mu.Unlock()
	if err := b.advance(context.Background(), "tok-1", 1, true); err != nil {
		t.Fatal(err)
	}
	if n := r.world.sent(DefaultStopIntakeDocument); n != 0 {
		t.Fatalf("B sent a command while A's lease held")
	}
	r.world.advanceTo(t0.Add(2 * time.Second))
	if err := b.advance(context.Background(), "tok-1", 1, true); err != nil {
		t.Fatal(err)
	}
	afterB := r.record("tok-1")
	close(pause) // A resumes
	if err := <-done; err != nil {
		t.Fatalf("A: %v", err)
	}
	if n := r.world.sent(DefaultStopIntakeDocument); n != 1 {
		t.Errorf("stop-intake sent %d times, want 1 (by B only)", n)
	}
	if got := r.record("tok-1"); got.Steps != afterB.Steps || got.Phase != afterB.Phase {
		t.Errorf("A's stale result overwrote B's: phase %s steps %d, want %s %d", got.Phase, got.Steps, afterB.Phase, afterB.Steps)
	}
}

func TestInstanceGoneCompletesAtOnce(t *testing.T) {
	r := newRig(t, nil)
	r.start("i-gone", "tok-1")
	r.deliver(10, nil)
	if len(r.world.sends) != 0 {
		t.Errorf("%d SSM commands for a gone instance", len(r.world.sends))
	}
	if n := len(r.world.completes); n != 1 {
		t.Errorf("%d completions, want 1", n)
	}
	if rec := r.record("tok-1"); rec.Outcome != OutcomeInstanceGone {
		t.Errorf("outcome %s, want %s", rec.Outcome, OutcomeInstanceGone)
	}
}

func TestNotManagedCompletesAtOnce(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 0)
	r.world.managed["i-1"] = false
	r.start("i-1", "tok-1")
	r.deliver(10, nil)
	if len(r.world.sends) != 0 {
		t.Errorf("%d SSM commands for an instance SSM does not manage", len(r.world.sends))
	}
	if rec := r.record("tok-1"); rec.Outcome != OutcomeNotManaged || len(r.world.completes) != 1 {
		t.Errorf("outcome %s with %d completions, want %s and 1", rec.Outcome, len(r.world.completes), OutcomeNotManaged)
	}
	if !strings.Contains(r.logs.String(), `"outcome":"not-managed"`) {
		t.Error("no decision record with the not-managed outcome")
	}
}

// Stop intake fails every time: retried (2 retries), then the drain watches metrics only and
// completes when the jobs end — never before — with the stop-failed outcome.
func TestStopIntakeFailingFallsBackToMetrics(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 1)
	r.world.failDocs[DefaultStopIntakeDocument] = -1
	r.start("i-1", "tok-1")
	r.deliver(1000, func(now time.Time) {
		if now.Sub(t0) > 30*time.Second {
			r.world.setJobs("i-1", 0)
		}
	})
	r.world.check(t)
	if n := r.world.sent(DefaultStopIntakeDocument); n != 3 {
		t.Errorf("stop-intake sent %d times, want 3 (1 + 2 retries)", n)
	}
	if n := r.world.sent(DefaultUnregisterDocument); n != 0 {
		t.Errorf("unregister sent %d times while the runner never stopped", n)
	}
	rec := r.record("tok-1")
	if rec.Outcome != OutcomeStopFailed || len(r.world.completes) != 1 {
		t.Errorf("outcome %s, %d completions; want %s, 1", rec.Outcome, len(r.world.completes), OutcomeStopFailed)
	}
	if rec.FinishedAt.Sub(t0) < 30*time.Second {
		t.Errorf("finished at +%s, before the jobs ended", rec.FinishedAt.Sub(t0))
	}
	if len(r.world.heartbeats) < 10 {
		t.Errorf("only %d heartbeats over 30 s of degraded drain", len(r.world.heartbeats))
	}
	if got := counterValue(r.m.Errors); got < 4 {
		t.Errorf("errors_total = %v, want ≥ 4 (3 failed commands + the outcome)", got)
	}
}

// Metrics stop answering: the status document tells the jobs.
func TestSilentMetricsUseStatusDocument(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 2)
	r.world.metricsErr["i-1"] = errors.New("connection refused")
	r.start("i-1", "tok-1")
	r.deliver(1000, func(now time.Time) {
		if now.Sub(t0) > 8*time.Second {
			r.world.setJobs("i-1", 0)
		}
	})
	r.world.check(t)
	if n := r.world.sent(DefaultStatusDocument); n < 2 {
		t.Errorf("status sent %d times, want several", n)
	}
	if rec := r.record("tok-1"); rec.Outcome != OutcomeCompleted {
		t.Errorf("outcome %s, want completed", rec.Outcome)
	}
	if r.world.sent(DefaultUnregisterDocument) != 1 {
		t.Error("runner not unregistered")
	}
}

// A status command whose answer was lost is not looked for at the next status step: its output
// would be jobs counted in the past. A new one is sent.
func TestLostStatusAnswerIsNotAdoptedLater(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 2)
	r.world.metricsErr["i-1"] = errors.New("connection refused")
	r.world.lostAnswers[DefaultStatusDocument] = 1
	r.start("i-1", "tok-1")
	r.deliver(1000, func(now time.Time) {
		if now.Sub(t0) > 8*time.Second {
			r.world.setJobs("i-1", 0)
		}
	})
	r.world.check(t)
	if r.world.finds != 0 {
		t.Errorf("%d Find calls, want 0 (a lost status answer is stale by the next status step)", r.world.finds)
	}
	if n := r.world.sent(DefaultStatusDocument); n < 2 {
		t.Errorf("status sent %d times, want a new one after the lost answer", n)
	}
	if rec := r.record("tok-1"); rec.Outcome != OutcomeCompleted {
		t.Errorf("outcome %s, want completed", rec.Outcome)
	}
}

// Neither metrics nor the status document can tell: never complete; at the maximum drain,
// stop heartbeating and leave the action to the hook's timeout.
func TestUnknownJobsNeverComplete(t *testing.T) {
	r := newRig(t, func(c *Config) { c.Fleets[0].Drain.MaxDrain = 20 * time.Second })
	r.world.addInstance("i-1", 1)
	r.world.metricsErr["i-1"] = errors.New("hang")
	r.world.statusOut[DefaultStatusDocument] = "garbage"
	r.start("i-1", "tok-1")
	r.deliver(1000, nil)
	if len(r.world.completes) != 0 {
		t.Fatalf("completed with unknown jobs: %v", r.world.completes)
	}
	rec := r.record("tok-1")
	if rec.Outcome != OutcomeMaxDrain {
		t.Errorf("outcome %s, want %s", rec.Outcome, OutcomeMaxDrain)
	}
	for _, hb := range r.world.heartbeats {
		if hb.After(t0.Add(20 * time.Second)) {
			t.Errorf("heartbeat at +%s after the maximum drain", hb.Sub(t0))
		}
	}
}

func TestMaxDrainWithJobsRunningNeverCompletes(t *testing.T) {
	r := newRig(t, func(c *Config) { c.Fleets[0].Drain.MaxDrain = 15 * time.Second })
	r.world.addInstance("i-1", 3)
	r.start("i-1", "tok-1")
	r.deliver(1000, nil)
	if len(r.world.completes) != 0 || r.world.sent(DefaultUnregisterDocument) != 0 {
		t.Fatalf("completed (%v) or unregistered while 3 jobs run", r.world.completes)
	}
	if rec := r.record("tok-1"); rec.Outcome != OutcomeMaxDrain || rec.Phase != phaseDone {
		t.Errorf("drain %s/%s, want done/%s", rec.Phase, rec.Outcome, OutcomeMaxDrain)
	}
}

// Default maximum drain: the hook's global timeout, min(48 h, 100 × heartbeat timeout).
func TestDefaultMaxDrainIsHookGlobalTimeout(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 1)
	r.start("i-1", "tok-1")
	if got := r.record("tok-1").Deadline.Sub(t0); got != 600*time.Second {
		t.Errorf("max drain %s, want 100 × 6 s", got)
	}
	r2 := newRig(t, nil)
	r2.world.hookHeartbeat = 7200 * time.Second
	r2.world.addInstance("i-1", 1)
	r2.start("i-1", "tok-1")
	if got := r2.record("tok-1").Deadline.Sub(t0); got != 48*time.Hour {
		t.Errorf("max drain %s, want 48h", got)
	}
}

func TestHeartbeatRefusedEndsDrain(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 1)
	r.start("i-1", "tok-1")
	r.deliver(3, nil)
	r.world.mu.Lock()
	r.world.actionGone = true
	r.world.mu.Unlock()
	r.deliver(1000, nil)
	if rec := r.record("tok-1"); rec.Outcome != OutcomeActionGone {
		t.Errorf("outcome %s, want %s", rec.Outcome, OutcomeActionGone)
	}
	if len(r.world.completes) != 0 {
		t.Error("completed an action that was gone")
	}
}

// Unregister refused while the runner still exits: retried with backoff, then it works.
func TestUnregisterRetried(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 0)
	r.world.failDocs[DefaultUnregisterDocument] = 1
	r.start("i-1", "tok-1")
	r.deliver(100, nil)
	if n := r.world.sent(DefaultUnregisterDocument); n != 2 {
		t.Errorf("unregister sent %d times, want 2", n)
	}
	if rec := r.record("tok-1"); rec.Outcome != OutcomeCompleted {
		t.Errorf("outcome %s", rec.Outcome)
	}
}

// A Send whose answer is lost after SSM took the command (a timeout) is settled by looking for
// the command, not by sending the document again: one stop-intake, one unregister.
func TestLostSendAnswerIsFollowedNotResent(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 1)
	r.world.lostAnswers[DefaultStopIntakeDocument] = 1
	r.world.lostAnswers[DefaultUnregisterDocument] = 1
	r.start("i-1", "tok-1")
	r.deliver(1000, func(now time.Time) {
		if !now.Before(t0.Add(10 * time.Second)) {
			r.world.setJobs("i-1", 0)
		}
	})
	r.world.check(t)
	for _, doc := range []string{DefaultStopIntakeDocument, DefaultUnregisterDocument} {
		if n := r.world.sent(doc); n != 1 {
			t.Errorf("%s sent %d times, want 1 (its lost answer settled by Find)", doc, n)
		}
	}
	if r.world.finds != 2 {
		t.Errorf("%d Find calls, want 2 (one per lost answer)", r.world.finds)
	}
	rec := r.record("tok-1")
	if rec.Outcome != OutcomeCompleted || len(r.world.completes) != 1 || rec.Unsure != nil {
		t.Errorf("outcome %q, %d completions, unsure %+v: want completed once, nothing unsure", rec.Outcome, len(r.world.completes), rec.Unsure)
	}
	if !strings.Contains(r.logs.String(), "was sent after all") {
		t.Error("no decision record says the command was sent after all")
	}
}

// A command sent, then the step's own write lost (a failing save here; a worker killed between
// the two is the same): the lease write said the command was going out, so the step recovered
// by the sweep looks for it and follows it instead of sending the document again.
func TestCommandSentBeforeALostWriteIsNotResent(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 1)
	r.world.afterSend = func(document string) {
		if document == DefaultStopIntakeDocument {
			r.world.afterSend = nil // once (Send holds r.world.mu)
			r.store.mu.Lock()
			r.store.failSaves = 1
			r.store.mu.Unlock()
		}
	}
	if err := r.h.Start(context.Background(), action("i-1", "tok-1"), r.world.Now()); err == nil {
		t.Fatal("Start succeeded though its step's write failed")
	}
	if n := r.world.sent(DefaultStopIntakeDocument); n != 1 || r.queue.len() != 0 {
		t.Fatalf("stop-intake sent %d times, %d follow-ups; want 1 and none (the write failed)", n, r.queue.len())
	}
	r.world.advanceTo(t0.Add(time.Minute)) // past the lease and the sweep's grace
	if got, err := r.h.Sweep(context.Background()); err != nil || got != 1 {
		t.Fatalf("sweep advanced %d (%v), want 1", got, err)
	}
	r.world.setJobs("i-1", 0)
	r.deliver(1000, nil)
	if n := r.world.sent(DefaultStopIntakeDocument); n != 1 {
		t.Errorf("stop-intake sent %d times, want 1 (followed after the lost write)", n)
	}
	if r.world.finds != 1 {
		t.Errorf("%d Find calls, want 1 (the recovered step's)", r.world.finds)
	}
	if rec := r.record("tok-1"); rec.Outcome != OutcomeCompleted || rec.Unsure != nil {
		t.Errorf("outcome %q, unsure %+v: want completed, nothing unsure", rec.Outcome, rec.Unsure)
	}
}

// CompleteLifecycleAction went through and the step's own write was lost: the recovered step
// finds the action no longer pending and reports the drain completed (by the earlier attempt),
// not "action-gone", which would send someone looking for who else ended it.
func TestCompletionBeforeALostWriteIsReportedCompleted(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 0)
	r.world.afterComplete = func() {
		r.world.afterComplete = nil
		r.store.mu.Lock()
		r.store.failSaves = 1
		r.store.mu.Unlock()
	}
	_ = r.h.Start(context.Background(), action("i-1", "tok-1"), r.world.Now())
	failed := 0
	for {
		it, ok := r.queue.pop()
		if !ok {
			break
		}
		r.world.advanceTo(it.at)
		if err := r.h.Handle(context.Background(), &messages.Message{Kind: messages.KindDrainStep, Payload: &it.step}); err != nil {
			failed++
		}
	}
	if failed != 1 {
		t.Fatalf("%d steps failed, want the one whose write was lost", failed)
	}
	if rec := r.record("tok-1"); rec.Phase == phaseDone || len(r.world.completes) != 1 {
		t.Fatalf("phase %s, completes %v: want the completion made and its write lost", rec.Phase, r.world.completes)
	}
	r.world.advanceTo(t0.Add(time.Minute)) // past the lease and the sweep's grace
	if got, err := r.h.Sweep(context.Background()); err != nil || got != 1 {
		t.Fatalf("sweep advanced %d (%v), want 1", got, err)
	}
	rec := r.record("tok-1")
	if rec.Phase != phaseDone || rec.Outcome != OutcomeCompleted || !strings.Contains(rec.Note, "earlier attempt") {
		t.Fatalf("phase %s, outcome %q, note %q: want done, completed by the earlier attempt", rec.Phase, rec.Outcome, rec.Note)
	}
	if len(r.world.completes) != 1 {
		t.Fatalf("completes %v, want 1", r.world.completes)
	}
}

// A claim whose write took longer than a step's time leaves no time for the step's calls: the
// fence counts from before the write, so it stays inside the lease the write set however slow
// the write was (another replica may take the step once the lease ends). The stop is sent by the
// next step, once.
func TestSlowClaimWriteLeavesTheStepFenced(t *testing.T) {
	r := newRig(t, func(c *Config) { c.StepTimeout = 100 * time.Millisecond })
	r.world.addInstance("i-1", 1)
	r.store.slowNext = 150 * time.Millisecond
	r.start("i-1", "tok-1")
	if n := r.world.sent(DefaultStopIntakeDocument); n != 0 {
		t.Fatalf("stop-intake sent %d times by a step whose time ran out during its claim", n)
	}
	if rec := r.record("tok-1"); rec.Phase != phaseStopIntake || rec.Note != fencedNote {
		t.Fatalf("phase %s, note %q: want stop-intake still to do, fenced", rec.Phase, rec.Note)
	}
	r.world.setJobs("i-1", 0)
	r.deliver(1000, nil)
	if n := r.world.sent(DefaultStopIntakeDocument); n != 1 {
		t.Fatalf("stop-intake sent %d times, want 1", n)
	}
	if rec := r.record("tok-1"); rec.Outcome != OutcomeCompleted {
		t.Fatalf("outcome %q, want completed", rec.Outcome)
	}
}

// A hook's timeouts are read again after hookReread: a stack update that lowered the hook's
// heartbeat timeout reaches the drains started afterwards. A failing re-read keeps the last.
func TestHookTimeoutsAreReadAgain(t *testing.T) {
	r := newRig(t, nil)
	every := func(token string, at time.Duration) time.Duration {
		t.Helper()
		r.world.advanceTo(t0.Add(at))
		r.world.addInstance("i-"+token, 1)
		r.start("i-"+token, token)
		return r.record(token).HeartbeatEvery
	}
	if got := every("a", 0); got != 2*time.Second {
		t.Fatalf("heartbeat interval %s, want 2s (a third of the hook's 6 s)", got)
	}
	r.world.mu.Lock()
	r.world.hookHeartbeat = 3 * time.Second // the stack lowered it
	r.world.mu.Unlock()
	if got := every("b", time.Minute); got != 2*time.Second {
		t.Errorf("a minute later: interval %s, want the read of a minute ago's 2s", got)
	}
	if got := every("c", hookReread+time.Second); got != time.Second {
		t.Errorf("after %s: interval %s, want 1s (a third of the lowered 3 s)", hookReread, got)
	}
	r.world.mu.Lock()
	r.world.hookErr = errors.New("fake: DescribeLifecycleHooks throttled")
	r.world.mu.Unlock()
	if got := every("d", 2*hookReread+2*time.Second); got != time.Second {
		t.Errorf("with the re-read failing: interval %s, want the last read's 1s", got)
	}
}

// A Send that failed before SSM took anything is sent again once Find finds nothing; a Find that
// fails is retried before anything is sent.
func TestFailedSendIsResentWhenFindFindsNothing(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 0)
	r.world.sendErr[DefaultStopIntakeDocument] = errors.New("fake: throttled")
	r.world.findErr = errors.New("fake: ListCommands throttled")
	r.start("i-1", "tok-1")
	if n := r.world.sent(DefaultStopIntakeDocument); n != 0 {
		t.Fatalf("stop-intake taken %d times by a failing Send", n)
	}
	r.world.mu.Lock()
	delete(r.world.sendErr, DefaultStopIntakeDocument)
	r.world.mu.Unlock()
	r.deliver(1, nil) // the retry: Find fails, nothing is sent
	if n := r.world.sent(DefaultStopIntakeDocument); n != 0 || r.world.finds != 1 {
		t.Fatalf("after a failing Find: stop-intake sent %d times, %d finds; want 0 and 1", n, r.world.finds)
	}
	r.world.mu.Lock()
	r.world.findErr = nil
	r.world.mu.Unlock()
	r.deliver(1000, nil)
	if n := r.world.sent(DefaultStopIntakeDocument); n != 1 {
		t.Errorf("stop-intake sent %d times, want 1", n)
	}
	if rec := r.record("tok-1"); rec.Outcome != OutcomeCompleted {
		t.Errorf("outcome %q, want completed", rec.Outcome)
	}
}

func TestUnregisterGivingUpStillCompletes(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 0)
	r.world.failDocs[DefaultUnregisterDocument] = -1
	r.start("i-1", "tok-1")
	r.deliver(100, nil)
	if rec := r.record("tok-1"); rec.Outcome != OutcomeUnregisterFailed || len(r.world.completes) != 1 {
		t.Errorf("outcome %s with %d completions", rec.Outcome, len(r.world.completes))
	}
}

func TestCompleteRetriedOnError(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 0)
	r.world.completeErrs = 2
	r.start("i-1", "tok-1")
	r.deliver(100, nil)
	if rec := r.record("tok-1"); rec.Outcome != OutcomeCompleted || len(r.world.completes) != 1 {
		t.Errorf("outcome %s with %d completions", rec.Outcome, len(r.world.completes))
	}
}

// SSM answers Pending for a while (InvocationDoesNotExist right after send): the drain waits.
func TestPendingCommandIsWaitedFor(t *testing.T) {
	r := newRig(t, nil)
	r.world.pendingFor = 3
	r.world.addInstance("i-1", 0)
	r.start("i-1", "tok-1")
	r.deliver(100, nil)
	if n := r.world.sent(DefaultStopIntakeDocument); n != 1 {
		t.Errorf("stop-intake sent %d times, want 1", n)
	}
	if rec := r.record("tok-1"); rec.Outcome != OutcomeCompleted {
		t.Errorf("outcome %s", rec.Outcome)
	}
}

// A record in a phase this worker does not know (a newer worker wrote it, mid rolling deploy)
// is neither finished nor completed: this replica keeps the action alive and leaves the step
// to one that knows the phase.
func TestUnknownPhaseKeepsTheActionAlive(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 2)
	rec := record{Schema: recordSchema, Token: "tok-1", Fleet: "blue", Group: "blue-asg", Hook: fleet.DefaultTerminateHook,
		InstanceID: "i-1", Phase: "from-a-newer-worker", StartedAt: t0, Deadline: t0.Add(time.Hour),
		HeartbeatEvery: 2 * time.Second, LastHeartbeat: t0, Jobs: 2, Due: t0}
	body, _ := jsonMarshal(rec)
	if ok, _ := r.store.Save(context.Background(), partitionKey("tok-1"), sortKey, body, 0, rec.Due, time.Time{}); !ok {
		t.Fatal("seeding the record")
	}
	r.world.advanceTo(t0.Add(5 * time.Second)) // a heartbeat is due
	step := messages.DrainStep{Fleet: "blue", InstanceID: "i-1", ActionToken: "tok-1", GroupName: "blue-asg", Attempt: 1}
	if err := r.h.Advance(context.Background(), &step); err != nil {
		t.Fatal(err)
	}
	got := r.record("tok-1")
	if got.Phase != "from-a-newer-worker" || got.Outcome != "" {
		t.Errorf("phase %s outcome %q, want the unknown phase kept and no outcome", got.Phase, got.Outcome)
	}
	if len(r.world.completes) != 0 || len(r.world.sends) != 0 {
		t.Errorf("%d completions and %d commands for a phase this worker does not know", len(r.world.completes), len(r.world.sends))
	}
	if len(r.world.heartbeats) != 1 {
		t.Errorf("%d heartbeats, want 1 (one was due)", len(r.world.heartbeats))
	}
	if r.queue.len() != 1 {
		t.Errorf("%d follow-ups scheduled, want 1 (for a replica that knows the phase)", r.queue.len())
	}
	if !strings.Contains(got.Note, "unknown to this worker") {
		t.Errorf("note %q does not say the phase is unknown", got.Note)
	}
}

// A record written by a newer worker (a rolling deploy) is neither stepped nor written by this
// one: its follow-up is passed on for a newer replica, stale follow-ups and sweeps do nothing.
func TestNewerSchemaIsLeftToANewerReplica(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 2)
	rec := record{Schema: recordSchema + 1, Token: "tok-1", Fleet: "blue", Group: "blue-asg", Hook: fleet.DefaultTerminateHook,
		InstanceID: "i-1", Phase: phaseWatch, StartedAt: t0, Deadline: t0.Add(time.Hour),
		HeartbeatEvery: 2 * time.Second, LastHeartbeat: t0, Jobs: 2, Due: t0}
	known, _ := jsonMarshal(rec)
	// A field this worker does not know: saving the record with this code would drop it.
	body := append(bytes.TrimSuffix(known, []byte("}")), []byte(`,"from_the_future":{"keep":true}}`)...)
	if ok, _ := r.store.Save(context.Background(), partitionKey("tok-1"), sortKey, body, 0, rec.Due, time.Time{}); !ok {
		t.Fatal("seeding the record")
	}
	r.world.advanceTo(t0.Add(time.Minute)) // overdue, a heartbeat due: this worker would step it
	for _, attempt := range []int{2, 1} {  // a stale follow-up, then the latest
		step := messages.DrainStep{Fleet: "blue", InstanceID: "i-1", ActionToken: "tok-1", GroupName: "blue-asg", Attempt: attempt}
		if err := r.h.Advance(context.Background(), &step); err != nil {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
	}
	if n, err := r.h.Sweep(context.Background()); err != nil || n != 0 {
		t.Errorf("sweep advanced %d drains (%v), want 0", n, err)
	}
	got, version, _, _ := r.store.Load(context.Background(), partitionKey("tok-1"), sortKey)
	if !bytes.Equal(got, body) || version != 1 {
		t.Errorf("record rewritten (version %d):\n%s\nwant it untouched at version 1:\n%s", version, got, body)
	}
	// The action is kept alive (after a rollback no replica may step it), once per interval
	// however many copies and sweeps come; nothing else is done.
	if len(r.world.heartbeats) != 1 || len(r.world.sends) != 0 || len(r.world.completes) != 0 {
		t.Errorf("%d heartbeats, %d commands, %d completions: want one heartbeat and nothing else from this worker",
			len(r.world.heartbeats), len(r.world.sends), len(r.world.completes))
	}
	q, ok := r.queue.pop()
	if !ok || r.queue.len() != 0 || q.step.Attempt != 1 || q.step.ActionToken != "tok-1" || !q.at.After(r.world.Now()) {
		t.Errorf("follow-ups %+v (more: %d); want the latest one passed on, once, later", q, r.queue.len())
	}
	r.world.advanceTo(q.at) // past the 2 s interval: the passed-on follow-up heartbeats again
	if err := r.h.Advance(context.Background(), &q.step); err != nil {
		t.Fatal(err)
	}
	if n := len(r.world.heartbeats); n != 2 {
		t.Errorf("%d heartbeats after the interval passed, want 2", n)
	}
	if got, _, _, _ := r.store.Load(context.Background(), partitionKey("tok-1"), sortKey); !bytes.Equal(got, body) {
		t.Errorf("record rewritten by a heartbeat:\n%s", got)
	}
	if !strings.Contains(r.logs.String(), "written by a newer worker") {
		t.Error("no log line says the record was left to a newer replica")
	}
}

// A lost follow-up (and a worker killed after its lease write) are recovered by Sweep.
func TestSweepRecoversOrphans(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 1)
	r.world.addInstance("i-2", 1)
	r.queue.drop = 1 // i-1's first follow-up is lost
	r.start("i-1", "tok-1")
	// i-2: the worker dies after claiming (lease written, no step taken).
	r.store.failSaves = 0
	claim := record{Schema: recordSchema, Token: "tok-2", Fleet: "blue", Group: "blue-asg", Hook: fleet.DefaultTerminateHook,
		InstanceID: "i-2", Phase: phaseStopIntake, StartedAt: t0, Deadline: t0.Add(time.Hour),
		HeartbeatEvery: 2 * time.Second, LastHeartbeat: t0, Jobs: -1,
		Lease: &lease{Owner: "dead", Until: t0.Add(15 * time.Second)}, Due: t0.Add(15 * time.Second)}
	body, _ := jsonMarshal(claim)
	if ok, _ := r.store.Save(context.Background(), partitionKey("tok-2"), sortKey, body, 0, claim.Due, time.Time{}); !ok {
		t.Fatal("seeding the orphan")
	}
	if r.queue.len() != 0 {
		t.Fatal("the dropped follow-up was scheduled")
	}
	// Not overdue yet: the sweep touches nothing.
	n, err := r.h.Sweep(context.Background())
	if err != nil || n != 0 {
		t.Fatalf("early sweep advanced %d (%v), want 0", n, err)
	}
	if got := counterValue(r.m.InProgress); got != 2 {
		t.Errorf("in_progress = %v, want 2", got)
	}
	r.world.advanceTo(t0.Add(20 * time.Second))
	if got, _ := r.h.Sweep(context.Background()); got != 2 {
		t.Fatalf("sweep advanced %d drains, want 2", got)
	}
	r.world.setJobs("i-1", 0)
	r.world.setJobs("i-2", 0)
	r.deliver(1000, nil)
	for _, tok := range []string{"tok-1", "tok-2"} {
		if rec := r.record(tok); rec.Outcome != OutcomeCompleted {
			t.Errorf("%s: outcome %q, want completed", tok, rec.Outcome)
		}
	}
	if n := r.world.sent(DefaultStopIntakeDocument); n != 2 {
		t.Errorf("stop-intake sent %d times, want 2", n)
	}
	if got := counterValue(r.m.Recovered); got != 2 {
		t.Errorf("recovered_total = %v, want 2", got)
	}
	if _, _ = r.h.Sweep(context.Background()); counterValue(r.m.InProgress) != 0 {
		t.Error("in_progress not back to 0 after every drain finished")
	}
}

// A follow-up with a store failure is retried by the router (error returned) and, if lost,
// the drain is still recovered.
func TestStoreFailureIsTransient(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 0)
	r.store.failSaves = 1
	err := r.h.Start(context.Background(), action("i-1", "tok-1"), t0)
	if err == nil || messages.IsPermanent(err) {
		t.Fatalf("Start with a failing store = %v, want a transient error", err)
	}
	r.start("i-1", "tok-1") // redelivery
	r.deliver(100, nil)
	if rec := r.record("tok-1"); rec.Outcome != OutcomeCompleted {
		t.Errorf("outcome %s", rec.Outcome)
	}
}

func TestRejects(t *testing.T) {
	r := newRig(t, nil)
	cases := map[string]*messages.Message{
		"other group": {Kind: messages.KindTerminateAction, Payload: func() *messages.LifecycleAction { a := action("i-1", "t"); a.AutoScalingGroupName = "other"; return a }()},
		"launch transition": {Kind: messages.KindTerminateAction, Payload: func() *messages.LifecycleAction {
			a := action("i-1", "t")
			a.LifecycleTransition = "autoscaling:EC2_INSTANCE_LAUNCHING"
			return a
		}()},
		"no token":      {Kind: messages.KindTerminateAction, Payload: action("i-1", "")},
		"launch kind":   {Kind: messages.KindLaunchAction, Payload: action("i-1", "t")},
		"command":       {Kind: messages.KindCommand, Payload: &messages.Command{}},
		"step no token": {Kind: messages.KindDrainStep, Payload: &messages.DrainStep{}},
	}
	for name, msg := range cases {
		if err := r.h.Handle(context.Background(), msg); !messages.IsPermanent(err) {
			t.Errorf("%s: Handle = %v, want a Reject", name, err)
		}
	}
	if len(r.world.sends) != 0 {
		t.Error("a rejected message sent a command")
	}
}

func TestLogsCarryTokenHashNeverToken(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 0)
	const token = "c3ecr3t-token-0123456789"
	r.start("i-1", token)
	r.deliver(100, nil)
	logs := r.logs.String()
	if strings.Contains(logs, token) {
		t.Error("the raw lifecycle action token appears in the logs")
	}
	for _, want := range []string{`"token_hash":"` + tokenHash(token) + `"`, `"fleet":"blue"`, `"instance_id":"i-1"`, `"jobs_remaining"`, `"elapsed_s"`, `"next_step"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("decision records lack %s", want)
		}
	}
}

func TestCheckFleets(t *testing.T) {
	r := newRig(t, func(c *Config) { c.Fleets[0].Drain.HeartbeatInterval = 3 * time.Second })
	if _, err := r.h.CheckFleets(context.Background()); err == nil || !strings.Contains(err.Error(), "exceeds a third") {
		t.Errorf("CheckHooks with 3 s interval on a 6 s hook = %v, want an error", err)
	}
	ok := newRig(t, func(c *Config) { c.Fleets[0].Drain.HeartbeatInterval = 2 * time.Second })
	if _, err := ok.h.CheckFleets(context.Background()); err != nil {
		t.Errorf("CheckHooks with 2 s interval on a 6 s hook = %v", err)
	}
	if !strings.Contains(ok.logs.String(), "may be recovered only after its hook timed out") {
		t.Error("no warning that a 6 s hook times out before a dead worker's drain is recovered")
	}
	long := newRig(t, nil)
	long.world.hookHeartbeat = 30 * time.Minute
	if _, err := long.h.CheckFleets(context.Background()); err != nil || strings.Contains(long.logs.String(), "hook timed out") {
		t.Errorf("CheckHooks on a 30 min hook = %v, or warned: %s", err, long.logs.String())
	}
	// 20 s heartbeats on a 60 s hook, lease 15 s, grace 3 s: 38 s, but the sweep that finds an
	// orphaned drain may come a sweep interval later, and its step heartbeats within a step's 5 s.
	for _, tc := range []struct {
		sweep time.Duration
		warn  bool
	}{{10 * time.Second, false}, {30 * time.Second, true}} {
		r := newRig(t, func(c *Config) { c.Fleets[0].Drain.HeartbeatInterval = 20 * time.Second; c.SweepInterval = tc.sweep })
		r.world.hookHeartbeat = time.Minute
		if _, err := r.h.CheckFleets(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(r.logs.String(), "hook timed out"); got != tc.warn {
			t.Errorf("sweep interval %s: warned %v, want %v: %s", tc.sweep, got, tc.warn, r.logs.String())
		}
	}
	none := newRig(t, nil)
	none.world.hookNames = nil
	if _, err := none.h.CheckFleets(context.Background()); err == nil || !strings.Contains(err.Error(), "no terminate lifecycle hook") {
		t.Errorf("CheckFleets without a hook = %v", err)
	}
	// Every problem at once: no hook and two documents missing.
	none.world.missingDocs = map[string]bool{DefaultStopIntakeDocument: true, DefaultUnregisterDocument: true}
	missing, err := none.h.CheckFleets(context.Background())
	if len(missing) != 0 || err == nil {
		t.Fatalf("CheckFleets with documents missing = %v, %v; want problems, no fleet missing", missing, err)
	}
	for _, want := range []string{"no terminate lifecycle hook", "documents.stop_intake: SSM document " + DefaultStopIntakeDocument + " does not exist",
		"documents.unregister: SSM document " + DefaultUnregisterDocument + " does not exist"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("CheckFleets = %v; want it to say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "documents.status") {
		t.Errorf("CheckFleets = %v; the status document exists", err)
	}
	// A group that does not exist is an absence, not a problem: the worker runs without it.
	gone := newRig(t, nil)
	gone.world.noGroup = true
	gone.world.hookNames = nil
	missing, err = gone.h.CheckFleets(context.Background())
	if err != nil || len(missing) != 1 || missing[0] != "blue" {
		t.Errorf("CheckFleets with the group missing = %v, %v; want [blue], no error", missing, err)
	}
	if present, err := gone.h.CheckFleet(context.Background(), "blue"); present || err != nil {
		t.Errorf("CheckFleet(blue) with the group missing = %v, %v", present, err)
	}
	// A failed read is a problem, never taken for an absence.
	failing := newRig(t, nil)
	failing.world.hookErr = errors.New("AccessDenied")
	if missing, err := failing.h.CheckFleets(context.Background()); len(missing) != 0 || err == nil || !strings.Contains(err.Error(), "AccessDenied") {
		t.Errorf("CheckFleets with reads failing = %v, %v", missing, err)
	}
	if _, err := gone.h.CheckFleet(context.Background(), "nope"); err == nil {
		t.Error("CheckFleet of an unknown fleet succeeded")
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := Config{Fleets: []fleet.Settings{
		{Name: "a", GroupName: "g"},
		{Name: "a", GroupName: "g", Drain: fleet.DrainSettings{PollInterval: time.Hour, MaxDrain: 49 * time.Hour}},
	}, StepTimeout: 10 * time.Second, Lease: 5 * time.Second}
	cfg.setDefaults()
	err := cfg.Validate()
	for _, want := range []string{"appears twice", "belongs to two fleets", "poll_interval", "max_drain", "lease"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
	if _, err := New(Config{Fleets: []fleet.Settings{testFleet()}}, Deps{}); err == nil || !strings.Contains(err.Error(), "nil Store") {
		t.Errorf("New with no deps = %v", err)
	}
}

// SendCommand refused for a managed instance (e.g. throttled, a bad document): a command
// failure, retried, not a reason to complete at once.
func TestStopIntakeSendErrorOnManagedInstanceIsRetried(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 1)
	r.world.sendErr[DefaultStopIntakeDocument] = errors.New("InvalidDocument")
	r.start("i-1", "tok-1")
	r.deliver(1000, func(now time.Time) {
		if now.Sub(t0) > 15*time.Second {
			r.world.setJobs("i-1", 0)
		}
	})
	r.world.check(t)
	if rec := r.record("tok-1"); rec.Outcome != OutcomeStopFailed {
		t.Errorf("outcome %s, want %s", rec.Outcome, OutcomeStopFailed)
	}
	if got := counterValue(r.m.Errors); got < 3 {
		t.Errorf("errors_total = %v, want ≥ 3 failed sends", got)
	}
}

type fakeSink struct {
	mu       sync.Mutex
	figs     []Figures
	fail     bool
	attempts int
}

func (s *fakeSink) PublishDrains(_ context.Context, f Figures) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts++
	if s.fail {
		return errors.New("fake sink: throttled")
	}
	s.figs = append(s.figs, f)
	return nil
}

// Sweep publishes each fleet's figures; what a failed publish carried goes with the next one.
func TestSweepPublishesFigures(t *testing.T) {
	r := newRig(t, nil)
	sink := &fakeSink{fail: true}
	r.h.d.Sink = sink
	r.world.addInstance("i-1", 1)
	r.world.addInstance("i-2", 1)
	r.start("i-1", "tok-1")
	r.start("i-2", "tok-2")
	r.deliver(1000, func(now time.Time) {
		if now.Sub(t0) > 10*time.Second {
			r.world.setJobs("i-1", 0)
		}
		if now.Sub(t0) > 20*time.Second && len(r.world.completes) == 1 {
			// i-2 still draining when the first publish fails
			sink.mu.Lock()
			if sink.fail {
				sink.mu.Unlock()
				if _, err := r.h.Sweep(context.Background()); err != nil {
					t.Error(err)
				}
				sink.mu.Lock()
				sink.fail = false
			}
			sink.mu.Unlock()
		}
		if now.Sub(t0) > 25*time.Second {
			r.world.setJobs("i-2", 0)
		}
	})
	if _, err := r.h.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.figs) != 1 || sink.attempts != 2 {
		t.Fatalf("%d of %d publishes succeeded, want 1 of 2: %+v", len(sink.figs), sink.attempts, sink.figs)
	}
	f := sink.figs[0]
	if f.Fleet != "blue" || f.InProgress != 0 || f.Finished[OutcomeCompleted] != 2 {
		t.Errorf("figures %+v, want fleet blue, 0 in progress, 2 completed (one carried over a failed publish)", f)
	}
	if f.Heartbeats != len(r.world.heartbeats) || f.Heartbeats == 0 {
		t.Errorf("figures carry %d heartbeats, the hook got %d", f.Heartbeats, len(r.world.heartbeats))
	}
}

// The sweep reports the time left before the nearest maximum-drain deadline: the fleet's own
// limit, which a fixed age threshold cannot know.
func TestSweepReportsTheLeastTimeLeft(t *testing.T) {
	r := newRig(t, nil)
	sink := &fakeSink{}
	r.h.d.Sink = sink
	r.world.addInstance("i-1", 1)
	r.world.addInstance("i-2", 1)
	r.start("i-1", "tok-1")
	r.world.advanceTo(t0.Add(30 * time.Second))
	r.start("i-2", "tok-2")
	r.world.advanceTo(t0.Add(40 * time.Second))
	if _, err := r.h.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := r.record("tok-1").Deadline.Sub(t0.Add(40 * time.Second))
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.figs) != 1 || sink.figs[0].InProgress != 2 || sink.figs[0].LeastTimeLeft != want || want <= 0 {
		t.Fatalf("figures %+v, want 2 in progress and %s left (the first drain's deadline)", sink.figs, want)
	}
	if got := counterValue(r.h.m.LeastTimeLeft.WithLabelValues("blue")); got != want.Seconds() {
		t.Fatalf("least_time_left_seconds = %v, want %v", got, want.Seconds())
	}
}

// Follow-up steps share StepConcurrency lanes; a new lifecycle event's first step does not wait
// for them: with the only lane held by a slow step, another drain's follow-up waits (here until
// its context ends) while a new event still claims its drain and stops intake at once.
func TestFollowUpsTakeLanesNewEventsDoNot(t *testing.T) {
	r := newRig(t, func(c *Config) { c.StepConcurrency = 1 })
	r.twoWatchingOfThree() // stop intake sent and done on i-1 and i-2
	step := r.latestStep
	r.world.advanceTo(r.world.Now().Add(time.Minute)) // every step due
	hold, entered := r.world.holdPolls()
	first := make(chan error, 1)
	go func() { first <- r.h.Handle(context.Background(), step("tok-1")) }()
	<-entered // tok-1's step holds the only lane, inside its metrics read

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := r.h.Handle(ctx, step("tok-2")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a second follow-up with the only lane taken: %v, want to wait for a lane until its context ends", err)
	}
	stops := r.world.sent(DefaultStopIntakeDocument)
	started := make(chan error, 1)
	go func() { started <- r.h.Start(context.Background(), action("i-3", "tok-3"), r.world.Now()) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("Start with every lane taken: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a new lifecycle event waited for a lane held by a follow-up step")
	}
	if got := r.world.sent(DefaultStopIntakeDocument); got != stops+1 {
		t.Errorf("stop-intake sent %d times after the new event, want %d", got, stops+1)
	}

	r.world.mu.Lock()
	r.world.holdJobs = nil
	r.world.mu.Unlock()
	close(hold)
	if err := <-first; err != nil {
		t.Errorf("the held step: %v", err)
	}
	// The lane is free again: tok-2's follow-up runs.
	before := r.store.version("tok-2")
	if err := r.h.Handle(context.Background(), step("tok-2")); err != nil {
		t.Errorf("tok-2's follow-up once the lane was free: %v", err)
	}
	if v := r.store.version("tok-2"); v <= before {
		t.Errorf("tok-2 still at version %d: its follow-up did not step", v)
	}
}

// A hanging metrics read (or SSM call) may not hold a step until its StepTimeout: a heartbeat
// is sent only at the start of a step, so the step's calls get until the next heartbeat is due
// plus half an interval (at least minPhaseBudget), then the next step heartbeats. Without the
// bound the read would be given the whole 20 s StepTimeout. (The test reads the deadline the
// read was given, not how long the step took.)
func TestHangingCallDoesNotStarveTheHeartbeat(t *testing.T) {
	r := newRig(t, func(c *Config) { c.StepTimeout = 20 * time.Second; c.Lease = time.Minute })
	r.world.hookHeartbeat = 3 * time.Second // an interval of 1 s: the phase budget is minPhaseBudget
	r.h = r.handler("replica-a")
	r.world.addInstance("i-1", 1)
	r.start("i-1", "tok-1")
	for r.record("tok-1").Phase != phaseWatch {
		if r.deliver(1, nil) == 0 {
			t.Fatalf("follow-ups ran out before the drain watched: %s", r.record("tok-1").Phase)
		}
	}
	hold := make(chan struct{})
	defer close(hold)
	r.world.mu.Lock()
	r.world.holdJobs, r.world.entered = hold, make(chan struct{}, 10)
	r.world.mu.Unlock()

	heartbeats := len(r.world.heartbeats)
	it, ok := r.queue.pop()
	if !ok {
		t.Fatal("no follow-up scheduled in the watch phase")
	}
	r.world.advanceTo(it.at)
	if err := r.h.Handle(context.Background(), &messages.Message{Kind: messages.KindDrainStep, Payload: &it.step}); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	rec := r.record("tok-1")
	budget := rec.HeartbeatEvery - min(heartbeatSlack, rec.HeartbeatEvery/2) + minPhaseBudget // the most it may get
	r.world.mu.Lock()
	heldFor := r.world.heldFor
	r.world.mu.Unlock()
	if heldFor <= 0 || heldFor > budget {
		t.Errorf("the hanging metrics read was given %s, want at most %s (the phase budget), not the 20 s step timeout", heldFor, budget)
	}
	if len(r.world.heartbeats) != heartbeats+1 {
		t.Errorf("%d heartbeats in the step, want 1 (one was due)", len(r.world.heartbeats)-heartbeats)
	}
	// The cut read counts as silent metrics: the drain asks the host (the status document) and
	// polls it, or — when that send was cut too — watches again; either way within the interval.
	if (rec.Phase != phaseWatch && rec.Phase != phaseStatusWait) || !rec.Due.Before(r.world.Now().Add(rec.HeartbeatEvery)) {
		t.Errorf("after the cut read: phase %s due %s, want watch or status-wait within the heartbeat interval", rec.Phase, rec.Due.Sub(r.world.Now()))
	}
}

// The unregister document refuses while the service still runs: a job taken after the zero it
// was sent on (a job request in flight when intake stopped). After its retries the drain looks
// at the jobs again, watches the job end, unregisters, and completes: never with the job running.
func TestUnregisterRefusedLooksAtTheJobsAgain(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 0)
	r.world.failDocs[DefaultUnregisterDocument] = 3 // the first send and both retries
	var tookAt time.Time
	r.world.afterSend = func(doc string) {
		if doc == DefaultUnregisterDocument && tookAt.IsZero() {
			tookAt = r.world.now
			r.world.jobs["i-1"] = 1
		}
	}
	r.start("i-1", "tok-1")
	r.deliver(1000, func(now time.Time) {
		if !tookAt.IsZero() && now.Sub(tookAt) > 2*time.Minute {
			r.world.setJobs("i-1", 0)
		}
	})
	r.world.check(t)
	rec := r.record("tok-1")
	if rec.Outcome != OutcomeCompleted || len(r.world.completes) != 1 {
		t.Errorf("outcome %s with %d completions; want completed once", rec.Outcome, len(r.world.completes))
	}
	if n := r.world.sent(DefaultUnregisterDocument); n != 4 {
		t.Errorf("unregister sent %d times, want 4 (three refused, one after the job ended)", n)
	}
	if rec.FinishedAt.Sub(tookAt) < 2*time.Minute {
		t.Errorf("finished %s after the job started, before it ended", rec.FinishedAt.Sub(tookAt))
	}
}

// An instance SSM does not manage whose runner still reports jobs is not completed at once: the
// drain watches the jobs end (no command can stop its intake), then completes as not-managed.
func TestNotManagedWithJobsRunningWaitsForThem(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 2)
	r.world.managed["i-1"] = false
	r.start("i-1", "tok-1")
	r.deliver(1000, func(now time.Time) {
		if now.Sub(t0) > 90*time.Second {
			r.world.setJobs("i-1", 0)
		}
	})
	r.world.check(t)
	if len(r.world.sends) != 0 {
		t.Errorf("%d SSM commands for an instance SSM does not manage", len(r.world.sends))
	}
	rec := r.record("tok-1")
	if rec.Outcome != OutcomeNotManaged || len(r.world.completes) != 1 || rec.FinishedAt.Sub(t0) < 90*time.Second {
		t.Errorf("outcome %s, %d completions, finished at +%s; want not-managed once, after the jobs ended",
			rec.Outcome, len(r.world.completes), rec.FinishedAt.Sub(t0))
	}
}

// A completion that lands but whose answer is lost (the retry finds no pending action) is this
// drain's own: reported completed, not "action-gone".
func TestCompletionWithALostAnswerIsReportedCompleted(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 0)
	r.world.completeLost = 1
	r.start("i-1", "tok-1")
	r.deliver(100, nil)
	rec := r.record("tok-1")
	if rec.Outcome != OutcomeCompleted || len(r.world.completes) != 1 {
		t.Errorf("outcome %s with %d completions; want completed once", rec.Outcome, len(r.world.completes))
	}
}

// A status command is never looked for after a lost write (its answer is only worth having
// fresh); stop intake and unregister are, so they are not sent twice.
func TestLeaseMarksOnlyTheSideEffectsUnsure(t *testing.T) {
	for ph, want := range map[phase]bool{phaseStatus: false, phaseStopIntake: true, phaseUnregister: true, phaseWatch: false} {
		b, err := leasedBody(record{Phase: ph}, t0)
		if err != nil {
			t.Fatal(err)
		}
		var rec record
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
		if got := rec.Unsure != nil; got != want {
			t.Errorf("phase %s: unsure %v, want %v", ph, got, want)
		}
	}
}

// A drain of a fleet this replica's config lacks (a rolling deploy that adds the fleet) is not
// stepped with empty settings: its action is kept alive and its follow-up passed on, untouched.
func TestDrainOfAnUnknownFleetIsPassedOn(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 2)
	rec := record{Schema: recordSchema, Token: "tok-1", Fleet: "green", Group: "green-asg", Hook: fleet.DefaultTerminateHook,
		InstanceID: "i-1", Phase: phaseWatch, StartedAt: t0, Deadline: t0.Add(time.Hour),
		HeartbeatEvery: 2 * time.Second, LastHeartbeat: t0, Jobs: 2, Due: t0}
	body, _ := jsonMarshal(rec)
	if ok, _ := r.store.Save(context.Background(), partitionKey("tok-1"), sortKey, body, 0, rec.Due, time.Time{}); !ok {
		t.Fatal("seeding the record")
	}
	r.world.advanceTo(t0.Add(time.Minute))
	step := messages.DrainStep{Fleet: "green", InstanceID: "i-1", ActionToken: "tok-1", GroupName: "green-asg", Attempt: 1}
	if err := r.h.Advance(context.Background(), &step); err != nil {
		t.Fatal(err)
	}
	got, version, _, _ := r.store.Load(context.Background(), partitionKey("tok-1"), sortKey)
	if !bytes.Equal(got, body) || version != 1 {
		t.Errorf("record rewritten (version %d): %s", version, got)
	}
	if len(r.world.heartbeats) != 1 || len(r.world.sends) != 0 || len(r.world.completes) != 0 {
		t.Errorf("%d heartbeats, %d commands, %d completions: want one heartbeat and nothing else",
			len(r.world.heartbeats), len(r.world.sends), len(r.world.completes))
	}
	if q, ok := r.queue.pop(); !ok || q.step.Attempt != 1 {
		t.Errorf("follow-up %+v (%v): want the latest passed on", q, ok)
	}
	if !strings.Contains(r.logs.String(), "config does not have") {
		t.Error("no log line says why the drain was left")
	}
	// Past its maximum drain (a fleet removed for good), it ends as any drain does there,
	// instead of being passed on for ever.
	r.world.advanceTo(t0.Add(2 * time.Hour))
	if err := r.h.Advance(context.Background(), &step); err != nil {
		t.Fatal(err)
	}
	if rec := r.record("tok-1"); rec.Phase != phaseDone || rec.Outcome != OutcomeMaxDrain {
		t.Errorf("past the deadline: phase %s, outcome %q; want done, max-drain", rec.Phase, rec.Outcome)
	}
	if n := r.queue.len(); n != 0 {
		t.Errorf("%d follow-ups queued after it ended", n)
	}
	if len(r.world.completes) != 0 {
		t.Error("completed an action of a fleet it does not know")
	}
}

// Once a step is written, its follow-up is what carries the drain on (a redelivery of the message
// is stale and does nothing): it is sent on a context of its own, not the message's that a worker
// shutting down cancels, and sent again when SQS fails it once.
func TestFollowUpOutlivesTheMessageAndOneFailure(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 1)
	ctx, cancel := context.WithCancel(context.Background())
	r.queue.fail = 1
	r.world.afterSend = func(string) { cancel() } // SIGTERM while the stop intake is sent
	if err := r.h.Start(ctx, action("i-1", "tok-1"), r.world.Now()); err != nil {
		t.Fatalf("start: %v", err)
	}
	if r.queue.len() != 1 {
		t.Fatalf("%d follow-ups queued, want the stop's follow-up", r.queue.len())
	}
	r.world.afterSend = nil
	r.deliver(1000, func(now time.Time) {
		if now.Sub(t0) > time.Minute {
			r.world.setJobs("i-1", 0)
		}
	})
	r.world.check(t)
	if rec := r.record("tok-1"); rec.Outcome != OutcomeCompleted {
		t.Errorf("outcome %q, want completed without a sweep", rec.Outcome)
	}
}

// An action someone else ended (the hook timed out, an operator completed it) is reported as
// action-gone, not as completed by this drain: whether a refused heartbeat tells it, or the
// drain's first completion call.
func TestActionEndedElsewhereIsActionGone(t *testing.T) {
	r := newRig(t, nil)
	r.world.addInstance("i-1", 0)
	r.world.afterSend = func(doc string) {
		if doc == DefaultUnregisterDocument {
			r.world.actionGone = true // ended elsewhere while the runner was unregistered
		}
	}
	r.start("i-1", "tok-1")
	r.deliver(100, nil)
	if rec := r.record("tok-1"); rec.Outcome != OutcomeActionGone || len(r.world.completes) != 0 {
		t.Errorf("heartbeat refused: outcome %q with %d completions; want action-gone, none", rec.Outcome, len(r.world.completes))
	}

	r = newRig(t, nil)
	r.world.addInstance("i-1", 0)
	r.world.endedElsewhere = true
	r.start("i-1", "tok-1")
	r.deliver(100, nil)
	if rec := r.record("tok-1"); rec.Outcome != OutcomeActionGone || len(r.world.completes) != 0 {
		t.Errorf("first completion refused: outcome %q with %d completions; want action-gone, none", rec.Outcome, len(r.world.completes))
	}
}

// While new drains start (a wave of terminations), this replica's follow-ups run one at a time,
// whatever its lanes, so the polls of the drains already running slow down the new drains' stop
// commands as little as they can; a follow-up whose heartbeat is soon due does not wait.
func TestNewDrainsNarrowTheFollowUpsButNotTheirHeartbeats(t *testing.T) {
	// A held poll keeps its lane for its whole step time: a minute, far past the waits below, so
	// the outcome never depends on how fast this machine is.
	r := newRig(t, func(c *Config) { c.StepConcurrency = 4; c.StepTimeout = time.Minute; c.Lease = 2 * time.Minute })
	r.world.hookHeartbeat = time.Minute // a heartbeat every 20 s; polls every second
	r.twoWatchingOfThree()
	step := r.latestStep
	r.world.advanceTo(r.world.Now().Add(2 * time.Second)) // polls due, heartbeats not soon
	if err := r.h.Start(context.Background(), action("i-3", "tok-3"), r.world.Now()); err != nil {
		t.Fatal(err)
	}
	hold, entered := r.world.holdPolls()
	first := make(chan error, 1)
	go func() { first <- r.h.Handle(context.Background(), step("tok-1")) }()
	<-entered // tok-1's poll runs, inside its metrics read

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := r.h.Handle(ctx, step("tok-2")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a second poll while a drain starts, three lanes free: %v; want it to wait for the first", err)
	}
	// tok-2's heartbeat soon due: it does not wait.
	r.world.advanceTo(r.world.Now().Add(15 * time.Second))
	second := make(chan error, 1)
	go func() { second <- r.h.Handle(context.Background(), step("tok-2")) }()
	select {
	case <-entered:
	case <-time.After(10 * time.Second): // the held poll would keep it waiting a minute
		t.Error("a step with its heartbeat due waited behind a poll")
	}
	r.world.mu.Lock()
	r.world.holdJobs = nil
	r.world.mu.Unlock()
	close(hold)
	for _, ch := range []chan error{first, second} {
		select {
		case err := <-ch:
			if err != nil {
				t.Errorf("held step: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a held step never ended")
		}
	}
}
