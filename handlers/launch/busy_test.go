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
// kill its jobs. The gate continues it instead, with the reason recorded.
func TestBusyRunnerIsNeverAbandoned(t *testing.T) {
	for name, health := range map[string][]*[2]float64{
		"counters stand still":                    {{3, 0}},
		"metrics stop answering at the last look": {{3, 0}, {3, 0}, {3, 0}, {3, 0}, {3, 0}, {3, 0}, nil},
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
	f.jobs = 2 // the runner took jobs before the retry
	f.mu.Unlock()
	f.advance(time.Minute)
	if err := h.Handle(ctx, launchMsg("blue-asg")); err != nil {
		t.Fatal(err)
	}
	if len(f.completes) != 1 || f.completes[0] != ResultContinue {
		t.Fatalf("completes %v, want one CONTINUE (2 jobs running at the retry)", f.completes)
	}
}

func TestIdleOrUncountableRunnerIsStillAbandoned(t *testing.T) {
	for name, tc := range map[string]struct {
		jobs     int
		err      error
		wantNote string
	}{
		"no jobs":      {0, nil, ""},
		"jobs unknown": {0, errors.New("no answer"), "running jobs unknown at the timeout: no answer"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakes()
			f.health = []*[2]float64{{0, 0}}
			f.jobs, f.jobsErr = tc.jobs, tc.err
			h := newHandler(t, f, gate)
			for range 8 {
				if err := h.Handle(context.Background(), launchMsg("blue-asg")); err != nil {
					t.Fatal(err)
				}
				f.advance(10 * time.Second)
			}
			if len(f.completes) != 1 || f.completes[0] != ResultAbandon {
				t.Fatalf("completes %v, want one ABANDON", f.completes)
			}
			if f.jobLooks != 1 {
				t.Errorf("jobs counted %d times, want once, at the timeout", f.jobLooks)
			}
			r := f.record(t)
			if r.Reason != ReasonNoJobRequest || r.JobsAtTimeout != 0 || !strings.Contains(r.Note, tc.wantNote) {
				t.Fatalf("record %+v", r)
			}
		})
	}
}
