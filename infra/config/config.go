// Package config loads and validates the worker's configuration (viper): a YAML file, or the same
// YAML held in an SSM parameter (how the ECS task gets it), then RUNNERFLEET_<KEY> environment
// variables for the keys outside fleets, then command-line flags. Validation reports every
// problem at once, cross-field timing rules included, so one start-up attempt shows them all.
package config

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"text/template"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/handlers/cycle"
	"github.com/runnerfleet/runnerfleet/infra/observe"
	"github.com/runnerfleet/runnerfleet/infra/sqs"
	"github.com/runnerfleet/runnerfleet/messages"
	"github.com/runnerfleet/runnerfleet/scaling"
)

// Limits and defaults, with why.
const (
	// DefaultStopTimeout is ECS's default stopTimeout: the time between SIGTERM and SIGKILL.
	DefaultStopTimeout = 30 * time.Second
	// MaxStopTimeout is ECS's largest stopTimeout on Fargate.
	MaxStopTimeout = 120 * time.Second
	// ShutdownMargin is kept out of the stop timeout for what follows the last handler: releasing
	// messages, closing publishers, flushing logs.
	ShutdownMargin = 3 * time.Second
	// DefaultHandlerTimeout bounds one attempt of one handler step. Steps are short (a few AWS
	// calls); long work is a state machine of many steps.
	DefaultHandlerTimeout = 60 * time.Second
	// DefaultListen serves /metrics, /healthz and /readyz on every interface (the ECS task's port).
	DefaultListen = ":9090"
	// DefaultPollInterval is how often a drain looks at an instance's jobs.
	DefaultPollInterval = time.Minute
	// DefaultSweepInterval is how often the worker sweeps the state table for drains whose
	// follow-up was lost: far below a hook's heartbeat timeout, so a lost follow-up costs no hook.
	DefaultSweepInterval = 30 * time.Second
	// DefaultCommandRetries: an SSM command that failed three times will not do better.
	DefaultCommandRetries = 3
	// MaxDrainStepConcurrency bounds drain_step_concurrency: past a few dozen lanes, a wave of
	// drains would meet SSM's API throttling rather than go faster.
	MaxDrainStepConcurrency = 64
	// MaxFollowUpDelay is SQS's largest DelaySeconds: a drain follow-up cannot wait longer.
	MaxFollowUpDelay = sqs.MaxDelaySeconds * time.Second
)

// Default queue and document names: every AWS name RunnerFleet creates starts with "runnerfleet-".
const (
	DefaultLifecycleQueue = "runnerfleet-lifecycle"
	DefaultLifecycleDLQ   = "runnerfleet-lifecycle-dlq"
	DefaultControlQueue   = "runnerfleet-control.fifo"
	DefaultControlDLQ     = "runnerfleet-control-dlq.fifo"
	DefaultStopIntakeDoc  = "runnerfleet-stop-intake"
	DefaultStatusDoc      = "runnerfleet-status"
	DefaultUnregisterDoc  = "runnerfleet-unregister"
	DefaultStateTable     = "runnerfleet-state"
	// DefaultCommandMaxAge is how old a command may be when the worker reads it: long enough for
	// a busy FIFO group, short enough that a command from before an outage is not acted on.
	DefaultCommandMaxAge     = 15 * time.Minute
	DefaultRetryMax          = 3
	DefaultRetryInitial      = 500 * time.Millisecond
	DefaultRetryMaxInterval  = 10 * time.Second
	DefaultRetryMultiplier   = 2.0
	DefaultQueueVisibility   = sqs.DefaultVisibilityTimeout
	DefaultQueueMaxHold      = sqs.DefaultMaxHold
	DefaultQueueMaxInFlight  = sqs.DefaultMaxInFlight
	DefaultLogLevel          = "info"
	DefaultMetricsURLPattern = fleet.DefaultMetricsURL
)

// Config is the worker's whole configuration. Keys are the mapstructure tags; see
// configs/worker.example.yaml for every key with its meaning and default.
type Config struct {
	// Region is the AWS region (AWS_REGION is honoured when empty).
	Region string `mapstructure:"region"`
	// Endpoint overrides the AWS endpoint of every service (AWS_ENDPOINT_URL is honoured when empty).
	Endpoint string `mapstructure:"endpoint"`
	// LoopbackOnly makes every outbound connection refuse addresses outside 127.0.0.0/8 (the local
	// world of tests and the demo).
	LoopbackOnly bool `mapstructure:"loopback_only"`
	// Listen is the address of /metrics, /healthz and /readyz.
	Listen string `mapstructure:"listen"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `mapstructure:"log_level"`
	// StopTimeout is the time from SIGTERM to exit: in-flight steps finish or release their
	// messages before it ends. Set it to the ECS task's stopTimeout.
	StopTimeout time.Duration `mapstructure:"stop_timeout"`
	// Handler tunes how each message's handler runs.
	Handler Handler `mapstructure:"handler"`
	// Queues names the queues the worker consumes (lifecycle, control, optionally steps) and their
	// dead-letter queues.
	Queues Queues `mapstructure:"queues"`
	// StateTable is the DynamoDB table (name or ARN) holding drain, scaling, cycle and update
	// state (the worker stack's StateTable; infra/aws/state.CreateTable makes one locally).
	StateTable string `mapstructure:"state_table"`
	// SweepInterval is how often the worker looks for unfinished drains whose next step is
	// overdue (a lost follow-up, a worker killed mid-step) and advances them.
	SweepInterval time.Duration `mapstructure:"sweep_interval"`
	// DrainStepConcurrency bounds the drains' follow-up steps (and swept drains) this replica runs
	// at once; a new lifecycle event's first step never waits for them. 0: the drain handler's
	// default.
	DrainStepConcurrency int `mapstructure:"drain_step_concurrency"`
	// CloudFormationRoleARN is the service role the worker passes to CloudFormation when it applies
	// a fleet's stack (the worker stack's StackRole); empty: none (the caller's own permissions).
	CloudFormationRoleARN string `mapstructure:"cloudformation_role_arn"`
	// CommandMaxAge refuses publisher commands issued longer ago than this (a command that sat in
	// a queue through an outage is not acted on late).
	CommandMaxAge time.Duration `mapstructure:"command_max_age"`
	// Fleets are the runner fleets this worker manages.
	Fleets []fleet.Settings `mapstructure:"fleets"`
}

// Handler tunes each message's handling.
type Handler struct {
	// Timeout bounds one attempt of a handler.
	Timeout time.Duration `mapstructure:"timeout"`
	// Timeouts override Timeout for some message kinds (keys: messages.Kind, e.g. "drain.step").
	Timeouts map[string]time.Duration `mapstructure:"timeouts"`
	// Retry retries transient failures in process before the message is nacked.
	Retry Retry `mapstructure:"retry"`
}

// Retry is an exponential backoff without jitter: attempt n waits
// min(InitialInterval × Multiplier^(n-1), MaxInterval).
type Retry struct {
	// MaxRetries is the number of retries after the first attempt (0: no in-process retry).
	MaxRetries int `mapstructure:"max_retries"`
	// InitialInterval is the wait before the first retry.
	InitialInterval time.Duration `mapstructure:"initial_interval"`
	// MaxInterval caps every wait.
	MaxInterval time.Duration `mapstructure:"max_interval"`
	// Multiplier grows the wait from one retry to the next (at least 1).
	Multiplier float64 `mapstructure:"multiplier"`
}

// Queues are the worker's queues.
type Queues struct {
	// Lifecycle is the standard queue of lifecycle events and spot notices (and of the worker's
	// follow-ups when Steps has no name).
	Lifecycle Queue `mapstructure:"lifecycle"`
	// Control is the FIFO queue of commands and fleet events (message group = fleet).
	Control Queue `mapstructure:"control"`
	// Steps is the standard queue of the worker's own delayed follow-ups: drain steps and launch
	// checks. Optional; without a name they go to the lifecycle queue. On a queue of their own,
	// a wave of drains' follow-ups cannot hold every in-flight slot of the lifecycle queue while
	// a new terminate event waits behind them (SQS has no priorities: the way to put events
	// first is to give them a queue that only they use).
	Steps Queue `mapstructure:"steps"`
}

// FollowUps is the queue the worker's follow-ups are published to: Steps when it has a name,
// else Lifecycle.
func (q Queues) FollowUps() Queue {
	if q.Steps.Name != "" {
		return q.Steps
	}
	return q.Lifecycle
}

// Consumed returns the queues the worker subscribes to, by role: lifecycle, control, and steps
// when it has a name.
func (q Queues) Consumed() map[string]Queue {
	out := map[string]Queue{"lifecycle": q.Lifecycle, "control": q.Control}
	if q.Steps.Name != "" {
		out["steps"] = q.Steps
	}
	return out
}

// Queue is one queue the worker consumes.
type Queue struct {
	// Name is the queue's name or URL.
	Name string `mapstructure:"name"`
	// DeadLetter is the name or URL of the queue's DLQ, where the worker puts messages that can
	// never succeed (with the reason in the "runnerfleet-reason" attribute). The same DLQ is the
	// target of the queue's redrive policy.
	DeadLetter string `mapstructure:"dead_letter"`
	// VisibilityTimeout is asked for on receive and renewed every half of it while a handler works.
	VisibilityTimeout time.Duration `mapstructure:"visibility_timeout"`
	// MaxHold bounds how long one message may be held; past it the transport releases it.
	MaxHold time.Duration `mapstructure:"max_hold"`
	// MaxInFlight is the most messages handled at once from this queue.
	MaxInFlight int `mapstructure:"max_in_flight"`
	// NackBackoff is how long a nacked message stays invisible before SQS redelivers it.
	NackBackoff time.Duration `mapstructure:"nack_backoff"`
}

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.LogLevel == "" {
		c.LogLevel = DefaultLogLevel
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = DefaultStopTimeout
	}
	if c.Handler.Timeout == 0 {
		c.Handler.Timeout = DefaultHandlerTimeout
	}
	if c.StateTable == "" {
		c.StateTable = DefaultStateTable
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	if c.CommandMaxAge == 0 {
		c.CommandMaxAge = DefaultCommandMaxAge
	}
	r := &c.Handler.Retry
	if r.InitialInterval == 0 {
		r.InitialInterval = DefaultRetryInitial
	}
	if r.MaxInterval == 0 {
		r.MaxInterval = DefaultRetryMaxInterval
	}
	if r.Multiplier == 0 {
		r.Multiplier = DefaultRetryMultiplier
	}
	c.Queues.Lifecycle.setDefaults(DefaultLifecycleQueue, DefaultLifecycleDLQ)
	c.Queues.Control.setDefaults(DefaultControlQueue, DefaultControlDLQ)
	if c.Queues.Steps.Name != "" { // optional: no defaults for a queue not asked for
		c.Queues.Steps.setDefaults(c.Queues.Steps.Name, "")
	}
	for i := range c.Fleets {
		setFleetDefaults(&c.Fleets[i])
	}
}

func (q *Queue) setDefaults(name, dlq string) {
	if q.Name == "" {
		q.Name = name
	}
	if q.DeadLetter == "" {
		q.DeadLetter = dlq
	}
	if q.VisibilityTimeout == 0 {
		q.VisibilityTimeout = DefaultQueueVisibility
	}
	if q.MaxHold == 0 {
		q.MaxHold = DefaultQueueMaxHold
	}
	if q.MaxInFlight == 0 {
		q.MaxInFlight = DefaultQueueMaxInFlight
	}
}

// gateLooksPastTimeout bounds the looks a launch gate may add past its timeout (handlers/launch:
// a minute of observation of a runner answering late, a few polls for a busy runner's jobs).
const gateLooksPastTimeout = 5 * time.Minute

func setFleetDefaults(f *fleet.Settings) {
	if g := f.LaunchGate; f.Cycle.HealthTimeout == 0 && !g.Disabled && g.Timeout > 0 {
		// A cycle must not fail a replacement its launch gate still waits for.
		f.Cycle.HealthTimeout = max(cycle.DefaultHealthTimeout, g.Timeout+gateLooksPastTimeout)
	}
	if f.MetricsURL == "" {
		f.MetricsURL = DefaultMetricsURLPattern
	}
	// The runner template's hook names (runnerfleet-drain, runnerfleet-launch).
	f.Hooks = f.Hooks.WithDefaults()
	// A fleet stack (deploy/runner) names its documents runnerfleet-<stack>-…: a fleet with a
	// stack defaults to those, so leaving the keys out never points the drain at documents that
	// do not exist (its stop-intake would fail and the runner keep taking jobs).
	prefix := "runnerfleet-"
	if f.StackName != "" {
		prefix = "runnerfleet-" + f.StackName + "-"
	}
	if f.Documents.StopIntake == "" {
		f.Documents.StopIntake = prefix + strings.TrimPrefix(DefaultStopIntakeDoc, "runnerfleet-")
	}
	if f.Documents.Status == "" {
		f.Documents.Status = prefix + strings.TrimPrefix(DefaultStatusDoc, "runnerfleet-")
	}
	if f.Documents.Unregister == "" {
		f.Documents.Unregister = prefix + strings.TrimPrefix(DefaultUnregisterDoc, "runnerfleet-")
	}
	if f.Drain.PollInterval == 0 {
		f.Drain.PollInterval = DefaultPollInterval
	}
	if f.Drain.CommandRetries == 0 {
		f.Drain.CommandRetries = DefaultCommandRetries
	}
	f.Policy = f.Policy.WithDefaults()
}

// RetryBudget is the longest one message's handling may take with every in-process retry:
// (MaxRetries+1) attempts of the longest handler timeout plus the waits between them.
func (c *Config) RetryBudget() time.Duration {
	r := c.Handler.Retry
	longest := c.Handler.Timeout
	for _, t := range c.Handler.Timeouts {
		longest = max(longest, t)
	}
	budget := time.Duration(r.MaxRetries+1) * longest
	wait := float64(r.InitialInterval)
	for i := 0; i < r.MaxRetries; i++ {
		budget += time.Duration(math.Min(wait, float64(r.MaxInterval)))
		wait *= r.Multiplier
	}
	return budget
}

// DrainTimeout is how long in-flight steps get at shutdown before their contexts are cancelled
// and their messages released: the stop timeout less ShutdownMargin (at least one second).
func (c *Config) DrainTimeout() time.Duration {
	return max(c.StopTimeout-ShutdownMargin, time.Second)
}

// Subscriber returns the transport settings of q.
func (c *Config) Subscriber(q Queue) sqs.SubscriberConfig {
	return sqs.SubscriberConfig{
		WaitTime:            sqs.DefaultWaitTime,
		BatchSize:           sqs.MaxBatch,
		ReceiveErrorBackoff: sqs.DefaultReceiveErrorBackoff,
		MaxInFlight:         q.MaxInFlight,
		VisibilityTimeout:   q.VisibilityTimeout,
		MaxHold:             q.MaxHold,
		NackBackoff:         q.NackBackoff,
		CloseTimeout:        c.DrainTimeout(),
	}
}

// Fleet returns the settings of the fleet named name.
func (c *Config) Fleet(name string) (fleet.Settings, bool) {
	for _, f := range c.Fleets {
		if f.Name == name {
			return f, true
		}
	}
	return fleet.Settings{}, false
}

// Validate reports every problem of the (defaulted) configuration at once, joined with
// errors.Join; each problem names its key.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.Listen == "" {
		add("listen: want an address such as :9090")
	}
	if _, err := observe.ParseLevel(c.LogLevel); err != nil {
		add("log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	if c.StopTimeout < time.Second || c.StopTimeout > MaxStopTimeout {
		add("stop_timeout %s: want between 1s and %s (ECS's largest stopTimeout)", c.StopTimeout, MaxStopTimeout)
	}
	if c.Handler.Timeout <= 0 {
		add("handler.timeout %s: want more than 0", c.Handler.Timeout)
	}
	if !validTable(c.StateTable) {
		add("state_table %q: want a DynamoDB table name (3-255 of a-z A-Z 0-9 _ - .) or its ARN", c.StateTable)
	}
	if c.CloudFormationRoleARN != "" && !iamRoleARN.MatchString(c.CloudFormationRoleARN) {
		add("cloudformation_role_arn %q: want an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)", c.CloudFormationRoleARN)
	}
	if c.CommandMaxAge < time.Minute || c.CommandMaxAge > 24*time.Hour {
		add("command_max_age %s: want between 1m and 24h", c.CommandMaxAge)
	}
	if c.DrainStepConcurrency < 0 || c.DrainStepConcurrency > MaxDrainStepConcurrency {
		add("drain_step_concurrency %d: want 0 (the drain handler's default) to %d", c.DrainStepConcurrency, MaxDrainStepConcurrency)
	}
	if c.SweepInterval <= 0 || c.SweepInterval > MaxFollowUpDelay {
		add("sweep_interval %s: want more than 0 and at most %s", c.SweepInterval, MaxFollowUpDelay)
	}
	known := map[string]bool{}
	for _, k := range kinds() {
		known[string(k)] = true
	}
	for k, t := range c.Handler.Timeouts {
		if !known[k] {
			add("handler.timeouts.%s: not a message kind (want one of %s)", k, kindList())
		}
		if t <= 0 {
			add("handler.timeouts.%s %s: want more than 0", k, t)
		}
	}
	r := c.Handler.Retry
	if r.MaxRetries < 0 || r.MaxRetries > 20 {
		add("handler.retry.max_retries %d: want 0..20", r.MaxRetries)
	}
	if r.InitialInterval < 0 || r.MaxInterval < 0 || r.InitialInterval > r.MaxInterval {
		add("handler.retry: want 0 ≤ initial_interval (%s) ≤ max_interval (%s)", r.InitialInterval, r.MaxInterval)
	}
	if r.Multiplier < 1 {
		add("handler.retry.multiplier %g: want at least 1", r.Multiplier)
	}

	budget := c.RetryBudget()
	type queueCheck struct {
		key  string
		q    Queue
		fifo bool
	}
	queues := []queueCheck{{"queues.lifecycle", c.Queues.Lifecycle, false}, {"queues.control", c.Queues.Control, true}}
	if s := c.Queues.Steps; s.Name != "" {
		queues = append(queues, queueCheck{"queues.steps", s, false})
		if s.Name == c.Queues.Lifecycle.Name || s.Name == c.Queues.Control.Name {
			add("queues.steps.name %q: want a queue of its own (leave the name out to put follow-ups on the lifecycle queue)", s.Name)
		}
	} else if s != (Queue{}) {
		add("queues.steps: settings without a name: name the follow-up queue, or leave the block out")
	}
	for _, q := range queues {
		if q.q.Name == "" {
			add("%s.name: want a queue name or URL", q.key)
		} else if sqs.IsFIFO(q.q.Name) != q.fifo {
			if q.fifo {
				add("%s.name %q: want a FIFO queue (name ending in .fifo): commands are serialized per fleet", q.key, q.q.Name)
			} else {
				add("%s.name %q: want a standard queue: drain follow-ups need per-message delays, which FIFO queues lack", q.key, q.q.Name)
			}
		}
		if q.q.DeadLetter == "" {
			add("%s.dead_letter: want the DLQ's name or URL", q.key)
		} else if sqs.IsFIFO(q.q.DeadLetter) != q.fifo {
			add("%s.dead_letter %q: a DLQ must be of the same type (standard or FIFO) as its queue", q.key, q.q.DeadLetter)
		}
		if err := c.Subscriber(q.q).Validate(); err != nil {
			add("%s: %w", q.key, err)
		}
		// Cross-field: the transport releases a message held past max_hold, so every retry of a
		// step must fit inside it, or a second worker handles the message while we still retry.
		if q.q.MaxHold > 0 && budget > q.q.MaxHold {
			add("%s.max_hold %s is shorter than the retry budget %s ((handler.retry.max_retries+1) × the longest handler timeout + backoffs): the message would be released and redelivered while it is still being retried",
				q.key, q.q.MaxHold, budget)
		}
		if q.q.MaxHold > 0 && q.q.VisibilityTimeout > q.q.MaxHold {
			add("%s.visibility_timeout %s exceeds max_hold %s", q.key, q.q.VisibilityTimeout, q.q.MaxHold)
		}
	}

	if len(c.Fleets) == 0 {
		add("fleets: want at least one fleet")
	}
	names, groups, rules, stacks := map[string]bool{}, map[string]string{}, map[string]string{}, map[string]string{}
	for i, f := range c.Fleets {
		key := fmt.Sprintf("fleets[%d]", i)
		if f.Name != "" {
			key = fmt.Sprintf("fleets[%d] (%s)", i, f.Name)
		}
		switch {
		case f.Name == "":
			add("%s.name: want a name", key)
		case names[f.Name]:
			add("%s.name: %q is used by another fleet", key, f.Name)
		case strings.ContainsAny(f.Name, " /\t"):
			add("%s.name %q: no spaces or slashes (it is a message group id and a metric label)", key, f.Name)
		}
		names[f.Name] = true
		if f.GroupName == "" {
			add("%s.group: want the Auto Scaling group's name", key)
		} else if other, ok := groups[f.GroupName]; ok {
			add("%s.group %q is also the group of fleet %q", key, f.GroupName, other)
		} else {
			groups[f.GroupName] = f.Name
		}
		if f.TickRule != "" {
			if other, ok := rules[f.TickRule]; ok {
				add("%s.tick_rule %q is also the tick rule of fleet %q", key, f.TickRule, other)
			}
			rules[f.TickRule] = f.Name
		}
		// Two fleets on one stack would update it under two records, each unaware of the other's
		// change sets, and its status events would reach only the first.
		if f.StackName != "" {
			if other, ok := stacks[f.StackName]; ok {
				add("%s.stack %q is also the stack of fleet %q", key, f.StackName, other)
			} else {
				stacks[f.StackName] = f.Name
			}
		}
		// Auto Scaling's own rule for a hook name. One hook has one transition, so a single name
		// cannot be both.
		for _, h := range []struct{ key, name string }{{"terminate", f.Hooks.Terminate}, {"launch", f.Hooks.Launch}} {
			if !hookName.MatchString(h.name) {
				add("%s.hooks.%s %q: want a lifecycle hook name (1-255 of A-Z a-z 0-9 - _ /)", key, h.key, h.name)
			}
		}
		if f.Hooks.Terminate != "" && f.Hooks.Terminate == f.Hooks.Launch {
			add("%s.hooks: terminate and launch both name %q: a hook has one transition, so they are two hooks with two names", key, f.Hooks.Terminate)
		}
		if _, err := template.New("metrics_url").Option("missingkey=error").Parse(f.MetricsURL); err != nil {
			add("%s.metrics_url: %v", key, err)
		}
		switch f.Rebalance {
		case "", "act", "report":
		default:
			add("%s.rebalance %q: want act or report", key, f.Rebalance)
		}
		if g := f.LaunchGate; g.Timeout < 0 || g.Poll < 0 || g.Poll > MaxFollowUpDelay || g.HeartbeatInterval < 0 {
			add("%s.launch_gate: timeout, poll and heartbeat_interval want 0 or more (poll at most %s)", key, MaxFollowUpDelay)
		}
		cy := f.Cycle
		if cy.MaxUnavailable < 0 || cy.Surge < 0 || cy.HealthTimeout < 0 {
			add("%s.cycle: max_unavailable, surge and health_timeout want 0 or more", key)
		}
		switch cy.OnTokenChange {
		case "", "cycle", "report":
		default:
			add("%s.cycle.on_token_change %q: want cycle or report", key, cy.OnTokenChange)
		}
		// Cross-field: both bound the time from a launch to a runner whose job requests succeed,
		// the gate holding the instance in Pending:Wait meanwhile. A cycle's shorter bound would
		// fail a replacement the gate still waits for, and undo it. One left out is derived to
		// cover a set gate timeout (setFleetDefaults); two set against each other are refused. A
		// gate timeout left out is derived at run time from the launch hook (handlers/launch),
		// which the default health timeout covers for the fleet stack's hook.
		if g := f.LaunchGate; !g.Disabled && g.Timeout > 0 && cy.HealthTimeout > 0 && cy.HealthTimeout < g.Timeout {
			add("%s.cycle.health_timeout %s is shorter than launch_gate.timeout %s: a cycle would fail a replacement the launch gate still waits for (want at least %s, or leave it out)",
				key, cy.HealthTimeout, g.Timeout, g.Timeout+gateLooksPastTimeout)
		}
		d := f.Drain
		if d.PollInterval <= 0 || d.PollInterval > MaxFollowUpDelay {
			add("%s.drain.poll_interval %s: want more than 0 and at most %s (SQS's largest message delay)", key, d.PollInterval, MaxFollowUpDelay)
		}
		if d.HeartbeatInterval < 0 {
			add("%s.drain.heartbeat_interval %s: want at least 0 (0: a third of the hook's heartbeat timeout)", key, d.HeartbeatInterval)
		}
		// Cross-field: a heartbeat every third of the hook's timeout survives two lost heartbeats.
		if d.HookTimeout > 0 && d.HeartbeatInterval > d.HookTimeout/3 {
			add("%s.drain.heartbeat_interval %s exceeds a third of drain.hook_timeout %s (%s): a drain would lose its hook after one missed heartbeat",
				key, d.HeartbeatInterval, d.HookTimeout, d.HookTimeout/3)
		}
		if d.HookTimeout < 0 {
			add("%s.drain.hook_timeout %s: want at least 0 (0: unknown)", key, d.HookTimeout)
		}
		if d.MaxDrain < 0 || d.MaxDrain > 48*time.Hour {
			add("%s.drain.max_drain %s: want 0 (the hook's global timeout) up to 48h", key, d.MaxDrain)
		}
		if d.CommandRetries < 0 {
			add("%s.drain.command_retries %d: want at least 0", key, d.CommandRetries)
		}
		if err := scaling.ValidatePolicy(f.Policy); err != nil { // schedules' cron periods too
			add("%s: %w", key, err)
		}
	}
	return errors.Join(errs...)
}

// validTable accepts a DynamoDB table name or a table ARN.
func validTable(s string) bool {
	if strings.HasPrefix(s, "arn:") {
		_, name, ok := strings.Cut(s, ":table/")
		return ok && validTable(name)
	}
	if len(s) < 3 || len(s) > 255 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// kinds are the message kinds Parse produces (what handler.timeouts may name).
func kinds() []messages.Kind {
	out := []messages.Kind{messages.KindCommand, messages.KindDrainStep, messages.KindFleetStep}
	for _, e := range messages.EventKinds() {
		out = append(out, e.Kind)
	}
	return out
}

func kindList() string {
	var out []string
	for _, k := range kinds() {
		out = append(out, string(k))
	}
	return strings.Join(out, ", ")
}

// hookName matches a lifecycle hook name as Auto Scaling accepts it.
var hookName = regexp.MustCompile(`^[A-Za-z0-9_/-]{1,255}$`)

// iamRoleARN matches an IAM role ARN in any partition, with an optional path.
var iamRoleARN = regexp.MustCompile(`^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$`)
