package launch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// How long a gate holds while the worker cannot look, and what ends the hold: its limit (at most
// maxBlindHold past the deadline), heartbeats failing near the hook's timeout, and never an
// ABANDON for the worker's own failure, at a retried completion neither.

var deadlineErr = &WorkerError{Reason: WorkerDeadline, Err: context.DeadlineExceeded}

// A decided ABANDON whose completion failed is retried later and counts the runner's jobs again;
// when the worker cannot count them then, the ABANDON is not completed: the runner may have taken
// jobs since. The gate holds again (its next look decides anew) and, past its hold limit,
// continues the instance (could-not-look).
func TestRetriedAbandonHoldsWhenTheWorkerCannotCountJobs(t *testing.T) {
	for name, tc := range map[string]struct {
		retryAfter  time.Duration // after the failed completion
		result, why string
	}{
		"inside the hold limit, then busy": {time.Minute, ResultContinue, ReasonRunningJobs},
		"past the hold limit":              {2 * time.Hour, ResultContinue, ReasonCouldNotLook},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakes()
			f.hookHB = 15 * time.Minute // global timeout 25 h
			f.health = []*[2]float64{nil}
			h := newHandler(t, f, gate)
			ctx := context.Background()
			for range 6 { // looks until the minute's timeout
				_ = h.Handle(ctx, launchMsg("blue-asg"))
				f.advance(10 * time.Second)
			}
			f.mu.Lock()
			f.failNext = true
			f.mu.Unlock()
			if err := h.Handle(ctx, launchMsg("blue-asg")); err == nil {
				t.Fatal("a failed completion must be retried")
			}
			if r := f.record(t); r.Result != ResultAbandon {
				t.Fatalf("decided %q, want ABANDON (no answer, no jobs)", r.Result)
			}
			f.mu.Lock()
			f.health = []*[2]float64{{0, 0}} // the runner answers by the retry, has taken jobs, and EC2 throttles
			f.jobs, f.jobsErr = 2, throttled
			f.mu.Unlock()
			f.advance(tc.retryAfter)
			if err := h.Handle(ctx, launchMsg("blue-asg")); err != nil {
				t.Fatal(err)
			}
			if len(f.completes) > 0 && f.completes[0] == ResultAbandon {
				t.Fatalf("completes %v: ABANDON completed while the worker could not count the runner's jobs", f.completes)
			}
			if len(f.completes) == 0 {
				if r := f.record(t); r.Phase != phaseWait || r.LookFailures == 0 || !strings.Contains(r.Note, "was not completed") {
					t.Fatalf("record %+v; want the gate holding again, its failed count noted", r)
				}
				f.mu.Lock()
				f.jobsErr = nil // EC2 answers again
				f.mu.Unlock()
				f.advance(f.delays[len(f.delays)-1])
				decide(t, f, h, 20)
			}
			r := f.record(t)
			if len(f.completes) != 1 || f.completes[0] != tc.result || r.Reason != tc.why {
				t.Fatalf("completes %v, reason %s (note %q); want %s (%s)", f.completes, r.Reason, r.Note, tc.result, tc.why)
			}
		})
	}
}

// However long the hook would let it (its global timeout, 25 h for a 900 s hook), a gate whose
// worker cannot look holds at most maxBlindHold past its deadline: held instances count as
// booting, which stalls the fleet's repairs. A record of schema 4, which stored a hold limit at
// the hook's global timeout, is held to the same bound.
func TestBlindHoldEndsAnHourPastTheDeadline(t *testing.T) {
	for _, seeded := range []bool{false, true} {
		t.Run(fmt.Sprintf("schema 4 record %v", seeded), func(t *testing.T) {
			f := newFakes()
			f.hookHB = 15 * time.Minute // global timeout 25 h
			f.blindErr = throttled
			h := newHandler(t, f, gate)
			start := f.Now()
			if seeded {
				ts := func(d time.Duration) string { return start.Add(d).Format(time.RFC3339Nano) }
				old := fmt.Sprintf(`{"schema":4,"token":"tok","fleet":"blue","group":"blue-asg","hook":"runnerfleet-launch","instance_id":"i-1",`+
					`"event":{"id":"ev-1","source":"aws.autoscaling","detail-type":"EC2 Instance-launch Lifecycle Action","time":%q,"detail":{}},`+
					`"phase":"wait","started_at":%q,"deadline":%q,"due":%q,"poll":%d,"checks":0,"ok":0,"rejected":0,"follow_ups":0,"last_heartbeat":%q,`+
					`"hook_timeout":%d,"hold_until":%q}`,
					ts(0), ts(0), ts(time.Minute), ts(0), int64(10*time.Second), ts(0), int64(15*time.Minute), ts(25*time.Hour-10*time.Minute))
				if ok, _ := f.Save(context.Background(), keyPrefix+"tok", sortKey, []byte(old), 0, start, time.Time{}); !ok {
					t.Fatal("seeding the record")
				}
			}
			for range 1000 {
				step(t, f, h)
				if len(f.completes) > 0 {
					break
				}
			}
			r := f.record(t)
			if len(f.completes) != 1 || f.completes[0] != ResultContinue || r.Reason != ReasonCouldNotLook {
				t.Fatalf("completes %v, reason %s, %s after the launch; want CONTINUE (%s)", f.completes, r.Reason, f.Now().Sub(start), ReasonCouldNotLook)
			}
			if at, want := f.Now().Sub(start), time.Minute+maxBlindHold; at != want {
				t.Errorf("decided %s after the launch, want %s (the deadline and %s), not near the hook's 25 h", at, want, maxBlindHold)
			}
			if !seeded && !r.HoldUntil.Equal(r.Deadline.Add(maxBlindHold)) {
				t.Errorf("hold_until %v stored, want the deadline and %s", r.HoldUntil, maxBlindHold)
			}
		})
	}
}

// A holding gate whose heartbeats keep failing stops holding before the hook's heartbeat timeout
// (counted from its last good heartbeat) would have AWS apply its default result, ABANDON: it
// continues the instance (could-not-look) while it may still complete. Its heartbeats are
// retried every few seconds meanwhile, without a look each time.
func TestHoldEndsBeforeFailingHeartbeatsLetTheHookLapse(t *testing.T) {
	f := newFakes()
	f.hookHB = 30 * time.Second // a heartbeat every 10 s; global timeout 50 m
	f.blindErr = throttled
	h := newHandler(t, f, gate)
	start := f.Now()
	var lastGood time.Time
	for range 400 {
		if f.Now().Sub(start) >= 5*time.Minute && f.hbErr == nil {
			f.mu.Lock()
			f.hbErr = errors.New("api error Throttling: Rate exceeded")
			lastGood = f.hbAt[len(f.hbAt)-1]
			f.mu.Unlock()
		}
		step(t, f, h)
		if len(f.completes) > 0 {
			break
		}
	}
	r := f.record(t)
	if len(f.completes) != 1 || f.completes[0] != ResultContinue || r.Reason != ReasonCouldNotLook {
		t.Fatalf("completes %v, reason %s, %s after the launch; want CONTINUE (%s)", f.completes, r.Reason, f.Now().Sub(start), ReasonCouldNotLook)
	}
	if lapse := f.Now().Sub(lastGood); lapse >= 30*time.Second {
		t.Errorf("completed %s after the last good heartbeat: the hook's 30 s heartbeat timeout has ABANDONed the instance by then", lapse)
	}
	if !strings.Contains(r.Note, "heartbeats failing") {
		t.Errorf("note %q does not say the heartbeats failed", r.Note)
	}
	if looks := f.blindLooks - int(lastGood.Sub(start)/(10*time.Second)) - 1; looks > 2 {
		t.Errorf("%d looks in the %s of failing heartbeats, want at most 2 (a poll apart)", looks, f.Now().Sub(lastGood))
	}
}

// A runner whose looks answered and never showed a successful job request never got a job, so it
// runs none: when the worker cannot count its jobs at the timeout it is abandoned as before (no
// successful job request), on what its looks showed, rather than held for the worker's failure.
func TestRunnerThatNeverGotAJobIsAbandonedWhenJobsCannotBeCounted(t *testing.T) {
	f := newFakes()
	f.hookHB = 30 * time.Second
	f.health = []*[2]float64{{0, 0}}
	f.jobsErr = throttled
	h := newHandler(t, f, gate)
	start := f.Now()
	at := decide(t, f, h, 20).Sub(start)
	r := f.record(t)
	if len(f.completes) != 1 || f.completes[0] != ResultAbandon || r.Reason != ReasonNoJobRequest {
		t.Fatalf("completes %v, reason %s (note %q) %s after the launch; want ABANDON (%s)", f.completes, r.Reason, r.Note, at, ReasonNoJobRequest)
	}
	if at != time.Minute || !strings.Contains(r.Note, "taken as 0") {
		t.Errorf("decided %s after the launch (note %q), want at the 1m timeout, the uncounted jobs noted", at, r.Note)
	}
}

// The running jobs of a runner that answered before, and whose own metrics stop telling them, are
// awaited for jobsUnknownLooks polls; counts the worker could not make in between (throttling
// now and then) neither restart that wait nor keep it from ending, nor use it up: every other
// count fails on the worker's side, so the runner's metrics fail to tell the jobs at 60, 80, 100
// and 120 s, the wait's polls counted without the polls the worker could not count.
func TestIntermittentWorkerFailuresDoNotRestartTheWaitForJobs(t *testing.T) {
	f := newFakes()
	f.hookHB = 30 * time.Second
	f.health = []*[2]float64{{3, 0}}
	f.jobsErrs = []error{errors.New("runner metrics of i-1: no gitlab_runner_concurrent"), throttled}
	h := newHandler(t, f, gate)
	start := f.Now()
	at := decide(t, f, h, 40).Sub(start)
	r := f.record(t)
	if len(f.completes) != 1 || f.completes[0] != ResultAbandon || r.Reason != ReasonNoJobRequest {
		t.Fatalf("completes %v, reason %s (note %q); want ABANDON (%s)", f.completes, r.Reason, r.Note, ReasonNoJobRequest)
	}
	if want := time.Minute + 2*jobsUnknownLooks*10*time.Second; at != want {
		t.Errorf("abandoned %s after the launch, want %s (the runner's metrics failed to tell the jobs for %d polls, the worker's failed counts between them not counted)", at, want, jobsUnknownLooks)
	}
}

// Under throttling a gate's failed looks flip between throttled and deadline. Its ERROR line is
// rate-limited per gate, whatever the reason, and while it holds its decision line is written
// with it, not at every step.
func TestHoldingGateLogsAtMostEveryFewMinutes(t *testing.T) {
	f := newFakes()
	f.hookHB = 30 * time.Second // a heartbeat every 10 s
	for i := range 1000 {
		f.blind = append(f.blind, map[bool]error{true: throttled, false: deadlineErr}[i%2 == 0])
	}
	var logs bytes.Buffer
	h := newLoggingHandler(t, f, gate, &logs)
	start := f.Now()
	for f.Now().Sub(start) < 20*time.Minute {
		step(t, f, h)
	}
	if len(f.completes) != 0 {
		t.Fatalf("completes %v while holding", f.completes)
	}
	l := logs.String()
	errorLines := strings.Count(l, `"level":"ERROR","msg":"launch gate: the worker could not look at instance i-1`)
	if want := int(20*time.Minute/lookFailureLogEvery) + 1; errorLines < 2 || errorLines > want {
		t.Errorf("%d ERROR lines in 20 minutes of failed looks, want between 2 and %d (one every %s, whatever the reason)", errorLines, want, lookFailureLogEvery)
	}
	if n := strings.Count(l, `"msg":"launch decision"`); n > errorLines+2 {
		t.Errorf("%d decision lines in 20 minutes of holding (%d steps), want about one with each ERROR line", n, len(f.delays))
	}
	if lookFailures(h, WorkerThrottled) == 0 || lookFailures(h, WorkerDeadline) == 0 {
		t.Error("look_failures_total does not count both reasons")
	}
}

// A newer worker's gate that holds past its deadline and the longest hook heartbeat timeout, up
// to its hold limit, is still passed on and heartbeated by an older replica.
func TestNewerSchemaHoldingGateIsPassedOnToItsHoldLimit(t *testing.T) {
	f := newFakes()
	h := newHandler(t, f, gate)
	newer := fmt.Sprintf(`{"schema":%d,"token":"tok","fleet":"blue","group":"blue-asg","hook":"gate","instance_id":"i-1","phase":"wait",`+
		`"deadline":%q,"hold_until":%q,"heartbeat_every":%d,"last_heartbeat":%q}`, recordSchema+1,
		f.Now().Add(-3*time.Hour).Format(time.RFC3339Nano), f.Now().Add(30*time.Minute).Format(time.RFC3339Nano),
		int64(10*time.Second), f.Now().Add(-15*time.Second).Format(time.RFC3339Nano))
	if ok, _ := f.Save(context.Background(), keyPrefix+"tok", sortKey, []byte(newer), 0, f.Now(), time.Time{}); !ok {
		t.Fatal("seeding the record")
	}
	if err := h.Handle(context.Background(), launchMsg("blue-asg")); err != nil {
		t.Fatal(err)
	}
	if len(f.followUps) != 1 || f.heartbeats != 1 {
		t.Errorf("%d follow-ups, %d heartbeats; want it passed on and heartbeated up to its hold limit", len(f.followUps), f.heartbeats)
	}
}

// A runner answers at the timeout, but its metrics do not tell its running jobs (a blip on the
// runner's side), so the gate awaits them; then the worker cannot look for 20 minutes. That blind
// time does not use up the wait: the first look after it that reaches the runner, whose slots are
// all busy (no new job requests) and whose jobs blip once more, does not ABANDON; the runner gets
// the wait's polls of looks first, and is continued once its jobs are counted, or abandoned
// only after those polls when they stay unknown.
func TestBlindSpellDoesNotUseUpTheWaitForJobs(t *testing.T) {
	blip := errors.New("runner metrics of i-1: no gitlab_runner_concurrent")
	for name, tc := range map[string]struct {
		jobsErrs    []error // the counts after the blind spell (the last repeats)
		result, why string
		looks       int // looks at the runner after the blind spell, the deciding one included
	}{
		"busy, counted at the second look": {[]error{blip, nil}, ResultContinue, ReasonRunningJobs, 2},
		"never counted":                    {[]error{blip}, ResultAbandon, ReasonNoJobRequest, jobsUnknownLooks},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakes()
			f.hookHB = 15 * time.Minute      // global timeout 25 h: the hold limit is an hour past the deadline
			f.health = []*[2]float64{{3, 0}} // answers; its job requests stand still (idle, or every slot busy)
			f.jobs, f.jobsErr = 2, blip
			h := newHandler(t, f, gate)
			start := f.Now()
			for f.record0(t).JobsUnknownSince.IsZero() {
				step(t, f, h)
				if len(f.completes) > 0 || f.Now().Sub(start) > 5*time.Minute {
					t.Fatalf("completes %v by %s: the gate did not await the running jobs", f.completes, f.Now().Sub(start))
				}
			}
			f.mu.Lock()
			f.blindErr = throttled
			f.mu.Unlock()
			for blindFrom := f.Now(); f.Now().Sub(blindFrom) < 20*time.Minute; {
				step(t, f, h)
				if len(f.completes) > 0 {
					t.Fatalf("completes %v while the worker could not look", f.completes)
				}
			}
			f.mu.Lock()
			f.blindErr, f.jobsErr = nil, nil
			f.jobsErrs, f.jobLooks = tc.jobsErrs, 0
			looksBefore := f.looks
			f.mu.Unlock()
			decide(t, f, h, 20)
			r := f.record(t)
			looks := f.looks - looksBefore
			if looks == 1 && f.completes[0] == ResultAbandon {
				t.Fatalf("ABANDONed (note %q) at the first look after the blind spell: the time the worker could not look used up the wait for the runner's jobs", r.Note)
			}
			if len(f.completes) != 1 || f.completes[0] != tc.result || r.Reason != tc.why || looks != tc.looks {
				t.Fatalf("completes %v, reason %s after %d looks at the runner (note %q); want %s (%s) after %d", f.completes, r.Reason, looks, r.Note, tc.result, tc.why, tc.looks)
			}
		})
	}
}

// record0 is the gate's record, or a zero one before there is any.
func (f *fakes) record0(t *testing.T) record {
	t.Helper()
	if _, _, found, _ := f.Load(context.Background(), keyPrefix+"tok", sortKey); !found {
		return record{}
	}
	return f.record(t)
}
