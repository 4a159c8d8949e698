package drain

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
)

// Defaults of Config and of a fleet's DrainSettings. Each says why it is that value.
const (
	// DefaultStepTimeout bounds the AWS calls of one step: a few SSM / Auto Scaling / metrics
	// calls, each answering in well under a second when AWS is healthy, with room for the
	// SDK's retries.
	DefaultStepTimeout = 20 * time.Second
	// DefaultCompleteTimeout bounds CompleteLifecycleAction, on its own context.
	DefaultCompleteTimeout = 10 * time.Second
	// DefaultCommandPoll is how soon a sent SSM command is looked at: the drain documents
	// return within a second or two.
	DefaultCommandPoll = 2 * time.Second
	// DefaultCommandTimeout is how long a drain waits for one SSM command before counting it
	// failed; the documents never block, so minutes mean the agent is not answering.
	DefaultCommandTimeout = 2 * time.Minute
	// DefaultRetryBase and DefaultRetryMax shape the backoff between retries of a failed
	// command: 5 s, 10 s, 20 s, … at most 2 min.
	DefaultRetryBase = 5 * time.Second
	DefaultRetryMax  = 2 * time.Minute
	// DefaultSweepGrace is how overdue a drain's next step must be before Sweep advances it:
	// more than a follow-up's usual lateness (SQS delivery, a busy worker).
	DefaultSweepGrace = 30 * time.Second
	// DefaultSweepInterval is the worker's sweep period when Config does not say (the worker's
	// own default, infra/config).
	DefaultSweepInterval = 30 * time.Second
	// DefaultSweepConcurrency bounds the drains one Sweep advances side by side.
	DefaultSweepConcurrency = 8
	// DefaultStepConcurrency bounds the follow-up steps (and swept drains) one replica runs at
	// once. A wave of drains then never queues a new lifecycle event's first step (claim, stop
	// intake: the hook's clock is running) behind hundreds of scheduled polls, and the steady call
	// rate of a wave stays under SSM's and DynamoDB's throttling. A step takes tens of
	// milliseconds of calls, so 4 lanes keep up with thousands of drains polling every few seconds.
	DefaultStepConcurrency = 4
	// DefaultRetention keeps finished drain records a week (TTL), long enough to read what
	// happened to any instance of the last few days.
	DefaultRetention = 7 * 24 * time.Hour
	// DefaultPollInterval is how often a drain looks at the instance's jobs.
	DefaultPollInterval = 15 * time.Second
	// DefaultCommandRetries is how often a failed SSM command is retried.
	DefaultCommandRetries = 3
	// maxPhasesPerStep bounds the phases one message runs back to back when the next is due
	// at once (e.g. stop-intake-wait → watch → unregister).
	maxPhasesPerStep = 4
	// heartbeatSlack is how much earlier than its interval a heartbeat is due: a follow-up's
	// delay is whole seconds rounded up, so without it each heartbeat could come up to a second
	// late (a lot against a short hook timeout).
	heartbeatSlack = time.Second
	// clockSkew is how early a follow-up may arrive and still count as due (replicas' clocks).
	clockSkew = time.Second
	// minPhaseBudget is the least time a phase's calls get, however short the heartbeat interval
	// (see phaseBudget).
	minPhaseBudget = 2 * time.Second
	// saveTimeout bounds the state write that ends a step (on its own context).
	saveTimeout = 10 * time.Second
	// maxHookTimeout is AWS's cap of a hook's global timeout.
	maxHookTimeout = 48 * time.Hour
)

// Default drain document names (the fleet stack creates them; fleets may name their own).
const (
	DefaultStopIntakeDocument = "runnerfleet-stop-intake"
	DefaultStatusDocument     = "runnerfleet-status"
	DefaultUnregisterDocument = "runnerfleet-unregister"
)

// Config tunes the drain handler. Zero fields take the defaults above.
type Config struct {
	// Fleets are the managed fleets; a lifecycle event of any other group is rejected, and one of
	// another hook than the fleet's terminate hook (Hooks.Terminate, default
	// fleet.DefaultTerminateHook) is left to its own tool.
	Fleets []fleet.Settings
	// StepTimeout bounds the AWS calls of one step.
	StepTimeout time.Duration
	// Lease is how long a step holds a drain against other replicas; at least 2 × StepTimeout
	// (default 3 ×), so a step's calls always end before its lease does.
	Lease time.Duration
	// CompleteTimeout bounds CompleteLifecycleAction (at most StepTimeout).
	CompleteTimeout time.Duration
	// CommandPoll is how soon a sent SSM command is looked at again.
	CommandPoll time.Duration
	// CommandTimeout is how long one SSM command may stay pending before it counts as failed.
	CommandTimeout time.Duration
	// RetryBase and RetryMax shape the exponential backoff of failed commands and calls.
	RetryBase, RetryMax time.Duration
	// SweepGrace is how overdue a drain must be before Sweep advances it.
	SweepGrace time.Duration
	// SweepInterval is how often the worker calls Sweep. The handler does not sweep by itself:
	// CheckHooks uses it to judge how long a drain orphaned by a dead worker can go without a
	// heartbeat. Zero: DefaultSweepInterval.
	SweepInterval time.Duration
	// SweepConcurrency bounds how many drains one Sweep advances at once.
	SweepConcurrency int
	// StepConcurrency bounds the follow-up steps and swept drains run at once; a lifecycle event's
	// first step never waits for them.
	StepConcurrency int
	// Retention is how long finished records stay in the table (their TTL).
	Retention time.Duration
	// Owner names this replica in leases; default a random id.
	Owner string
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.StepTimeout, DefaultStepTimeout)
	def(&c.Lease, 3*c.StepTimeout)
	def(&c.CompleteTimeout, min(DefaultCompleteTimeout, c.StepTimeout))
	def(&c.CommandPoll, DefaultCommandPoll)
	def(&c.CommandTimeout, DefaultCommandTimeout)
	def(&c.RetryBase, DefaultRetryBase)
	def(&c.RetryMax, DefaultRetryMax)
	def(&c.SweepGrace, DefaultSweepGrace)
	def(&c.SweepInterval, DefaultSweepInterval)
	def(&c.Retention, DefaultRetention)
	if c.SweepConcurrency == 0 {
		c.SweepConcurrency = DefaultSweepConcurrency
	}
	if c.StepConcurrency == 0 {
		c.StepConcurrency = DefaultStepConcurrency
	}
	if c.Owner == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		c.Owner = hex.EncodeToString(b[:])
	}
	for i := range c.Fleets {
		f := &c.Fleets[i]
		if f.Drain.PollInterval == 0 {
			f.Drain.PollInterval = DefaultPollInterval
		}
		if f.Drain.CommandRetries == 0 {
			f.Drain.CommandRetries = DefaultCommandRetries
		}
		if f.Documents.StopIntake == "" {
			f.Documents.StopIntake = DefaultStopIntakeDocument
		}
		if f.Documents.Status == "" {
			f.Documents.Status = DefaultStatusDocument
		}
		if f.Documents.Unregister == "" {
			f.Documents.Unregister = DefaultUnregisterDocument
		}
		f.Hooks = f.Hooks.WithDefaults()
	}
}

// Validate reports every problem of the config at once.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Fleets) == 0 {
		errs = append(errs, errors.New("drain: no fleets"))
	}
	names, groups := map[string]bool{}, map[string]bool{}
	for i, f := range c.Fleets {
		switch {
		case f.Name == "":
			errs = append(errs, fmt.Errorf("drain: fleet %d has no name", i))
		case names[f.Name]:
			errs = append(errs, fmt.Errorf("drain: fleet %q appears twice", f.Name))
		}
		names[f.Name] = true
		switch {
		case f.GroupName == "":
			errs = append(errs, fmt.Errorf("drain: fleet %q has no group", f.Name))
		case groups[f.GroupName]:
			errs = append(errs, fmt.Errorf("drain: group %q belongs to two fleets", f.GroupName))
		}
		groups[f.GroupName] = true
		d := f.Drain
		if d.PollInterval < 0 || d.PollInterval > MaxDelay {
			errs = append(errs, fmt.Errorf("drain: fleet %q: poll_interval %s outside (0, %s]", f.Name, d.PollInterval, MaxDelay))
		}
		if d.HeartbeatInterval < 0 {
			errs = append(errs, fmt.Errorf("drain: fleet %q: negative heartbeat_interval", f.Name))
		}
		if d.MaxDrain < 0 || d.MaxDrain > maxHookTimeout {
			errs = append(errs, fmt.Errorf("drain: fleet %q: max_drain %s outside [0, %s]", f.Name, d.MaxDrain, maxHookTimeout))
		}
		if d.CommandRetries < 0 {
			errs = append(errs, fmt.Errorf("drain: fleet %q: negative command_retries", f.Name))
		}
	}
	for name, d := range map[string]time.Duration{
		"step_timeout": c.StepTimeout, "complete_timeout": c.CompleteTimeout, "command_poll": c.CommandPoll,
		"command_timeout": c.CommandTimeout, "retry_base": c.RetryBase, "retry_max": c.RetryMax,
		"sweep_grace": c.SweepGrace, "retention": c.Retention,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("drain: %s must be positive, got %s", name, d))
		}
	}
	if c.Lease < 2*c.StepTimeout {
		errs = append(errs, fmt.Errorf("drain: lease %s must be at least twice the step timeout %s", c.Lease, c.StepTimeout))
	}
	if c.CompleteTimeout > c.StepTimeout {
		errs = append(errs, fmt.Errorf("drain: complete_timeout %s exceeds step_timeout %s", c.CompleteTimeout, c.StepTimeout))
	}
	if c.SweepConcurrency < 1 {
		errs = append(errs, fmt.Errorf("drain: sweep_concurrency must be at least 1"))
	}
	return errors.Join(errs...)
}

// Deps are the handler's collaborators; New refuses a nil one (Clock and Metrics default).
type Deps struct {
	Store     Store
	Commands  Commands
	Lifecycle Lifecycle
	Jobs      Jobs
	FollowUps FollowUps
	// Clock defaults to SystemClock.
	Clock Clock
	// Logger receives the decision records (JSON).
	Logger *slog.Logger
	// Metrics defaults to NewMetrics(nil).
	Metrics *Metrics
	// Sink, when set, receives each fleet's figures at every Sweep (CloudWatch).
	Sink MetricsSink
}

func (d *Deps) validate() error {
	var errs []error
	if d.Store == nil {
		errs = append(errs, errors.New("drain: nil Store"))
	}
	if d.Commands == nil {
		errs = append(errs, errors.New("drain: nil Commands"))
	}
	if d.Lifecycle == nil {
		errs = append(errs, errors.New("drain: nil Lifecycle"))
	}
	if d.Jobs == nil {
		errs = append(errs, errors.New("drain: nil Jobs"))
	}
	if d.FollowUps == nil {
		errs = append(errs, errors.New("drain: nil FollowUps"))
	}
	if d.Logger == nil {
		errs = append(errs, errors.New("drain: nil Logger"))
	}
	return errors.Join(errs...)
}
