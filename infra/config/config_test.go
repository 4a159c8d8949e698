package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/spf13/pflag"

	"github.com/runnerfleet/runnerfleet/deploy/runner"
)

func noEnv(string) string { return "" }

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

const minimal = `
fleets:
  - name: blue
    group: blue-asg
`

func TestExampleAndLocalConfigsAreValid(t *testing.T) {
	for _, f := range []string{"worker.example.yaml", "local.yaml"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "configs", f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(data, Source{Getenv: noEnv}); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// A bare number where a duration is wanted is refused (the stack's HookTimeout output is in
// seconds; decoded as it is, 1800 would be 1800 ns), naming the key; 0 and durations with a unit
// are taken.
func TestDurationsWithoutUnitAreRefused(t *testing.T) {
	base := "stop_timeout: 30s\nfleets:\n  - name: blue\n    group: blue-asg\n    drain:\n      hook_timeout: %s\n"
	_, err := Parse(fmt.Appendf(nil, base, "1800"), Source{Getenv: noEnv})
	if err == nil || !strings.Contains(err.Error(), "hook_timeout") || !strings.Contains(err.Error(), "1800 has no unit") {
		t.Errorf("hook_timeout: 1800: err %v, want it refused as a number without a unit, naming the key", err)
	}
	for _, ok := range []string{"0", "30m", "1800s"} {
		if _, err := Parse(fmt.Appendf(nil, base, ok), Source{Getenv: noEnv}); err != nil {
			t.Errorf("hook_timeout: %s: %v", ok, err)
		}
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse([]byte(minimal), Source{Getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StopTimeout != DefaultStopTimeout || cfg.Listen != DefaultListen || cfg.Handler.Timeout != DefaultHandlerTimeout {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	if cfg.Queues.Control.Name != DefaultControlQueue || cfg.Queues.Lifecycle.DeadLetter != DefaultLifecycleDLQ {
		t.Errorf("queue defaults not applied: %+v", cfg.Queues)
	}
	f, ok := cfg.Fleet("blue")
	if !ok || f.MetricsURL != DefaultMetricsURLPattern || f.Documents.StopIntake != DefaultStopIntakeDoc || f.Policy.MinInstances != 1 {
		t.Errorf("fleet defaults not applied: %+v", f)
	}
	// A fleet with a stack defaults to the documents that stack creates (deploy/runner).
	withStack, err := Parse([]byte(strings.Replace(minimal, "group: ", "stack: linux-docker\n    group: ", 1)), Source{Getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	if d := withStack.Fleets[0].Documents; d.StopIntake != "runnerfleet-linux-docker-stop-intake" || d.Status != "runnerfleet-linux-docker-status" ||
		d.Unregister != "runnerfleet-linux-docker-unregister" {
		t.Errorf("documents of a fleet with stack linux-docker: %+v, want the stack's runnerfleet-linux-docker-…", d)
	}
	// The hooks are the runner template's (deploy/runner/runner.yaml names them).
	if f.Hooks.Terminate != runner.TerminateHookName || f.Hooks.Launch != runner.LaunchHookName {
		t.Errorf("hooks %+v, want the runner template's %s and %s", f.Hooks, runner.TerminateHookName, runner.LaunchHookName)
	}
	if cfg.StateTable != DefaultStateTable || cfg.SweepInterval != DefaultSweepInterval || f.Drain.HeartbeatInterval != 0 {
		t.Errorf("state_table %q, sweep_interval %s, heartbeat_interval %s: want the defaults (0: a third of the hook's)",
			cfg.StateTable, cfg.SweepInterval, f.Drain.HeartbeatInterval)
	}
	if got := cfg.DrainTimeout(); got != DefaultStopTimeout-ShutdownMargin {
		t.Errorf("DrainTimeout = %s", got)
	}
}

// The "Checked by" case of issue 3: three mistakes, all three reported.
func TestThreeMistakesAllReported(t *testing.T) {
	data := `
stop_timeout: 10m
fleets:
  - name: blue
    group: blue-asg
    grup: typo
    drain:
      hook_timeout: 15m
      heartbeat_interval: 10m
`
	_, err := Parse([]byte(data), Source{Getenv: noEnv})
	if err == nil {
		t.Fatal("a config with three mistakes was accepted")
	}
	for _, want := range []string{"grup", "stop_timeout 10m0s", "heartbeat_interval 10m0s exceeds a third of drain.hook_timeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not report %q:\n%v", want, err)
		}
	}
}

// Fleets sharing a stack, a group and a tick rule: each clash is reported, all at once.
func TestSharedFleetResourcesAllReported(t *testing.T) {
	data := `
fleets:
  - {name: a, group: g, stack: s, tick_rule: r}
  - {name: b, group: g, stack: s, tick_rule: r}
  - {name: c, group: gc, stack: s}
`
	_, err := Parse([]byte(data), Source{Getenv: noEnv})
	if err == nil {
		t.Fatal("fleets sharing a stack were accepted")
	}
	for _, want := range []string{
		`fleets[1] (b).group "g" is also the group of fleet "a"`,
		`fleets[1] (b).tick_rule "r" is also the tick rule of fleet "a"`,
		`fleets[1] (b).stack "s" is also the stack of fleet "a"`,
		`fleets[2] (c).stack "s" is also the stack of fleet "a"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not report %q:\n%v", want, err)
		}
	}
}

func TestValidationRules(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"no fleets", `listen: ":1"`, "fleets: want at least one fleet"},
		{"retry budget over max hold", minimal + "handler: {timeout: 2m}\n", "shorter than the retry budget"},
		{"control not fifo", minimal + "queues: {control: {name: plain}}\n", "want a FIFO queue"},
		{"lifecycle fifo", minimal + "queues: {lifecycle: {name: x.fifo, dead_letter: y.fifo}}\n", "want a standard queue"},
		{"dlq type", minimal + "queues: {control: {dead_letter: plain}}\n", "same type"},
		{"duplicate fleet", minimal + "  - name: blue\n    group: other\n", "used by another fleet"},
		{"shared group", minimal + "  - name: green\n    group: blue-asg\n", "also the group of fleet"},
		{"shared stack", "fleets: [{name: a, group: ga, stack: s}, {name: b, group: gb, stack: s}]\n", `fleets[1] (b).stack "s" is also the stack of fleet "a"`},
		{"missing group", "fleets: [{name: x}]\n", "group: want"},
		{"poll over 15m", "fleets: [{name: x, group: g, drain: {poll_interval: 20m}}]\n", "poll_interval 20m0s"},
		{"bad template", "fleets: [{name: x, group: g, metrics_url: '{{.PrivateIP'}]\n", "metrics_url"},
		{"bad level", minimal + "log_level: loud\n", "log_level"},
		{"wrong type", minimal + "stop_timeout: soon\n", "stop_timeout"},
		{"policy", "fleets: [{name: x, group: g, policy: {min: 3, max: 2}}]\n", "max (2) must be at least min (3)"},
		{"schedule period with seconds", "fleets: [{name: x, group: g, policy: {schedules: [{periods: ['0 * 8-18 * * 1-5'], min: 3}]}}]\n", `schedules[0].periods[0] "0 * 8-18 * * 1-5"`},
		{"schedule period @every", "fleets: [{name: x, group: g, policy: {schedules: [{periods: ['@every 1m'], min: 3}]}}]\n", "@every is an interval"},
		{"timeout of unknown kind", minimal + "handler: {timeouts: {lifecycle.termnate: 1m}}\n", "handler.timeouts.lifecycle.termnate: not a message kind"},
		{"bad state table", minimal + "state_table: 'no spaces'\n", `state_table "no spaces"`},
		{"bad state table arn", minimal + "state_table: 'arn:aws:dynamodb:eu-west-1:1:stream/x'\n", "state_table"},
		{"sweep interval", minimal + "sweep_interval: 20m\n", "sweep_interval 20m0s"},
		{"drain step concurrency", minimal + "drain_step_concurrency: 65\n", "drain_step_concurrency 65"},
		{"negative drain step concurrency", minimal + "drain_step_concurrency: -1\n", "drain_step_concurrency -1"},
		{"rebalance mode", minimal + "    rebalance: ignore\n", `rebalance "ignore": want act or report`},
		{"token change", minimal + "    cycle:\n      on_token_change: rotate\n", `cycle.on_token_change "rotate"`},
		{"negative surge", minimal + "    cycle:\n      surge: -1\n", "cycle: max_unavailable, surge"},
		{"launch gate poll", minimal + "    launch_gate:\n      poll: 20m\n", "launch_gate: timeout, poll"},
		{"cycle health timeout under the launch gate's", minimal + "    launch_gate:\n      timeout: 15m\n    cycle:\n      health_timeout: 12m\n",
			"fleets[0] (blue).cycle.health_timeout 12m0s is shorter than launch_gate.timeout 15m0s"},
		{"cycle health timeout under the launch gate's", minimal + "    launch_gate:\n      timeout: 15m\n    cycle:\n      health_timeout: 10m\n",
			"fleets[0] (blue).cycle.health_timeout 10m0s is shorter than launch_gate.timeout 15m0s"},
		{"command max age", minimal + "command_max_age: 30s\n", "command_max_age 30s"},
		{"role arn", minimal + "cloudformation_role_arn: runnerfleet-stack-role\n", `cloudformation_role_arn "runnerfleet-stack-role"`},
		{"negative heartbeat", "fleets: [{name: x, group: g, drain: {heartbeat_interval: -1s}}]\n", "heartbeat_interval -1s"},
		{"per-kind timeout in the budget", minimal + "handler: {timeouts: {drain.step: 2m}}\n", "shorter than the retry budget"},
		{"steps on the lifecycle queue", minimal + "queues: {steps: {name: runnerfleet-lifecycle, dead_letter: d}}\n", "queues.steps.name \"runnerfleet-lifecycle\": want a queue of its own"},
		{"steps fifo", minimal + "queues: {steps: {name: s.fifo, dead_letter: d.fifo}}\n", "queues.steps.name \"s.fifo\": want a standard queue"},
		{"steps without dlq", minimal + "queues: {steps: {name: s}}\n", "queues.steps.dead_letter: want"},
		{"steps settings without name", minimal + "queues: {steps: {max_in_flight: 50}}\n", "queues.steps: settings without a name"},
		{"hook name", minimal + "    hooks: {terminate: 'ci drain'}\n", `fleets[0] (blue).hooks.terminate "ci drain": want a lifecycle hook name`},
		{"one hook for both", minimal + "    hooks: {terminate: ci-hook, launch: ci-hook}\n", `fleets[0] (blue).hooks: terminate and launch both name "ci-hook"`},
		{"hook key typo", minimal + "    hooks: {terminat: ci-drain}\n", "terminat"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), Source{Getenv: noEnv})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// A fleet names its own hooks; a name left out keeps its default.
func TestFleetHooks(t *testing.T) {
	cfg, err := Parse([]byte(minimal+"    hooks:\n      terminate: ci/drain_1\n"), Source{Getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	if h := cfg.Fleets[0].Hooks; h.Terminate != "ci/drain_1" || h.Launch != runner.LaunchHookName {
		t.Errorf("hooks %+v, want terminate ci/drain_1 and the default launch hook", h)
	}
}

// A cycle's health timeout at least the launch gate's, a disabled gate, or a gate timeout derived
// from the launch hook at run time (0) are all fine.
func TestCycleHealthTimeoutFitsTheLaunchGate(t *testing.T) {
	for _, fleetYAML := range []string{
		"    launch_gate:\n      timeout: 15m\n    cycle:\n      health_timeout: 15m\n",
		"    launch_gate:\n      timeout: 15m\n      disabled: true\n",
		"    launch_gate:\n      timeout: 0s\n    cycle:\n      health_timeout: 1m\n",
		"    launch_gate:\n      timeout: 5m\n",
	} {
		if _, err := Parse([]byte(minimal+fleetYAML), Source{Getenv: noEnv}); err != nil {
			t.Errorf("%q: %v", fleetYAML, err)
		}
	}
	// Left out, it covers a set gate timeout and the looks the gate may add past it (a config
	// that loaded before this check still loads).
	cfg, err := Parse([]byte(minimal+"    launch_gate:\n      timeout: 25m\n"), Source{Getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Fleets[0].Cycle.HealthTimeout; got != 30*time.Minute {
		t.Errorf("health_timeout left out with a 25m gate: %s, want 30m", got)
	}
}

// Follow-ups go to the steps queue when it is named (then consumed too), else to the lifecycle
// queue; the worker stack names it through the environment.
func TestStepsQueueIsOptional(t *testing.T) {
	cfg, err := Parse([]byte(minimal), Source{Getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Queues.FollowUps().Name; got != DefaultLifecycleQueue {
		t.Errorf("follow-ups without a steps queue go to %q, want %q", got, DefaultLifecycleQueue)
	}
	if _, ok := cfg.Queues.Consumed()["steps"]; ok || len(cfg.Queues.Consumed()) != 2 {
		t.Errorf("consumed without a steps queue: %v", cfg.Queues.Consumed())
	}
	cfg, err = Parse([]byte(minimal), Source{Getenv: envOf(map[string]string{
		"RUNNERFLEET_QUEUES_STEPS_NAME": "prod-steps", "RUNNERFLEET_QUEUES_STEPS_DEAD_LETTER": "prod-steps-dlq",
	})})
	if err != nil {
		t.Fatal(err)
	}
	steps := cfg.Queues.Consumed()["steps"]
	if cfg.Queues.FollowUps().Name != "prod-steps" || steps.DeadLetter != "prod-steps-dlq" || steps.MaxInFlight != DefaultQueueMaxInFlight {
		t.Errorf("steps queue from the environment: follow-ups to %q, consumed %+v", cfg.Queues.FollowUps().Name, steps)
	}
}

func TestPrecedenceFileEnvFlag(t *testing.T) {
	data := minimal + "listen: 127.0.0.1:1\nlog_level: warn\nstop_timeout: 20s\n"
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse([]string{"--stop-timeout=45s"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse([]byte(data), Source{Flags: fs, Getenv: envOf(map[string]string{
		"RUNNERFLEET_LISTEN":                    "127.0.0.1:2",
		"RUNNERFLEET_STOP_TIMEOUT":              "40s",
		"RUNNERFLEET_QUEUES_CONTROL_NAME":       "http://127.0.0.1:1/000/other.fifo",
		"RUNNERFLEET_HANDLER_RETRY_MAX_RETRIES": "1",
		"RUNNERFLEET_STATE_TABLE":               "arn:aws:dynamodb:eu-west-1:123456789012:table/runnerfleet-prod-state",
	})})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:2" {
		t.Errorf("env did not override listen: %q", cfg.Listen)
	}
	if cfg.LogLevel != "warn" {
		t.Errorf("file value lost: log_level %q", cfg.LogLevel)
	}
	if cfg.StopTimeout != 45*time.Second {
		t.Errorf("flag did not win over env: stop_timeout %s", cfg.StopTimeout)
	}
	if cfg.Queues.Control.Name != "http://127.0.0.1:1/000/other.fifo" || cfg.Handler.Retry.MaxRetries != 1 ||
		cfg.StateTable != "arn:aws:dynamodb:eu-west-1:123456789012:table/runnerfleet-prod-state" {
		t.Errorf("nested env overrides not applied: %+v", cfg)
	}
}

type fakeSSM struct {
	name, value string
}

func (f fakeSSM) GetParameter(_ context.Context, in *ssm.GetParameterInput, _ ...func(*ssm.Options)) (*ssm.GetParameterOutput, error) {
	if aws.ToString(in.Name) != f.name {
		return nil, errors.New("ParameterNotFound")
	}
	return &ssm.GetParameterOutput{Parameter: &ssmtypes.Parameter{Value: aws.String(f.value)}}, nil
}

func TestLoadFromFileAndFromParameter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.yaml")
	if err := os.WriteFile(path, []byte(minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(context.Background(), Source{File: path, Getenv: noEnv}); err != nil {
		t.Errorf("from file: %v", err)
	}
	src := Source{SSM: fakeSSM{name: "/runnerfleet/worker", value: minimal}, Getenv: envOf(map[string]string{EnvParameter: "/runnerfleet/worker"})}
	if !src.NeedsSSM() {
		t.Error("NeedsSSM false with only the parameter env set")
	}
	cfg, err := Load(context.Background(), src)
	if err != nil {
		t.Fatalf("from parameter: %v", err)
	}
	if _, ok := cfg.Fleet("blue"); !ok {
		t.Error("fleet from the parameter missing")
	}
	if _, err := Load(context.Background(), Source{Getenv: noEnv}); err == nil || !strings.Contains(err.Error(), EnvParameter) {
		t.Errorf("no source: %v", err)
	}
}

func TestRetryBudget(t *testing.T) {
	c := Config{Handler: Handler{Timeout: 10 * time.Second, Retry: Retry{MaxRetries: 3, InitialInterval: time.Second, MaxInterval: 3 * time.Second, Multiplier: 2}}}
	// 4 attempts × 10s + waits 1s, 2s, 3s (capped).
	if got, want := c.RetryBudget(), 46*time.Second; got != want {
		t.Errorf("RetryBudget = %s, want %s", got, want)
	}
}

func TestBootstrap(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse([]string{"--endpoint=http://127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	b := Source{Flags: fs, Getenv: envOf(map[string]string{
		"RUNNERFLEET_ENDPOINT": "http://127.0.0.1:2", "RUNNERFLEET_REGION": "eu-west-1", "RUNNERFLEET_LOOPBACK_ONLY": "true",
	})}.Bootstrap()
	if b != (Bootstrap{Region: "eu-west-1", Endpoint: "http://127.0.0.1:1", LoopbackOnly: true}) {
		t.Errorf("Bootstrap = %+v", b)
	}
}
