package drain_test

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// 100 instances, each running one job of 2–20 s, terminated at once: drains run side by side
// (none waits for another; see below for how that is read from the log), all complete, none
// killed.
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
	e.maxInFlight = 100
	e.startWorker("w1")
	durations := make([]time.Duration, n)
	for i := range durations {
		durations[i] = 2*time.Second + time.Duration(i)*18*time.Second/(n-1)
	}
	e.jobs(durations...)
	ids := e.instanceIDs()
	began := time.Now()
	// Terminate all at once: one TerminateInstanceInAutoScalingGroup per instance, side by side.
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.terminate(id)
		}()
	}
	wg.Wait()
	t.Logf("terminating %d instances took %s", n, time.Since(began))
	e.waitTerminated(ids...)

	l := logView(e.log())
	// The emulator terminates one instance at a time (~0.3 s each under this load), so the 100
	// events arrive over tens of seconds and "every stop before the first completion" would
	// measure the emulator. What a worker that drained one instance after another would break:
	// every drain whose event was out before the first completing drain's stop command must have
	// its own stop command sent before that first completion.
	type drainLog struct{ start, stop, complete int }
	drains := map[string]drainLog{}
	first := ""
	for _, id := range ids {
		var d drainLog
		if hs := l.of("hook.start", id); len(hs) == 1 {
			d.start = hs[0].Seq
		}
		stops := l.commands(id, "stop-intake")
		if len(stops) != 1 {
			t.Errorf("%s: %d stop-intake commands, want 1", id, len(stops))
		}
		for _, seq := range stops {
			d.stop = seq
		}
		c := l.of("hook.complete", id)
		if len(c) != 1 || c[0].String("result") != "CONTINUE" {
			t.Errorf("%s: hook.complete %v, want one CONTINUE", id, c)
			continue
		}
		d.complete = c[0].Seq
		if first == "" || d.complete < drains[first].complete {
			first = id
		}
		if k := l.killed(id); k != 0 {
			t.Errorf("%s: %d jobs killed", id, k)
		}
		for _, end := range l.of("job.end", id) {
			if end.Seq > d.complete {
				t.Errorf("%s: job ended after the completion", id)
			}
		}
		drains[id] = d
	}
	if first == "" {
		t.Fatal("no drain completed")
	}
	f := drains[first]
	waited, eligible := 0, 0
	for id, d := range drains {
		if id == first || d.start == 0 || d.start > f.stop {
			continue
		}
		eligible++
		if d.stop == 0 || d.stop > f.complete {
			waited++
			t.Errorf("%s: event out before %s's stop (seq %d < %d) but its stop (seq %d) came after %s completed (seq %d)",
				id, first, d.start, f.stop, d.stop, first, f.complete)
		}
	}
	t.Logf("%d drains had their event out before the first completing drain's stop; %d of them waited for it", eligible, waited)
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
	t.Logf("hook.start: %s; hook.complete: %s", span("hook.start"), span("hook.complete"))
}
