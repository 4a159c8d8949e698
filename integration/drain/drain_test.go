package drain_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/handlers/drain"
	"github.com/runnerfleet/runnerfleet/infra/aws/cwmetrics"
	"github.com/runnerfleet/runnerfleet/integration/drain/worker"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
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
	if got := e.finished(drain.OutcomeCompleted, wk); got != 1 {
		t.Errorf("drains finished completed = %v, want 1", got)
	}
	// The sweep publishes the fleet's drain figures to CloudWatch (dimension Fleet).
	cw := cwmetrics.NewClient(e.w.Emulator.AWSConfig(t))
	e.eventually("drain metrics in CloudWatch", func() bool {
		out, err := cw.ListMetrics(context.Background(), &cloudwatch.ListMetricsInput{
			Namespace: aws.String(cwmetrics.DefaultNamespace), MetricName: aws.String(cwmetrics.MetricDrainsFinished),
		})
		if err != nil {
			t.Fatalf("ListMetrics: %v", err)
		}
		for _, m := range out.Metrics {
			for _, d := range m.Dimensions {
				if aws.ToString(d.Name) == cwmetrics.DimensionFleet && aws.ToString(d.Value) == "blue" {
					return true
				}
			}
		}
		return false
	})
}

// finished waits until the workers have counted a drain finished with outcome (the count comes
// after the drain's last write, which comes after the completion that lets the emulator
// terminate the instance), then returns their total: 1 when the drain finished exactly once.
func (e *env) finished(outcome string, workers ...*worker.Worker) float64 {
	e.t.Helper()
	sum := func() float64 {
		n := 0.0
		for _, w := range workers {
			n += value(w.Metrics.Finished.WithLabelValues("blue", outcome))
		}
		return n
	}
	e.eventually("the drain counted "+outcome, func() bool { return sum() >= 1 })
	return sum()
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

// The same event delivered three times, two workers running: one stop command, one completion.
func TestDuplicateEventsTwoWorkers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envSpec{instances: 1, hookTimeout: 5})
	tap := e.newQueue(emulator.UniqueName(t, "runnerfleet-tap"))
	e.rule(tap)
	w1, w2 := e.startWorker("w1"), e.startWorker("w2")
	id := e.instanceIDs()[0]
	e.jobs(6 * time.Second)
	e.terminate(id)

	// The tap queue got the same event the rule delivered to the lifecycle queue: deliver it twice more.
	ctx := context.Background()
	var body string
	e.eventually("the event on the tap queue", func() bool {
		out, err := e.sqs.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: aws.String(tap), WaitTimeSeconds: 1})
		if err != nil || len(out.Messages) == 0 {
			return false
		}
		body = aws.ToString(out.Messages[0].Body)
		return true
	})
	for range 2 {
		if _, err := e.sqs.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: aws.String(e.queue), MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	e.waitTerminated(id)
	l := logView(e.log())
	assertDrained(t, e, l, id, true)
	if n := len(l.commands(id, "unregister")); n != 1 {
		t.Errorf("%d unregister commands, want 1", n)
	}
	if t.Failed() {
		e.dump(l, id)
	}
	if finished := e.finished(drain.OutcomeCompleted, w1, w2); finished != 1 {
		t.Errorf("workers finished %v drains, want 1", finished)
	}
}

// An instance SSM does not manage (its agent is gone) is completed at once, without commands.
func TestInstanceUnknownToSSMCompletedAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envSpec{instances: 1, hookTimeout: 30})
	wk := e.startWorker("w1")
	id := e.instanceIDs()[0]
	if _, err := e.w.Sim.Terminate(id); err != nil { // the simulator (and so SSM) forgets it
		t.Fatal(err)
	}
	e.terminate(id)
	e.waitTerminated(id)
	l := logView(e.log())
	if n := len(l.of("ssm.command", id)); n != 0 {
		t.Errorf("%d SSM command events for an instance SSM does not manage", n)
	}
	if c := l.of("hook.complete", id); len(c) != 1 || c[0].String("result") != "CONTINUE" {
		t.Errorf("hook.complete = %v, want one CONTINUE", c)
	}
	if n := len(l.of("hook.timeout", id)); n != 0 {
		t.Errorf("the action timed out instead of being completed at once")
	}
	if got := e.finished(drain.OutcomeNotManaged, wk); got != 1 {
		t.Errorf("drains finished not-managed = %v, want 1", got)
	}
}

// A stop-intake command that fails: retried (2 retries), then the drain watches the metrics
// until the job ends and completes with the stop-failed outcome; no job is killed.
func TestStopIntakeFailingIsRetriedThenWatched(t *testing.T) {
	t.Parallel()
	// AWS-RunShellScript exists but the local world runs only our documents: every invocation fails.
	e := newEnv(t, envSpec{instances: 1, hookTimeout: 5, documents: fleet.Documents{StopIntake: "AWS-RunShellScript"}})
	wk := e.startWorker("w1")
	id := e.instanceIDs()[0]
	e.jobs(10 * time.Second)
	e.terminate(id)
	e.waitTerminated(id)
	l := logView(e.log())
	stops := 0
	for _, ev := range l.of("ssm.command", id) {
		if ev.String("document") == "AWS-RunShellScript" && ev.String("status") == "Failed" {
			stops++
		}
	}
	if stops != 3 {
		t.Errorf("%d failed stop-intake commands, want 3 (1 + 2 retries)", stops)
	}
	completes := l.of("hook.complete", id)
	if len(completes) != 1 {
		t.Fatalf("hook.complete = %v, want one", completes)
	}
	ends := l.of("job.end", id)
	if len(ends) != 1 || ends[0].Seq > completes[0].Seq {
		t.Errorf("job.end %v not before the completion (seq %d)", ends, completes[0].Seq)
	}
	if n := l.killed(id); n != 0 {
		t.Errorf("%d jobs killed", n)
	}
	if n := len(l.of("hook.timeout", id)); n != 0 {
		t.Errorf("the hook timed out: heartbeats stopped while stop intake failed")
	}
	if got := e.finished(drain.OutcomeStopFailed, wk); got != 1 {
		t.Errorf("drains finished stop-failed = %v, want 1", got)
	}
	if got := value(wk.Metrics.Errors.WithLabelValues("blue", "stop-intake-command")); got != 3 {
		t.Errorf("stop-intake command errors = %v, want 3", got)
	}
}
