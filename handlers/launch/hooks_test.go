package launch

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/messages"
)

// hookHandler is a handler of fleet blue (group blue-asg) whose launch hook is hook ("": the
// default), its gate as given, logging to logs.
func hookHandler(t *testing.T, f *fakes, hook string, g Gate, logs *bytes.Buffer) *Handler {
	t.Helper()
	h, err := New(Config{
		Fleets: []fleet.Settings{{Name: "blue", GroupName: "blue-asg", Hooks: fleet.Hooks{Launch: hook}}},
		Gates:  map[string]Gate{"blue": g},
	}, Deps{Store: f, Lifecycle: f, Health: f, FollowUps: f, Clock: f, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// launchOf is launchMsg for group blue-asg with the action's hook set to hook.
func launchOf(hook string) *messages.Message {
	msg := launchMsg("blue-asg")
	msg.Payload.(*messages.LifecycleAction).LifecycleHookName = hook
	return msg
}

// Another tool's launch hook on the fleet's group (configuration management's): its action is
// left to that tool — no gate record, no look, no heartbeat, no completion, not even when the
// fleet's gate is disabled or the instance goes to the warm pool (both complete at once) — and
// the message is acked (nil) with an info line naming the hook. The fleet's own hook is gated.
func TestForeignLaunchHookIsLeftAlone(t *testing.T) {
	for _, tc := range []struct {
		name             string
		fleetHook        string
		own, other       string
		disabled, warm   bool
		wantOwnCompleted bool // the own hook's action completes at once (no look)
	}{
		{name: "default name", own: fleet.DefaultLaunchHook, other: "config-mgmt"},
		{name: "configured name", fleetHook: "ci-gate", own: "ci-gate", other: fleet.DefaultLaunchHook},
		{name: "gate disabled", own: fleet.DefaultLaunchHook, other: "config-mgmt", disabled: true, wantOwnCompleted: true},
		{name: "warm pool", own: fleet.DefaultLaunchHook, other: "config-mgmt", warm: true, wantOwnCompleted: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakes()
			f.health = []*[2]float64{{1, 0}, {4, 0}}
			var logs bytes.Buffer
			h := hookHandler(t, f, tc.fleetHook, Gate{Disabled: tc.disabled, Timeout: time.Minute, Poll: 10 * time.Second}, &logs)
			msg := launchOf(tc.other)
			if tc.warm {
				msg.Payload.(*messages.LifecycleAction).Destination = "WarmPool"
			}
			if err := h.Handle(context.Background(), msg); err != nil {
				t.Fatalf("Handle(another hook's action) = %v, want nil (acked)", err)
			}
			if _, _, found, _ := f.Load(context.Background(), keyPrefix+"tok", sortKey); found {
				t.Error("another hook's action has a gate record")
			}
			if f.calls != 0 || f.heartbeats != 0 || f.looks != 0 || len(f.followUps) != 0 {
				t.Errorf("another hook's action: %d completions, %d heartbeats, %d looks, %d follow-ups; want none",
					f.calls, f.heartbeats, f.looks, len(f.followUps))
			}
			if l := logs.String(); !strings.Contains(l, `"level":"INFO"`) || !strings.Contains(l, `"hook":"`+tc.other+`"`) ||
				!strings.Contains(l, "left to its own tool") {
				t.Errorf("no info line naming hook %s: %s", tc.other, l)
			}
			f.advance(time.Hour)
			if n, err := h.Sweep(context.Background()); n != 0 || err != nil || f.calls != 0 || f.heartbeats != 0 {
				t.Errorf("a sweep after it advanced %d gates (%v), %d completions, %d heartbeats; want none", n, err, f.calls, f.heartbeats)
			}

			// The fleet's own hook's action is gated (or completed at once when ungated).
			own := launchOf(tc.own)
			own.Event.Time = f.Now()
			if tc.warm {
				own.Payload.(*messages.LifecycleAction).Destination = "WarmPool"
			}
			if err := h.Handle(context.Background(), own); err != nil {
				t.Fatal(err)
			}
			if tc.wantOwnCompleted {
				if len(f.completes) != 1 || f.completes[0] != ResultContinue {
					t.Errorf("the fleet's own hook's action: completed %v, want CONTINUE at once", f.completes)
				}
				return
			}
			if rec := f.record(t); rec.Hook != tc.own || f.looks != 1 || len(f.followUps) != 1 {
				t.Errorf("the fleet's own hook's action: record hook %q, %d looks, %d follow-ups; want gated on %s", rec.Hook, f.looks, len(f.followUps), tc.own)
			}
		})
	}
}

// A gate already recorded when the fleet's launch hook changed name (an older worker's, which
// gated every launch hook) is stepped to its end: only new actions are asked about their hook.
func TestRecordedGateOfAnotherHookIsFinished(t *testing.T) {
	f := newFakes()
	f.health = []*[2]float64{{1, 0}, {4, 0}}
	var logs bytes.Buffer
	older := hookHandler(t, f, "config-mgmt", Gate{Timeout: time.Minute, Poll: 10 * time.Second}, &logs)
	if err := older.Handle(context.Background(), launchOf("config-mgmt")); err != nil {
		t.Fatal(err)
	}
	h := hookHandler(t, f, "", Gate{Timeout: time.Minute, Poll: 10 * time.Second}, &logs)
	f.advance(10 * time.Second)
	if err := h.Handle(context.Background(), launchOf("config-mgmt")); err != nil {
		t.Fatal(err)
	}
	if len(f.completes) != 1 || f.completes[0] != ResultContinue {
		t.Errorf("the recorded gate's follow-up: completed %v, want its CONTINUE", f.completes)
	}
}
