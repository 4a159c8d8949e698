package main

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runnerfleet/runnerfleet/integration/emulator"
	"github.com/runnerfleet/runnerfleet/messages"
)

// TestDemo runs the whole demo, as `make demo` does, on free ports, and checks what its summary
// reports: the product at work (scale-out, a busy instance drained, scale-in, no job killed) and
// the plumbing (every kind received, the malformed body in the DLQ, the unknown acked).
func TestDemo(t *testing.T) {
	bin := t.TempDir()
	for name, pkg := range map[string]string{"worker": "..", "publisher": "../../publisher"} {
		build := exec.Command("go", "build", "-o", filepath.Join(bin, name), pkg)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", name, err, out)
		}
	}
	var out bytes.Buffer
	sum, err := Run(context.Background(), Options{Bin: bin, Config: "../../../configs/local.yaml", FreePorts: true}, &out)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	t.Log(out.String())
	for _, k := range expectedKinds {
		if sum.Received[string(k)] < 1 {
			t.Errorf("the worker received no %s message", k)
		}
	}
	if sum.Ticks["command"] != 1 || sum.Ticks["schedule"] < 1 {
		t.Errorf("ticks = %v, want 1 from the command and at least 1 from the schedule", sum.Ticks)
	}
	if sum.DeadLettered["invalid"] != 1 || sum.DeadLetterDepth != 1 {
		t.Errorf("dead-lettered %v, DLQ depth %d: want the one malformed body", sum.DeadLettered, sum.DeadLetterDepth)
	}
	if sum.Received[string(messages.KindUnknown)] != 1 {
		t.Errorf("unknown events received = %v, want 1", sum.Received[string(messages.KindUnknown)])
	}
	// From a peak of 3 an idle instance is left for scale-in after the busy one is retired; from a
	// peak of 2 (a slow machine) the busy instance's retirement alone brings the fleet back to 1.
	wantScaleIn, wantCompleted := sum.DesiredPeak >= 3, 1.0
	if wantScaleIn {
		wantCompleted = 2
	}
	if sum.Decisions["scale_out"] < 1 || (wantScaleIn && sum.Decisions["scale_in"] < 1) || sum.DesiredPeak <= sum.DesiredStart || sum.DesiredEnd != 1 {
		t.Errorf("decisions %v, desired %d → %d → %d: want a scale-out and back to 1 (by scale-in from a peak of 3)", sum.Decisions, sum.DesiredStart, sum.DesiredPeak, sum.DesiredEnd)
	}
	if sum.Drains["completed"] < wantCompleted || sum.HookTimeouts != 0 {
		t.Errorf("drains %v, hook timeouts %d: want the busy and the idle instance completed, no timeout", sum.Drains, sum.HookTimeouts)
	}
	if sum.BusyJobs < 1 || sum.BusyWaited <= 0 {
		t.Errorf("busy instance %q with %d jobs waited %s", sum.Busy, sum.BusyJobs, sum.BusyWaited)
	}
	if sum.Jobs.Killed != 0 || sum.KilledInLog != 0 || sum.Jobs.Finished != jobCount {
		t.Errorf("jobs %+v, %d killed in the log: want all %d finished, none killed", sum.Jobs, sum.KilledInLog, jobCount)
	}
	for _, want := range []string{"RunnerFleet demo summary", "lifecycle.terminate", "drains finished: completed", "ticks handled:", sum.CommandID} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q", want)
		}
	}
}

func TestDemoRefusesTakenPorts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = checkFree(l.Addr().(*net.TCPAddr).Port)
	if err == nil || !strings.Contains(err.Error(), "is taken") || !strings.Contains(err.Error(), "--free-ports") {
		t.Errorf("checkFree on a held port: %v", err)
	}
}

// The summary counts killed jobs from either reporter once, and the demo's error names what
// happened to the instance that lost them.
func TestSummaryKilledJobs(t *testing.T) {
	ev := func(seq int, kind string, fields map[string]any) emulator.LogEvent {
		return emulator.LogEvent{Seq: seq, Kind: kind, Fields: fields}
	}
	var s Summary
	s.fillLog([]emulator.LogEvent{
		ev(1, "instance.state", map[string]any{"instance_id": "i-a", "from": "Pending", "to": "Pending:Wait"}),
		ev(2, "hook.complete", map[string]any{"instance_id": "i-a", "result": "ABANDON", "by": "timeout"}),
		// The simulator logs one job.killed per job; the emulator's per-termination summary
		// (instance.jobs_killed) must not count them a second time.
		ev(3, emulator.KindJobKilled, map[string]any{"instance_id": "i-a", "job_id": "j1"}),
		ev(4, emulator.KindJobKilled, map[string]any{"instance_id": "i-a", "job_id": "j2"}),
		ev(5, emulator.KindInstanceJobsKilled, map[string]any{"instance_id": "i-a", "killed": 2.0, "reported_by": "emulator"}),
		ev(6, emulator.KindInstanceJobsKilled, map[string]any{"instance_id": "i-b", "killed": 0.0, "reported_by": "emulator"}),
	})
	if s.KilledInLog != 2 || s.Abandoned != 1 {
		t.Errorf("killed %d, abandoned %d: want 2 and 1", s.KilledInLog, s.Abandoned)
	}
	err := s.killedError()
	if err == nil || !strings.Contains(err.Error(), "i-a:") || !strings.Contains(err.Error(), "result=ABANDON") || strings.Contains(err.Error(), "i-b") {
		t.Errorf("killedError = %v", err)
	}
	if (&Summary{}).killedError() != nil {
		t.Error("an error with no job killed")
	}
}
