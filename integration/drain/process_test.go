package drain_test

import (
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/integration/drain/worker"
)

// A worker killed with SIGKILL mid-drain and another started: the drain resumes from its state
// in DynamoDB (follow-ups on the queue, or the sweep) and completes; no job is killed.
func TestWorkerKilledMidDrainResumes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envSpec{instances: 1, hookTimeout: 30})
	p1 := e.startProcess("p1")
	id := e.instanceIDs()[0]
	e.jobs(20*time.Second, 18*time.Second)
	e.terminate(id)
	e.eventually("the drain watching (stop intake sent, a heartbeat recorded)", func() bool {
		l := logView(e.log())
		return len(l.commands(id, "stop-intake")) == 1 && len(l.of("hook.heartbeat", id)) >= 1
	})
	if err := p1.signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p1.cmd.Wait()
	e.startProcess("p2")
	e.waitTerminated(id)
	l := logView(e.log())
	assertDrained(t, e, l, id, true)
	if n := len(l.of("job.end", id)); n != 2 {
		t.Errorf("%d jobs ended, want 2", n)
	}
	if n := e.killed(); n != 0 {
		t.Errorf("%d jobs killed", n)
	}
	if t.Failed() {
		e.dump(l, id)
	}
}

// One of two workers is paused (SIGSTOP) again and again, each time for longer than a step's
// lease (often inside a step: its SSM calls stall first), while the other advances the drain; resumed (SIGCONT), it must neither repeat nor undo
// a step: one stop-intake, one unregister, one completion, no job killed.
func TestPausedWorkerRepeatsNoStep(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envSpec{instances: 1, hookTimeout: 30})
	e.stepTimeout = time.Second // lease 3 s; pauses of 5 s outlast it
	// p1's SSM calls stall 600 ms first, so a pause often lands inside its step.
	p1 := e.startProcessWith("p1", func(c *worker.Config) { c.DebugSendDelay = 600 * time.Millisecond })
	p2 := e.startProcess("p2")
	id := e.instanceIDs()[0]
	e.jobs(16*time.Second, 12*time.Second)

	done := make(chan struct{})
	var wg sync.WaitGroup
	pauses := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(2500 * time.Millisecond):
			}
			if p1.signal(syscall.SIGSTOP) != nil {
				return
			}
			pauses++
			select {
			case <-done:
			case <-time.After(5 * time.Second):
			}
			if p1.signal(syscall.SIGCONT) != nil {
				return
			}
		}
	}()
	e.terminate(id)
	e.waitTerminated(id)
	close(done)
	wg.Wait()
	_ = p1.signal(syscall.SIGCONT)
	// Let a resumed p1 finish whatever it held before reading the final log.
	time.Sleep(3 * time.Second)

	l := logView(e.log())
	assertDrained(t, e, l, id, true)
	if n := len(l.commands(id, "unregister")); n != 1 {
		t.Errorf("%d unregister commands, want 1", n)
	}
	if n := e.killed(); n != 0 {
		t.Errorf("%d jobs killed", n)
	}
	a1, l1 := p1.decisions()
	a2, l2 := p2.decisions()
	t.Logf("decision records: paused worker %d (%d dropped as stale), other worker %d (%d dropped)", a1, l1, a2, l2)
	if a2 == 0 {
		t.Error("the running worker took no step while the other was paused")
	}
	if pauses < 2 {
		t.Errorf("the worker was paused only %d times", pauses)
	}
	if t.Failed() {
		e.dump(l, id)
	}
}
