package launch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Failures on the worker's side — DescribeInstances throttled or refused to the worker's role, its
// own deadline — say nothing about the runner: the gate neither counts them as looks nor ABANDONs
// for them, and the decision log never blames the runner for them.

var (
	throttled    = &WorkerError{Reason: WorkerThrottled, Err: errors.New("describing instance i-1: api error RequestLimitExceeded: Request limit exceeded.")}
	accessDenied = &WorkerError{Reason: WorkerAccessDenied, Err: errors.New("describing instance i-1: api error UnauthorizedOperation: You are not authorized to perform this operation.")}
)

// lookFailures is runnerfleet_launch_look_failures_total for fleet blue and reason.
func lookFailures(h *Handler, reason string) float64 {
	var m dto.Metric
	_ = h.m.LookFailures.WithLabelValues("blue", reason).Write(&m)
	return m.GetCounter().GetValue()
}

// step hands the gate its event (or follow-up) once, then moves the clock to its next step.
func step(t *testing.T, f *fakes, h *Handler) {
	t.Helper()
	if err := h.Handle(context.Background(), launchMsg("blue-asg")); err != nil {
		t.Fatal(err)
	}
	if len(f.completes) == 0 {
		f.advance(f.delays[len(f.delays)-1])
	}
}

// maxGap is the longest time between two heartbeats, or from start to the first.
func maxGap(start time.Time, at []time.Time) time.Duration {
	var gap time.Duration
	prev := start
	for _, t := range at {
		gap = max(gap, t.Sub(prev))
		prev = t
	}
	return gap
}

// A gate whose looks all fail on the worker's side (throttled, access denied) does not ABANDON at
// its timeout: it holds the instance, heartbeating the hook, logging at ERROR (rate-limited) and
// counting look_failures_total, for as long as the hook's global timeout allows; at that limit it
// continues the instance, reason could-not-look, rather than terminate a runner that may be
// healthy and busy for the worker's own failure.
func TestWorkerThatCannotLookNeverAbandons(t *testing.T) {
	for name, blind := range map[string]*WorkerError{"throttled": throttled, "access denied": accessDenied} {
		t.Run(name, func(t *testing.T) {
			f := newFakes()
			f.hookHB = 30 * time.Second // global timeout 50 m; a heartbeat every 10 s
			f.health = []*[2]float64{{1, 0}, {4, 0}}
			f.blindErr = blind
			var logs bytes.Buffer
			h := newLoggingHandler(t, f, gate, &logs) // timeout 1 m, poll 10 s
			start := f.Now()
			for range 400 {
				step(t, f, h)
				if len(f.completes) > 0 {
					break
				}
			}
			at := f.Now().Sub(start)
			r := f.record(t)
			holdLimit := 50*time.Minute - addedWait(10*time.Second) - holdMargin
			if len(f.completes) != 1 || f.completes[0] != ResultContinue || r.Reason != ReasonCouldNotLook {
				t.Fatalf("completes %v (reason %s, note %q) %s after the launch; want CONTINUE (%s), never ABANDON", f.completes, r.Reason, r.Note, at, ReasonCouldNotLook)
			}
			if at != holdLimit {
				t.Errorf("decided %s after the launch, want at the hold limit %s (the hook's global timeout less the added looks and %s), not at the 1m timeout", at, holdLimit, holdMargin)
			}
			if r.Checks != 0 || r.Last != "" || r.LookFailures != f.blindLooks || f.looks != 0 {
				t.Errorf("record: %d checks (last %q), %d look failures; want 0 checks and all %d looks as the worker's", r.Checks, r.Last, r.LookFailures, f.blindLooks)
			}
			if n := lookFailures(h, blind.Reason); n != float64(f.blindLooks) {
				t.Errorf("look_failures_total{reason=%s} = %v, want %d", blind.Reason, n, f.blindLooks)
			}
			if gap := maxGap(start, f.hbAt); gap > 10*time.Second {
				t.Errorf("the hook went %s without a heartbeat, want at most 10 s", gap)
			}
			l := logs.String()
			errorLines := strings.Count(l, `"level":"ERROR","msg":"launch gate: the worker could not look at instance i-1: `+blind.Reason+`"`)
			if want := int(holdLimit/lookFailureLogEvery) + 1; errorLines < 2 || errorLines > want {
				t.Errorf("%d ERROR lines over %s of failed looks, want between 2 and %d (rate-limited)", errorLines, holdLimit, want)
			}
			if strings.Contains(l, `"last_look":"`+ReasonNoAnswer+`"`) || strings.Contains(l, `"reason":"`+ReasonNoAnswer+`"`) {
				t.Errorf("the log blames the runner (no answer) for the worker's failed looks")
			}
			if !strings.Contains(r.Note, "none reached the runner") || !strings.Contains(r.Note, blind.Reason) {
				t.Errorf("note %q does not say that no look reached the runner, and why", r.Note)
			}
		})
	}
}

// A hook whose heartbeat timeout covered the gate's deadline was not heartbeated; a gate that
// holds past it because it cannot look heartbeats from then on, or the hook's timeout would
// ABANDON the instance behind its back.
func TestHoldingGateHeartbeatsAHookItDidNotHaveTo(t *testing.T) {
	f := newFakes()
	f.hookHB = 20 * time.Minute
	f.health = []*[2]float64{{1, 0}, {4, 0}}
	f.blindErr = accessDenied
	h := newHandler(t, f, gate)
	start := f.Now()
	for f.Now().Sub(start) < time.Hour && len(f.completes) == 0 {
		step(t, f, h)
	}
	if len(f.completes) != 0 {
		t.Fatalf("completes %v within an hour of failed looks, want none (the hold lasts until the hook's global timeout)", f.completes)
	}
	if r := f.record(t); r.HeartbeatEvery != 20*time.Minute/3 {
		t.Errorf("heartbeat every %s while holding, want a third of the hook's 20m", r.HeartbeatEvery)
	}
	if gap := maxGap(start, f.hbAt); len(f.hbAt) < 8 || gap > 20*time.Minute/3+10*time.Second {
		t.Errorf("%d heartbeats in an hour, longest gap %s; want one about every %s", len(f.hbAt), gap, 20*time.Minute/3)
	}
}

// Looks the worker could not make, past the gate's deadline, then looks at a healthy runner: the
// gate continues it (healthy), its looks at the runner counted apart from the failed ones.
func TestWorkerFailuresThenHealthyRunnerContinues(t *testing.T) {
	for name, blind := range map[string]*WorkerError{"throttled": throttled, "access denied": accessDenied} {
		t.Run(name, func(t *testing.T) {
			f := newFakes()
			f.health = []*[2]float64{{1, 0}, {4, 0}}
			f.blind = []error{blind, blind, blind, blind, blind, blind, blind, blind, blind} // 0 s … 80 s; the deadline is at 60 s
			var logs bytes.Buffer
			h := newLoggingHandler(t, f, gate, &logs)
			start := f.Now()
			at := decide(t, f, h, 20).Sub(start)
			r := f.record(t)
			if len(f.completes) != 1 || f.completes[0] != ResultContinue || r.Reason != ReasonHealthy {
				t.Fatalf("completes %v, reason %s (note %q) %s after the launch; want CONTINUE (healthy)", f.completes, r.Reason, r.Note, at)
			}
			if r.Checks != 2 || r.LookFailures != 9 || !r.LookFailedSince.IsZero() {
				t.Errorf("record: %d checks, %d look failures, failing since %v; want 2 and 9, and the run ended", r.Checks, r.LookFailures, r.LookFailedSince)
			}
			if !strings.Contains(logs.String(), "the worker can look at the runner again") {
				t.Error("no log line that the worker can look again")
			}
		})
	}
}

// A runner that really does not answer is abandoned at the timeout as before (no answer) — and
// when the worker's looks fail now and then, they are counted apart and do not make it the
// runner's fault, nor keep it from being abandoned.
func TestSilentRunnerIsStillAbandoned(t *testing.T) {
	for name, tc := range map[string]struct {
		blind            []error
		checks, failures int
		decidedBy        time.Duration
	}{
		"no answer":                    {nil, 7, 0, time.Minute},
		"no answer, some looks failed": {[]error{nil, throttled, nil, throttled, nil, nil, throttled}, 5, 3, time.Minute + 10*time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakes()
			f.health = []*[2]float64{nil}
			f.blind = tc.blind
			h := newHandler(t, f, gate)
			start := f.Now()
			at := decide(t, f, h, 12).Sub(start)
			r := f.record(t)
			if len(f.completes) != 1 || f.completes[0] != ResultAbandon || r.Reason != ReasonNoAnswer {
				t.Fatalf("completes %v, reason %s; want ABANDON (no answer)", f.completes, r.Reason)
			}
			if at > tc.decidedBy {
				t.Errorf("abandoned %s after the launch, want by %s", at, tc.decidedBy)
			}
			if r.Checks != tc.checks || r.LookFailures != tc.failures {
				t.Errorf("record: %d checks, %d look failures; want %d looks at the runner and %d the worker could not make", r.Checks, r.LookFailures, tc.checks, tc.failures)
			}
		})
	}
}

// A runner that answers, whose job requests succeeded once but stand still since, and whose
// running jobs the worker cannot count at the timeout (DescribeInstances throttled): no ABANDON
// while it cannot count them (the runner may be busy, and ABANDON would kill its jobs); once it
// can, the usual rule decides.
func TestWorkerThatCannotCountJobsDoesNotAbandon(t *testing.T) {
	for name, tc := range map[string]struct {
		jobs          int
		result, why   string
		jobsCountable time.Duration
	}{
		"idle once counted": {0, ResultAbandon, ReasonNoJobRequest, 5 * time.Minute},
		"busy once counted": {2, ResultContinue, ReasonRunningJobs, 5 * time.Minute},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakes()
			f.hookHB = 30 * time.Second // global timeout 50 m: the hold outlasts the 5 m without counts
			f.health = []*[2]float64{{3, 0}}
			f.jobs, f.jobsErr = tc.jobs, throttled
			h := newHandler(t, f, gate)
			start := f.Now()
			for range 60 {
				if f.Now().Sub(start) >= tc.jobsCountable {
					f.mu.Lock()
					f.jobsErr = nil
					f.mu.Unlock()
				}
				step(t, f, h)
				if len(f.completes) > 0 {
					break
				}
			}
			at := f.Now().Sub(start)
			r := f.record(t)
			if len(f.completes) != 1 || f.completes[0] != tc.result || r.Reason != tc.why {
				t.Fatalf("completes %v, reason %s (note %q); want %s (%s)", f.completes, r.Reason, r.Note, tc.result, tc.why)
			}
			if at < tc.jobsCountable {
				t.Errorf("decided %s after the launch, while the worker could not count the jobs (until %s)", at, tc.jobsCountable)
			}
			if lookFailures(h, WorkerThrottled) == 0 {
				t.Error("the failed job counts are not in look_failures_total")
			}
		})
	}
}

// A gate recorded by a worker of schema 3 (no hold limit, no hook timeout) is stepped by this one:
// its failed looks hold it for its deadline and the looks the gate may add past it, which the
// older worker's resolve kept inside the hook's timeouts, and the record is written as schema 4.
func TestSchema3GateHoldsWithinItsAddedWait(t *testing.T) {
	f := newFakes()
	f.blindErr = throttled
	h := newHandler(t, f, gate)
	start := f.Now()
	old := fmt.Sprintf(`{"schema":3,"token":"tok","fleet":"blue","group":"blue-asg","hook":"runnerfleet-launch","instance_id":"i-1",`+
		`"event":{"id":"ev-1","source":"aws.autoscaling","detail-type":"EC2 Instance-launch Lifecycle Action","time":%q,"detail":{}},`+
		`"phase":"wait","started_at":%q,"deadline":%q,"due":%q,"poll":%d,"checks":0,"ok":0,"rejected":0,"follow_ups":0,"last_heartbeat":%q}`,
		start.Format(time.RFC3339Nano), start.Format(time.RFC3339Nano), start.Add(time.Minute).Format(time.RFC3339Nano),
		start.Format(time.RFC3339Nano), int64(10*time.Second), start.Format(time.RFC3339Nano))
	if ok, _ := f.Save(context.Background(), keyPrefix+"tok", sortKey, []byte(old), 0, start, time.Time{}); !ok {
		t.Fatal("seeding the record")
	}
	for range 40 {
		step(t, f, h)
		if len(f.completes) > 0 {
			break
		}
	}
	r := f.record(t)
	if len(f.completes) != 1 || f.completes[0] != ResultContinue || r.Reason != ReasonCouldNotLook {
		t.Fatalf("completes %v, reason %s; want CONTINUE (%s)", f.completes, r.Reason, ReasonCouldNotLook)
	}
	if at, want := f.Now().Sub(start), time.Minute+addedWait(10*time.Second); at != want {
		t.Errorf("decided %s after the launch, want %s", at, want)
	}
	body, _, _, _ := f.Load(context.Background(), keyPrefix+"tok", sortKey)
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil || raw["schema"] != float64(recordSchema) || raw["look_failures"] == nil {
		t.Errorf("record written as %s (%v); want schema %d with its look failures", body, err, recordSchema)
	}
}

// Whose failure a look was: an adapter's *WorkerError (wrapped, its reason kept, an unknown one
// counted as other), or any failure once the step's own context has ended; anything else is the
// runner's.
func TestWorkerSide(t *testing.T) {
	live := context.Background()
	ended, cancel := context.WithCancel(live)
	cancel()
	for name, tc := range map[string]struct {
		ctx  context.Context
		err  error
		want string // "": the runner's
	}{
		"none":                      {live, nil, ""},
		"the runner's":              {live, errors.New("runner metrics of i-1: no answer: connection refused"), ""},
		"throttled, wrapped":        {live, fmt.Errorf("looking: %w", throttled), WorkerThrottled},
		"unknown reason":            {live, &WorkerError{Reason: "cosmic-rays", Err: errors.New("x")}, WorkerOther},
		"any, after the step ended": {ended, errors.New("runner metrics of i-1: no answer: context canceled"), WorkerDeadline},
	} {
		t.Run(name, func(t *testing.T) {
			we := workerSide(tc.ctx, tc.err)
			switch {
			case tc.want == "" && we != nil:
				t.Errorf("taken as the worker's (%s)", we.Reason)
			case tc.want != "" && (we == nil || we.Reason != tc.want):
				t.Errorf("got %v, want the worker's (%s)", we, tc.want)
			}
		})
	}
}
