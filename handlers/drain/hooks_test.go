package drain

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/messages"
)

// terminateMessage is the lifecycle event, at now, of a terminate action of hook on instance.
func terminateMessage(instance, token, hook string, now time.Time) *messages.Message {
	a := action(instance, token)
	a.LifecycleHookName = hook
	return &messages.Message{Kind: messages.KindTerminateAction, Payload: a, Time: now}
}

// Another tool's terminate hook on the fleet's group (a log shipper's): its action is left to that
// tool — no claim, no stop-intake, no heartbeat, no completion, not even by a later sweep — and the
// message is acked (nil: neither retried nor dead-lettered) with an info line naming the hook. The
// fleet's own hook's action of the same instance is drained as ever.
func TestForeignTerminateHookIsLeftAlone(t *testing.T) {
	for _, tc := range []struct {
		name        string
		fleetHook   string // the fleet's hooks.terminate ("": the default)
		own, others string
	}{
		{"default name", "", fleet.DefaultTerminateHook, "log-shipper"},
		// A fleet naming its own hook: the template's name is then another tool's.
		{"configured name", "ci-drain", "ci-drain", fleet.DefaultTerminateHook},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, func(c *Config) { c.Fleets[0].Hooks.Terminate = tc.fleetHook })
			r.world.addInstance("i-1", 1)
			ctx := context.Background()

			if err := r.h.Handle(ctx, terminateMessage("i-1", "tok-other", tc.others, r.world.Now())); err != nil {
				t.Fatalf("Handle(another hook's action) = %v, want nil (acked)", err)
			}
			if _, _, found, _ := r.store.Load(ctx, partitionKey("tok-other"), sortKey); found {
				t.Error("another hook's action was claimed (a drain record exists)")
			}
			if r.queue.len() != 0 || len(r.world.sends) != 0 || len(r.world.touched) != 0 {
				t.Errorf("another hook's action: %d follow-ups, %d SSM commands, lifecycle calls on hooks %v; want none",
					r.queue.len(), len(r.world.sends), r.world.touched)
			}
			logs := r.logs.String()
			if !strings.Contains(logs, `"level":"INFO"`) || !strings.Contains(logs, `"hook":"`+tc.others+`"`) ||
				!strings.Contains(logs, "left to its own tool") {
				t.Errorf("no info line naming hook %s: %s", tc.others, logs)
			}
			r.world.advanceTo(t0.Add(time.Hour))
			if n, err := r.h.Sweep(ctx); n != 0 || err != nil || len(r.world.touched) != 0 {
				t.Errorf("a sweep after it advanced %d drains (%v), lifecycle calls on hooks %v; want none", n, err, r.world.touched)
			}

			// The fleet's own hook's action of the same instance (its own token) is drained.
			if err := r.h.Handle(ctx, terminateMessage("i-1", "tok-own", tc.own, r.world.Now())); err != nil {
				t.Fatal(err)
			}
			r.world.setJobs("i-1", 0)
			r.deliver(1000, nil)
			if rec := r.record("tok-own"); rec.Outcome != OutcomeCompleted || rec.Hook != tc.own {
				t.Errorf("the fleet's own hook's drain: outcome %q, hook %q; want completed, %s", rec.Outcome, rec.Hook, tc.own)
			}
			for _, hook := range r.world.touched {
				if hook != tc.own {
					t.Errorf("a lifecycle call on hook %s; want only %s", hook, tc.own)
				}
			}
			if !slices.Contains(r.world.completes, "i-1:CONTINUE") {
				t.Errorf("completions %v: want i-1 completed through the fleet's own hook", r.world.completes)
			}
		})
	}
}

// Start-up: a group whose only terminate hook has another name than the fleet's is refused, the
// problem naming the hooks it does have (a mismatch is then plain), with every other problem of
// the fleet listed at once.
func TestCheckFleetRefusesAGroupWithoutTheFleetsHook(t *testing.T) {
	r := newRig(t, nil)
	r.world.hookNames = []string{"drain"}
	r.world.missingDocs = map[string]bool{DefaultStatusDocument: true}
	missing, err := r.h.CheckFleets(context.Background())
	if len(missing) != 0 || err == nil {
		t.Fatalf("CheckFleets with only a terminate hook named drain = %v, %v; want a problem", missing, err)
	}
	for _, want := range []string{
		"group blue-asg has no terminate lifecycle hook named " + fleet.DefaultTerminateHook + " (hooks.terminate)",
		"its terminate hooks: drain",
		"documents.status: SSM document " + DefaultStatusDocument + " does not exist",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("CheckFleets = %v\nwant it to say %q", err, want)
		}
	}

	// The same group passes for a fleet that names that hook.
	named := newRig(t, func(c *Config) { c.Fleets[0].Hooks.Terminate = "drain" })
	named.world.hookNames = []string{"drain"}
	if _, err := named.h.CheckFleets(context.Background()); err != nil {
		t.Errorf("CheckFleets of a fleet with hooks.terminate drain = %v", err)
	}
}

// Start-up: the heartbeat interval is held against the fleet's own terminate hook only; another
// tool's hook with a shorter heartbeat timeout is no problem of the drain's, and is logged as left
// to its own tool.
func TestCheckFleetJudgesOnlyTheFleetsHook(t *testing.T) {
	r := newRig(t, func(c *Config) {
		c.Fleets[0].Drain.HeartbeatInterval = 20 * time.Second
		c.SweepInterval = 10 * time.Second
	})
	r.world.hookNames = []string{"log-shipper", fleet.DefaultTerminateHook}
	r.world.hookHeartbeats = map[string]time.Duration{fleet.DefaultTerminateHook: time.Minute, "log-shipper": 6 * time.Second}
	if _, err := r.h.CheckFleets(context.Background()); err != nil {
		t.Errorf("CheckFleets with 20 s heartbeats on a 60 s hook, beside another tool's 6 s hook = %v; want no problem", err)
	}
	logs := r.logs.String()
	if !strings.Contains(logs, "left to their own tool") || !strings.Contains(logs, `"other_hooks":["log-shipper"]`) {
		t.Errorf("no warning naming the other terminate hook: %s", logs)
	}
	if strings.Contains(logs, "hook timed out") {
		t.Errorf("the other tool's hook was judged for orphaned drains: %s", logs)
	}

	// The fleet's own hook still is judged.
	short := newRig(t, func(c *Config) { c.Fleets[0].Drain.HeartbeatInterval = 20 * time.Second })
	short.world.hookNames = []string{"log-shipper", fleet.DefaultTerminateHook}
	short.world.hookHeartbeats = map[string]time.Duration{fleet.DefaultTerminateHook: 30 * time.Second, "log-shipper": time.Hour}
	if _, err := short.h.CheckFleets(context.Background()); err == nil ||
		!strings.Contains(err.Error(), "exceeds a third of hook "+fleet.DefaultTerminateHook+"'s heartbeat timeout 30s") {
		t.Errorf("CheckFleets with 20 s heartbeats on the fleet's 30 s hook = %v; want the problem", err)
	}
}

// Launch hooks other than the fleet's are said at start-up (another tool's, or a misnamed gate
// whose instances would wait out its timeout at every launch); the fleet's own is not.
func TestCheckFleetNamesOtherLaunchHooks(t *testing.T) {
	for _, tc := range []struct {
		hooks []string
		warn  bool
	}{{nil, false}, {[]string{fleet.DefaultLaunchHook}, false}, {[]string{"runnerfleet-gate"}, true},
		{[]string{fleet.DefaultLaunchHook, "config-management"}, true}} {
		r := newRig(t, nil)
		r.world.launchHooks = tc.hooks
		if _, err := r.h.CheckFleets(context.Background()); err != nil {
			t.Fatalf("launch hooks %v: %v", tc.hooks, err)
		}
		logs := r.logs.String()
		if got := strings.Contains(logs, "other launch lifecycle hooks"); got != tc.warn {
			t.Errorf("launch hooks %v: warned %v, want %v: %s", tc.hooks, got, tc.warn, logs)
		}
		if tc.warn && strings.Contains(logs, `"other_hooks":["`+fleet.DefaultLaunchHook) {
			t.Errorf("launch hooks %v: the fleet's own hook named as another's: %s", tc.hooks, logs)
		}
	}
}
