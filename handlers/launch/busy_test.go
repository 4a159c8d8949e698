package launch

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// A runner whose slots are all busy stops requesting jobs, so its request_job counters stand still
// and it is never seen "healthy"; abandoning it at the timeout would terminate the instance and
// kill its jobs. The gate continues it instead, with the reason recorded — also when its metrics
// blip at the deadline's look (the jobs cannot be counted then): it looks again a poll later.
func TestBusyRunnerIsNeverAbandoned(t *testing.T) {
	for name, health := range map[string][]*[2]float64{
		"counters stand still":                {{3, 0}},
		"metrics blip at the deadline's look": {{3, 0}, {3, 0}, {3, 0}, {3, 0}, {3, 0}, {3, 0}, nil, {3, 0}},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakes()
			f.health = health
			f.jobs = 4
			h := newHandler(t, f, gate)
			for range 8 {
				if err := h.Handle(context.Background(), launchMsg("blue-asg")); err != nil {
					t.Fatal(err)
				}
				f.advance(10 * time.Second)
			}
			if len(f.completes) != 1 || f.completes[0] != ResultContinue {
				t.Fatalf("completes %v, want one CONTINUE", f.completes)
			}
			r := f.record(t)
			if r.Phase != phaseDone || r.Result != ResultContinue || r.Reason != ReasonRunningJobs || r.JobsAtTimeout != 4 {
				t.Fatalf("record %+v", r)
			}
			if !strings.Contains(r.Note, "running 4 job(s)") {
				t.Errorf("note %q does not say why", r.Note)
			}
		})
	}
}

// An ABANDON whose completion failed is looked at again when it is retried later: the runner
// may have taken jobs since the decision, and ABANDON would kill them.
func TestRetriedAbandonLooksForJobsAgain(t *testing.T) {
	f := newFakes()
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
	f.health = []*[2]float64{{0, 0}} // the runner answers by the retry, and has taken jobs
	f.jobs = 2
	f.mu.Unlock()
	f.advance(time.Minute)
	if err := h.Handle(ctx, launchMsg("blue-asg")); err != nil {
		t.Fatal(err)
	}
	if len(f.completes) != 1 || f.completes[0] != ResultContinue {
		t.Fatalf("completes %v, want one CONTINUE (2 jobs running at the retry)", f.completes)
	}
}

// A runner shown idle at the timeout is abandoned at once; one whose jobs stay uncountable is
// abandoned once they have been for jobsUnknownLooks polls past the timeout.
func TestIdleOrUncountableRunnerIsStillAbandoned(t *testing.T) {
	for name, tc := range map[string]struct {
		jobs      int
		err       error
		jobLooks  int
		decidedAt time.Duration
		wantNote  string
	}{
		"no jobs": {0, nil, 1, time.Minute, ""},
		"jobs unknown": {0, errors.New("runner metrics of i-1: no gitlab_runner_concurrent"), 1 + jobsUnknownLooks, time.Minute + jobsUnknownLooks*10*time.Second,
			"the runner answered before, but its running jobs stayed unknown for 30s past the timeout: taken as no longer answering; running jobs unknown at the timeout: runner metrics of i-1: no gitlab_runner_concurrent"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakes()
			f.health = []*[2]float64{{0, 0}}
			f.jobs, f.jobsErr = tc.jobs, tc.err
			h := newHandler(t, f, gate)
			start := f.Now()
			if at := decide(t, f, h, 12); at.Sub(start) != tc.decidedAt {
				t.Errorf("decided %s after the launch, want %s", at.Sub(start), tc.decidedAt)
			}
			if len(f.completes) != 1 || f.completes[0] != ResultAbandon {
				t.Fatalf("completes %v, want one ABANDON", f.completes)
			}
			if f.jobLooks != tc.jobLooks {
				t.Errorf("jobs counted %d times, want %d", f.jobLooks, tc.jobLooks)
			}
			r := f.record(t)
			if r.Reason != ReasonNoJobRequest || r.JobsAtTimeout != 0 || !strings.Contains(r.Note, tc.wantNote) {
				t.Fatalf("record %+v", r)
			}
		})
	}
}

// A runner that answered before and stops answering at the deadline's look (its page and so its
// jobs unknown) gets jobsUnknownLooks more polls, heartbeats going on, before the ABANDON: a busy
// runner whose metrics blip must not be terminated with its jobs. One silent for that whole window
// is abandoned, and the record says why.
func TestRunnerSilentPastTheTimeoutIsAbandonedAfterAFewPolls(t *testing.T) {
	f := newFakes()
	f.hookHB = 30 * time.Second // a heartbeat every 10 s
	f.health = []*[2]float64{{3, 0}, {3, 0}, {3, 0}, {3, 0}, {3, 0}, {3, 0}, nil}
	f.jobs = 4
	h := newHandler(t, f, map[string]Gate{"blue": {Timeout: time.Minute, Poll: 10 * time.Second}})
	start := f.Now()
	at := decide(t, f, h, 20)
	if want := time.Minute + jobsUnknownLooks*10*time.Second; at.Sub(start) != want {
		t.Errorf("abandoned %s after the launch, want %s (the deadline and %d polls)", at.Sub(start), want, jobsUnknownLooks)
	}
	r := f.record(t)
	if len(f.completes) != 1 || f.completes[0] != ResultAbandon || r.Reason != ReasonNoAnswer {
		t.Fatalf("completes %v, reason %s; want one ABANDON (no answer)", f.completes, r.Reason)
	}
	if want := "the runner answered before, but its running jobs stayed unknown for 30s past the timeout"; !strings.Contains(r.Note, want) {
		t.Errorf("note %q does not say %q", r.Note, want)
	}
	if f.heartbeats < 8 {
		t.Errorf("%d heartbeats in the %s waited, want one every 10 s", f.heartbeats, at.Sub(start))
	}
}
