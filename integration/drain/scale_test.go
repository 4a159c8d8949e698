package drain_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/runnerfleet/runnerfleet/integration/runnersim"
)

// 100 instances, each running one job of 2–20 s, terminated at once — one SetDesiredCapacity
// from 100 to 0, so the group puts all 100 in Terminating:Wait and emits their 100 events in
// that one call — are drained side by side: every stop-intake command is sent before the first
// drain completes (read from the emulator's log: no drain waits for another); all complete; none
// is killed.
func TestHundredDrainsSideBySide(t *testing.T) {
	if testing.Short() {
		t.Skip("100 instances: not in -short")
	}
	const n = 100
	e := newEnv(t, envSpec{instances: n, hookTimeout: 120, concurrent: 1, poll: 3 * time.Second})
	// 100 drains at once load the single-process emulator: production-like step timeout, a
	// slower command poll, and a sweep that waits for late follow-ups instead of racing them.
	e.stepTimeout = 20 * time.Second
	e.commandPoll = time.Second
	e.sweepGrace, e.sweepEvery = 20*time.Second, 5*time.Second
	e.maxInFlight = n
	e.startWorker("w1")
	durations := make([]time.Duration, n)
	for i := range durations {
		durations[i] = 2*time.Second + time.Duration(i)*18*time.Second/(n-1)
	}
	e.jobs(durations...)
	ids := e.instanceIDs()
	if len(ids) != n {
		t.Fatalf("%d instances in the group, want %d", len(ids), n)
	}
	for _, in := range e.simInstances() {
		if len(in.Running) != 1 {
			t.Fatalf("instance %s runs %d jobs, want 1 each", in.InstanceID, len(in.Running))
		}
	}
	began := time.Now()
	if _, err := e.asg.SetDesiredCapacity(context.Background(), &autoscaling.SetDesiredCapacityInput{
		AutoScalingGroupName: aws.String(e.group), DesiredCapacity: aws.Int32(0),
	}); err != nil {
		t.Fatalf("SetDesiredCapacity 0: %v", err)
	}
	t.Logf("SetDesiredCapacity %d → 0 took %s", n, time.Since(began))
	e.waitTerminated(ids...)

	l := logView(e.log())
	jobs := e.w.Sim.State().Jobs
	lastStop, firstComplete := 0, 0
	lastStopOf, firstCompleteOf := "", ""
	explained := 0
	for _, id := range ids {
		if hs := l.of("hook.start", id); len(hs) != 1 {
			t.Errorf("%s: %d lifecycle actions, want 1", id, len(hs))
		}
		stops := l.commands(id, "stop-intake")
		if len(stops) != 1 {
			t.Errorf("%s: %d stop-intake commands, want 1", id, len(stops))
			if explained < 3 { // why: the instance's SSM events and the worker's lines about it
				explained++
				for _, ev := range l {
					if ev.String("instance_id") == id && strings.HasPrefix(ev.Kind, "ssm.") {
						t.Logf("  seq %d %s %s %v", ev.Seq, ev.Time.Format("15:04:05.000"), ev.Kind, ev.Fields)
					}
				}
				for _, line := range e.logs.Mentioning(id) {
					t.Logf("  %s", line)
				}
			}
		}
		for _, seq := range stops {
			if seq > lastStop {
				lastStop, lastStopOf = seq, id
			}
		}
		c := l.of("hook.complete", id)
		if len(c) != 1 || c[0].String("result") != "CONTINUE" {
			t.Errorf("%s: hook.complete %v, want one CONTINUE", id, c)
			continue
		}
		if firstComplete == 0 || c[0].Seq < firstComplete {
			firstComplete, firstCompleteOf = c[0].Seq, id
		}
		if k := l.killed(id); k != 0 {
			t.Errorf("%s: %d jobs killed", id, k)
		}
		// The simulator reports job ends to the log asynchronously (late under this load), so
		// its own record says when the job ended: before the action was completed.
		ended := 0
		for _, j := range jobs {
			if j.InstanceID != id {
				continue
			}
			if j.State != runnersim.JobFinished || j.EndedAt.IsZero() || j.EndedAt.After(c[0].Time) {
				t.Errorf("%s: job %s %s at %s, want finished before the completion at %s", id, j.ID, j.State,
					j.EndedAt.Format("15:04:05.000"), c[0].Time.Format("15:04:05.000"))
			}
			ended++
		}
		if ended != 1 {
			t.Errorf("%s ran %d jobs, want 1", id, ended)
		}
	}
	if firstComplete == 0 || lastStop == 0 {
		t.Fatal("no drain completed, or no stop command was sent")
	}
	// The literal check: every stop command went out before the first drain completed.
	if lastStop > firstComplete {
		t.Errorf("the last stop command (%s, seq %d) came after the first completion (%s, seq %d): a drain waited for another",
			lastStopOf, lastStop, firstCompleteOf, firstComplete)
	}
	if k := e.killed(); k != 0 {
		t.Errorf("%d jobs killed in all", k)
	}
	if n := len(l.of("hook.timeout", "")); n != 0 {
		t.Errorf("%d hooks timed out", n)
	}
	span := func(kind string) string {
		evs := l.of(kind, "")
		if len(evs) == 0 {
			return "none"
		}
		return fmt.Sprintf("%d from %s to %s", len(evs), evs[0].Time.Format("15:04:05.000"), evs[len(evs)-1].Time.Format("15:04:05.000"))
	}
	stops := 0
	var lastStopAt time.Time
	for _, ev := range l.of("ssm.command", "") {
		if ev.Seq == lastStop {
			lastStopAt = ev.Time
		}
		if strings.HasSuffix(ev.String("document"), "stop-intake") && ev.String("status") == "Pending" {
			stops++
		}
	}
	t.Logf("hook.start: %s; hook.complete: %s; %d stop commands, the last at %s (seq %d), the first completion at seq %d",
		span("hook.start"), span("hook.complete"), stops, lastStopAt.Format("15:04:05.000"), lastStop, firstComplete)
}
