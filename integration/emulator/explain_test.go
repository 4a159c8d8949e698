package emulator_test

import (
	"strings"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

// A hook that timed out after a long silence: the story names the victim, the timeout, and the
// longest gap between heartbeats; an instance that lost nothing is left out.
func TestExplainKillsTellsTheTimeout(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 23, 0, 0, 0, time.UTC)
	ev := func(sec float64, kind string, fields map[string]any) emulator.LogEvent {
		return emulator.LogEvent{Time: t0.Add(time.Duration(sec * float64(time.Second))), Kind: kind, Fields: fields}
	}
	evs := []emulator.LogEvent{
		ev(0, emulator.KindHookStart, map[string]any{"instance_id": "i-a", "hook": "drain", "transition": "autoscaling:EC2_INSTANCE_TERMINATING"}),
		ev(0, emulator.KindHookStart, map[string]any{"instance_id": "i-b", "hook": "drain"}),
		ev(1.5, emulator.KindHookHeartbeat, map[string]any{"instance_id": "i-a"}),
		ev(3, emulator.KindHookHeartbeat, map[string]any{"instance_id": "i-a"}),
		ev(8, emulator.KindHookTimeout, map[string]any{"instance_id": "i-a", "result": "CONTINUE", "timeout": "heartbeat"}),
		ev(8, emulator.KindJobKilled, map[string]any{"instance_id": "i-a", "job_id": "7"}),
		ev(9, emulator.KindHookComplete, map[string]any{"instance_id": "i-b", "result": "CONTINUE"}),
		ev(4, emulator.KindRunnerSimSlow, map[string]any{"call": "DELETE /instances/i-c", "seconds": 4.2}),
	}
	got := emulator.ExplainKills(evs)
	for _, want := range []string{"instance i-a:", "hook.timeout result CONTINUE heartbeat after 8s", "longest silence between heartbeats 5s", "job_id=7",
		"waited 4.2s for the runner simulator (DELETE /instances/i-c)"} {
		if !strings.Contains(got, want) {
			t.Errorf("explanation lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "i-b") {
		t.Errorf("explanation names i-b, which lost nothing:\n%s", got)
	}
	if got := emulator.ExplainKills(evs[:5]); got != "the log records no killed job" {
		t.Errorf("with no kill: %q", got)
	}
}
