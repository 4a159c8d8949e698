// Package fleet holds RunnerFleet's domain types: a fleet's settings, the view of one instance,
// and the policy knobs. It has no behaviour that needs I/O.
package fleet

import "time"

// Settings describe one managed fleet: a GitLab Runner Auto Scaling group and what surrounds it.
// They come from the worker's config file (infra/config), one entry per fleet.
type Settings struct {
	// Name identifies the fleet in commands, metrics (dimension Fleet) and logs.
	Name string `mapstructure:"name" yaml:"name" json:"name"`
	// GroupName is the Auto Scaling group's name.
	GroupName string `mapstructure:"group" yaml:"group" json:"group"`
	// StackName is the runner fleet's CloudFormation stack.
	StackName string `mapstructure:"stack" yaml:"stack" json:"stack"`
	// AllowCustomTemplate lets an update command carry its own template (publisher update
	// --template) instead of the runner template the worker embeds. Off by default: the worker
	// applies templates with its CloudFormation service role, so with it on, whoever may send to
	// the control queue may deploy any template that role allows, not only new parameters.
	AllowCustomTemplate bool `mapstructure:"allow_custom_template" yaml:"allow_custom_template" json:"allow_custom_template"`
	// TickRule is the ARN (or name) of the EventBridge rule whose Scheduled Events tick this fleet.
	TickRule string `mapstructure:"tick_rule" yaml:"tick_rule" json:"tick_rule"`
	// TokenParameter is the SSM SecureString parameter holding the runner token. RunnerFleet only
	// watches its name; it never reads the value.
	TokenParameter string `mapstructure:"token_parameter" yaml:"token_parameter" json:"token_parameter"`
	// MetricsURL is a text/template for a runner's metrics URL, with fields InstanceID and
	// PrivateIP; default "http://{{.PrivateIP}}:9252/metrics".
	MetricsURL string `mapstructure:"metrics_url" yaml:"metrics_url" json:"metrics_url"`
	// Hooks names the group's lifecycle hooks RunnerFleet acts on; default the runner template's
	// (DefaultTerminateHook, DefaultLaunchHook). An action of any other hook of the group (another
	// tool's) is left to that tool: never claimed, heartbeated or completed.
	Hooks Hooks `mapstructure:"hooks" yaml:"hooks" json:"hooks"`
	// Documents names the drain SSM documents.
	Documents Documents `mapstructure:"documents" yaml:"documents" json:"documents"`
	// Drain tunes drains of this fleet's instances.
	Drain DrainSettings `mapstructure:"drain" yaml:"drain" json:"drain"`
	// Policy is the scaling policy.
	Policy Policy `mapstructure:"policy" yaml:"policy" json:"policy"`
	// Rebalance is what an EC2 rebalance recommendation does: "act" (stop intake, replace the
	// instance at the next tick; the default) or "report" (mark and report only).
	Rebalance string `mapstructure:"rebalance" yaml:"rebalance" json:"rebalance"`
	// LaunchGate tunes the launch hook's health gate (used only when the group has the launch hook
	// Hooks.Launch names).
	LaunchGate LaunchGateSettings `mapstructure:"launch_gate" yaml:"launch_gate" json:"launch_gate"`
	// Cycle holds the defaults of rolling cycles and what a token change does.
	Cycle CycleSettings `mapstructure:"cycle" yaml:"cycle" json:"cycle"`
}

// LaunchGateSettings tune the launch gate: a new instance waits in Pending:Wait until its runner's
// job requests succeed, and is abandoned (with the reason) at the timeout.
type LaunchGateSettings struct {
	// Disabled completes every launch action with CONTINUE at once.
	Disabled bool `mapstructure:"disabled" yaml:"disabled" json:"disabled"`
	// Timeout before ABANDON; zero: derived from the launch hook's heartbeat timeout.
	Timeout time.Duration `mapstructure:"timeout" yaml:"timeout" json:"timeout"`
	// Poll is how often the runner is looked at; zero: the gate's default.
	Poll time.Duration `mapstructure:"poll" yaml:"poll" json:"poll"`
	// HeartbeatInterval, when set, heartbeats the launch hook while waiting (for a Timeout longer
	// than the hook's heartbeat timeout).
	HeartbeatInterval time.Duration `mapstructure:"heartbeat_interval" yaml:"heartbeat_interval" json:"heartbeat_interval"`
}

// CycleSettings are a fleet's cycle defaults (a cycle command's own values win).
type CycleSettings struct {
	// MaxUnavailable and Surge: zero for both means the defaults (1 and 1).
	MaxUnavailable int `mapstructure:"max_unavailable" yaml:"max_unavailable" json:"max_unavailable"`
	Surge          int `mapstructure:"surge" yaml:"surge" json:"surge"`
	// HealthTimeout is how long a replacement may take to become healthy; zero: the default (10m).
	HealthTimeout time.Duration `mapstructure:"health_timeout" yaml:"health_timeout" json:"health_timeout"`
	// OnTokenChange is what a change of the token parameter does: "cycle" (default) or "report".
	OnTokenChange string `mapstructure:"on_token_change" yaml:"on_token_change" json:"on_token_change"`
}

// DefaultMetricsURL is the metrics URL template of a real fleet: gitlab-runner's listen_address.
const DefaultMetricsURL = "http://{{.PrivateIP}}:9252/metrics"

// Default hook names: those the runner fleet stack (deploy/runner/runner.yaml) gives its group's
// hooks (a test keeps them equal to the template's).
const (
	DefaultTerminateHook = "runnerfleet-drain"
	DefaultLaunchHook    = "runnerfleet-launch"
)

// Hooks are the names of the group's lifecycle hooks that belong to RunnerFleet. A group may have
// other hooks on the same transitions (a log shipper's terminate hook, a config-management launch
// hook): their actions are that tool's, and RunnerFleet leaves them alone.
type Hooks struct {
	// Terminate is the terminate hook the drain heartbeats and completes; default
	// DefaultTerminateHook. Start-up refuses a group that has no terminate hook of this name.
	Terminate string `mapstructure:"terminate" yaml:"terminate" json:"terminate"`
	// Launch is the launch hook the launch gate completes; default DefaultLaunchHook. The
	// group need not have it (the gate is then idle).
	Launch string `mapstructure:"launch" yaml:"launch" json:"launch"`
}

// WithDefaults returns h with each name left empty set to its default.
func (h Hooks) WithDefaults() Hooks {
	if h.Terminate == "" {
		h.Terminate = DefaultTerminateHook
	}
	if h.Launch == "" {
		h.Launch = DefaultLaunchHook
	}
	return h
}

// Documents are the names of the three drain SSM documents the fleet stack creates.
type Documents struct {
	StopIntake string `mapstructure:"stop_intake" yaml:"stop_intake" json:"stop_intake"`
	Status     string `mapstructure:"status" yaml:"status" json:"status"`
	Unregister string `mapstructure:"unregister" yaml:"unregister" json:"unregister"`
}

// DrainSettings tune the job-aware drain.
type DrainSettings struct {
	// HeartbeatInterval is how often a drain records a lifecycle heartbeat; it must be at most a
	// third of the hook's heartbeat timeout (checked at start-up against DescribeLifecycleHooks).
	HeartbeatInterval time.Duration `mapstructure:"heartbeat_interval" yaml:"heartbeat_interval" json:"heartbeat_interval"`
	// HookTimeout is the terminate lifecycle hook's heartbeat timeout as the fleet stack sets it;
	// zero means unknown. When set, start-up validation requires HeartbeatInterval ≤ HookTimeout/3.
	HookTimeout time.Duration `mapstructure:"hook_timeout" yaml:"hook_timeout" json:"hook_timeout"`
	// PollInterval is how often a drain looks at the instance's jobs.
	PollInterval time.Duration `mapstructure:"poll_interval" yaml:"poll_interval" json:"poll_interval"`
	// MaxDrain bounds a drain; zero means the hook's global timeout (min(48h, 100 × heartbeat timeout)).
	MaxDrain time.Duration `mapstructure:"max_drain" yaml:"max_drain" json:"max_drain"`
	// CommandRetries bounds retries of a failed SSM command before the drain falls back to
	// watching metrics only.
	CommandRetries int `mapstructure:"command_retries" yaml:"command_retries" json:"command_retries"`
}
