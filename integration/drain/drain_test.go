package drain_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/runnerfleet/runnerfleet/handlers/drain"
)

// assertDrained checks the final state of one drained instance from the emulator's log and the
// simulator: one stop-intake command, no completion before the last job ended, the runner
// unregistered, one CONTINUE completion, terminated, no job killed, no hook timeout.
func assertDrained(t *testing.T, e *env, l logView, id string, wantUnregister bool) {
	t.Helper()
	if n := len(l.commands(id, "stop-intake")); n != 1 {
		t.Errorf("%s: %d stop-intake commands, want 1", id, n)
	}
	completes := l.of("hook.complete", id)
	if len(completes) != 1 || completes[0].String("result") != "CONTINUE" {
		t.Fatalf("%s: hook.complete events %v, want one CONTINUE", id, completes)
	}
	for _, end := range l.of("job.end", id) {
		if end.Seq > completes[0].Seq {
			t.Errorf("%s: job %s ended (seq %d) after the completion (seq %d)", id, end.String("job_id"), end.Seq, completes[0].Seq)
		}
	}
	if n := len(l.of("hook.timeout", id)); n != 0 {
		t.Errorf("%s: the hook timed out %d times (heartbeats missing)", id, n)
	}
	if n := l.killed(id); n != 0 {
		t.Errorf("%s: %d jobs killed (from the log)", id, n)
	}
	if wantUnregister {
		if n := len(l.commands(id, "unregister")); n < 1 {
			t.Errorf("%s: no unregister command", id)
		}
		st, _ := e.w.Sim.State().Instance(id)
		if !st.Unregistered {
			t.Errorf("%s: runner not unregistered", id)
		}
	}
}

// Two jobs longer than the hook's 5 s heartbeat timeout: intake stops once, the instance waits
// in Terminating:Wait until both end, then it is unregistered, completed and terminated.
func TestDrainWaitsForLongJobs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envSpec{instances: 1, hookTimeout: 5})
	wk := e.startWorker("w1")
	id := e.instanceIDs()[0]
	e.jobs(12*time.Second, 14*time.Second)
	e.terminate(id)
	e.waitTerminated(id)

	l := logView(e.log())
	if t.Failed() || len(l.of("hook.complete", id)) != 1 {
		e.dump(l, id)
	}
	assertDrained(t, e, l, id, true)
	if len(l.of("job.end", id)) != 2 {
		t.Errorf("%d jobs ended on %s, want 2", len(l.of("job.end", id)), id)
	}
	if len(l.of("hook.heartbeat", id)) < 3 {
		t.Errorf("%d heartbeats over a 12+ s drain with a 5 s hook", len(l.of("hook.heartbeat", id)))
	}
	if n := e.killed(); n != 0 {
		t.Errorf("%d jobs killed", n)
	}
	if got := value(wk.Metrics.Finished.WithLabelValues("blue", drain.OutcomeCompleted)); got != 1 {
		t.Errorf("drains finished completed = %v, want 1", got)
	}
}

// value reads one counter or gauge.
func value(m prometheus.Metric) float64 {
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		return -1
	}
	if pb.Counter != nil {
		return pb.Counter.GetValue()
	}
	return pb.Gauge.GetValue()
}
