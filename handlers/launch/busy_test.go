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
