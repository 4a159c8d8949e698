package launch

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnerfleet/runnerfleet/fleet"
)

// Defaults, with why.
const (
	// DefaultTimeout is the gate's timeout when neither the fleet nor its hook gives one: a runner
	// AMI boots and registers in one to three minutes; ten is ample, and short enough that a
	// broken launch template costs little.
	DefaultTimeout = 10 * time.Minute
	// hookShare is the share of the hook's heartbeat timeout a derived gate timeout takes.
	hookShare = 0.9
	// DefaultPoll is how often a runner is looked at: often enough that a runner given a job, or
	// refused, shows within seconds. An idle healthy runner's success counter may not move that
	// fast: gitlab-runner asks for jobs every check_interval (3 s), but GitLab.com holds each
	// request_job open for up to 50 s when it has no job (long polling), so one poll may see no
	// request end at all. An ABANDON for no successful job request waits for MinObservation.
	DefaultPoll = 15 * time.Second
	// MinObservation is the least time between the first answered look (the baseline) and an
	// ABANDON for no successful job request: GitLab long-polls request_job for up to 50 s, so an
	// idle healthy runner may show no finished request for most of a minute; 60 s sees one end.
	// The gate looks on, a poll apart, past its deadline if need be (heartbeats go on).
	MinObservation = 60 * time.Second
	// DefaultStepTimeout bounds one step's calls: a scrape, a conditional write or two, maybe a
	// CompleteLifecycleAction.
	DefaultStepTimeout = 20 * time.Second
	// DefaultSweepGrace is how overdue a gate must be before Sweep advances it.
	DefaultSweepGrace = 30 * time.Second
	// DefaultRetention keeps finished gate records a week (TTL).
	DefaultRetention = 7 * 24 * time.Hour
	// clockSkew is how early a follow-up may arrive and still count as due.
	clockSkew = time.Second
)

// Gate tunes one fleet's launch gate. Zero fields are derived from the launch hook itself (read
// with DescribeLifecycleHooks at an instance's first step), so a fleet whose stack has the launch
// hook is gated without any setting: Timeout defaults to nine tenths of the hook's heartbeat
// timeout (the gate abandons, with its reason, before the hook would without one). A Timeout
// that, with the looks the gate may add past it (addedWait: about a minute and a few polls), is
// longer than a third of the hook's timeout, the default one included, keeps the action alive
// with heartbeats every third of the hook's timeout: the gate's decision may come after its
// deadline (added looks, a lost follow-up recovered by the sweep), never after the hook's.
type Gate struct {
	// Disabled completes every launch action of the fleet with CONTINUE at once.
	Disabled bool
	// Timeout is how long a new instance may take to become healthy before ABANDON.
	Timeout time.Duration
	// Poll is how often the runner is looked at (≤ 900 s); default DefaultPoll, at most a third
	// of Timeout.
	Poll time.Duration
	// HeartbeatEvery, when set, records a lifecycle heartbeat that often while waiting.
	HeartbeatEvery time.Duration
}

// Config configures a Handler.
type Config struct {
	// Fleets are the managed fleets; launch actions of other groups are rejected, and those of
	// another hook than the fleet's launch hook (Hooks.Launch, default fleet.DefaultLaunchHook)
	// are left to their own tool.
	Fleets []fleet.Settings
	// Gates maps fleet names to their gate; a fleet without an entry gets the zero Gate (every
	// value derived from its launch hook).
	Gates map[string]Gate
	// StepTimeout bounds one step; default DefaultStepTimeout.
	StepTimeout time.Duration
	// SweepGrace: default DefaultSweepGrace. Retention: default DefaultRetention.
	SweepGrace, Retention time.Duration
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.StepTimeout, DefaultStepTimeout)
	def(&c.SweepGrace, DefaultSweepGrace)
	def(&c.Retention, DefaultRetention)
	fleets := make([]fleet.Settings, len(c.Fleets))
	for i, f := range c.Fleets {
		f.Hooks = f.Hooks.WithDefaults()
		fleets[i] = f
	}
	c.Fleets = fleets
	gates := make(map[string]Gate, len(c.Gates))
	for name, g := range c.Gates {
		gates[name] = g
	}
	c.Gates = gates
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Fleets) == 0 {
		errs = append(errs, errors.New("launch: no fleets"))
	}
	names, groups := map[string]bool{}, map[string]bool{}
	for i, f := range c.Fleets {
		if f.Name == "" || names[f.Name] {
			errs = append(errs, fmt.Errorf("launch: fleet %d: empty or duplicate name %q", i, f.Name))
		}
		if f.GroupName == "" || groups[f.GroupName] {
			errs = append(errs, fmt.Errorf("launch: fleet %q: empty or duplicate group %q", f.Name, f.GroupName))
		}
		names[f.Name], groups[f.GroupName] = true, true
	}
	for name, g := range c.Gates {
		if !names[name] {
			errs = append(errs, fmt.Errorf("launch: gate for unknown fleet %q", name))
		}
		if g.Timeout < 0 {
			errs = append(errs, fmt.Errorf("launch: fleet %q: negative timeout", name))
		}
		if g.Poll < 0 || g.Poll > MaxDelay {
			errs = append(errs, fmt.Errorf("launch: fleet %q: poll %s outside (0, %s]", name, g.Poll, MaxDelay))
		}
		if g.HeartbeatEvery < 0 {
			errs = append(errs, fmt.Errorf("launch: fleet %q: negative heartbeat interval", name))
		}
	}
	for name, d := range map[string]time.Duration{"step_timeout": c.StepTimeout, "sweep_grace": c.SweepGrace, "retention": c.Retention} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("launch: %s must be positive", name))
		}
	}
	return errors.Join(errs...)
}

// Deps are the handler's collaborators; New refuses a nil one (Clock and Metrics default; Jobs
// defaults to Health when Health also implements Jobs).
type Deps struct {
	Store     Store
	Lifecycle Lifecycle
	Health    Health
	Jobs      Jobs
	FollowUps FollowUps
	Logger    *slog.Logger
	Metrics   *Metrics
	Clock     Clock
}

func (d Deps) validate() error {
	var errs []error
	for name, isNil := range map[string]bool{"Store": d.Store == nil, "Lifecycle": d.Lifecycle == nil,
		"Health": d.Health == nil, "Jobs": d.Jobs == nil, "FollowUps": d.FollowUps == nil, "Logger": d.Logger == nil} {
		if isNil {
			errs = append(errs, fmt.Errorf("launch: nil %s", name))
		}
	}
	return errors.Join(errs...)
}

// Metrics are the gate's Prometheus series (labels: fleet, result, reason, outcome).
type Metrics struct {
	// Finished counts gates finished by result (CONTINUE, ABANDON, none) and reason.
	Finished *prometheus.CounterVec
	// Checks counts looks at a runner by what they found.
	Checks *prometheus.CounterVec
	// LookFailures counts looks the worker could not make, by reason (WorkerError): they are not
	// in Checks, and say nothing about the runner. Any rise wants an operator (alert on it in
	// Prometheus; it is not a CloudWatch metric): gates hold their instances in Pending:Wait while
	// the worker cannot look, up to an hour past their deadline.
	LookFailures *prometheus.CounterVec
	// Duration observes how long instances waited in Pending:Wait, by result.
	Duration *prometheus.HistogramVec
	// Recovered counts gates Sweep advanced because their follow-up was overdue.
	Recovered *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Finished: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "runnerfleet", Subsystem: "launch", Name: "finished_total",
			Help: "Launch gates finished, by result and reason."}, []string{"fleet", "result", "reason"}),
		Checks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "runnerfleet", Subsystem: "launch", Name: "checks_total",
			Help: "Looks at a new runner, by what they found."}, []string{"fleet", "outcome"}),
		LookFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "runnerfleet", Subsystem: "launch", Name: "look_failures_total",
			Help: "Looks at a new runner the worker could not make (AWS throttling or access denied, its own deadline, its URL template), by reason: not counted against the runner."},
			[]string{"fleet", "reason"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "runnerfleet", Subsystem: "launch", Name: "wait_seconds",
			Help: "Time from the launch event to the gate's decision.", Buckets: prometheus.ExponentialBuckets(5, 2, 10)}, []string{"fleet", "result"}),
		Recovered: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "runnerfleet", Subsystem: "launch", Name: "recovered_total",
			Help: "Launch gates the sweep advanced because their follow-up was overdue."}, []string{"fleet"}),
	}
	if reg != nil {
		reg.MustRegister(m.Finished, m.Checks, m.LookFailures, m.Duration, m.Recovered)
	}
	return m
}
