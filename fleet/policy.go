package fleet

import (
	"errors"
	"fmt"
	"time"
)

// Policy holds the scaling policy knobs of a fleet: the `policy:` block of a fleet in the
// worker's config file, and the file `publisher simulate --policy FILE` reads. Zero values mean
// "use the default" (see WithDefaults) except where a field says otherwise. The package scaling
// turns a Policy and the fleet's observed instances into a decision.
type Policy struct {
	// MinInstances is the floor of the group's desired capacity (at least 1: scaling to zero needs
	// a queue signal that exists without runners). Default 1.
	MinInstances int `mapstructure:"min" yaml:"min" json:"min"`
	// MaxInstances is the ceiling of the group's desired capacity. Default 10.
	MaxInstances int `mapstructure:"max" yaml:"max" json:"max"`
	// IdleSlots is the number of free job slots to keep ready beyond the jobs running and queued
	// (like GitLab's autoscaler idle_count). Zero is a valid value.
	IdleSlots int `mapstructure:"idle_slots" yaml:"idle_slots" json:"idle_slots"`
	// ScaleFactor asks for ScaleFactor × in-use slots of free slots when that is more than
	// IdleSlots (like GitLab's scale_factor); 0 disables it.
	ScaleFactor float64 `mapstructure:"scale_factor" yaml:"scale_factor" json:"scale_factor"`
	// ScaleFactorLimit caps the free slots that ScaleFactor asks for; 0 means no cap.
	ScaleFactorLimit int `mapstructure:"scale_factor_limit" yaml:"scale_factor_limit" json:"scale_factor_limit"`
	// InstanceSlots is the number of job slots a new instance is assumed to bring while no running
	// instance reports its capacity (the runner's `concurrent`). Default 1.
	InstanceSlots int `mapstructure:"instance_slots" yaml:"instance_slots" json:"instance_slots"`
	// Schedules override MinInstances and IdleSlots during cron periods, e.g. to pre-warm before
	// working hours. When several match, the last one in the list wins.
	Schedules []Schedule `mapstructure:"schedules" yaml:"schedules" json:"schedules"`
	// ScaleInWindow is the stabilization window: the fleet must have had spare capacity for this
	// long, without a scale-out in between, before an instance is removed. Default 2m.
	ScaleInWindow time.Duration `mapstructure:"scale_in_window" yaml:"scale_in_window" json:"scale_in_window"`
	// MaxScaleInStep is the most instances removed by one decision. Default 10.
	MaxScaleInStep int `mapstructure:"max_scale_in_step" yaml:"max_scale_in_step" json:"max_scale_in_step"`
	// MinUptime protects young instances: none launched less than this long ago is removed.
	// Default 3m.
	MinUptime time.Duration `mapstructure:"min_uptime" yaml:"min_uptime" json:"min_uptime"`
	// MaxUnknownShare is the largest share (0..1) of in-service instances whose scrape failed at
	// which scale-in still happens; above it the decision never removes anything. Default 0.2;
	// a negative value means "no unknown instance at all" (0 would mean the default).
	MaxUnknownShare float64 `mapstructure:"max_unknown_share" yaml:"max_unknown_share" json:"max_unknown_share"`
	// ReplaceUnknownAfter replaces an in-service instance whose runner's metrics have not answered
	// for this long, while other runners of the fleet answer (so the fault is the instance's, not
	// the network's): a wedged runner would otherwise count as capacity for ever and, in a small
	// fleet, hold scale-in off through MaxUnknownShare. It is terminated through the group without
	// lowering the desired capacity, so the group launches another, and drained first (the drain
	// reads the runner's jobs through SSM when its metrics do not answer). One at a time, never
	// while the fleet has instances booting. Default 30m; a negative value disables it.
	ReplaceUnknownAfter time.Duration `mapstructure:"replace_unknown_after" yaml:"replace_unknown_after" json:"replace_unknown_after"`
	// QueueMaxAge is how old a runner's queue signal (reported at its last job pickup) may be and
	// still count as the jobs waiting. Default 3m.
	QueueMaxAge time.Duration `mapstructure:"queue_max_age" yaml:"queue_max_age" json:"queue_max_age"`
	// DisableQueueSignals makes the policy ignore queue size/depth and the queuing-exceeded rate,
	// scaling on in-use and idle slots only.
	DisableQueueSignals bool `mapstructure:"disable_queue_signals" yaml:"disable_queue_signals" json:"disable_queue_signals"`
}

// Schedule overrides a policy's floor and idle slots while one of its cron periods matches.
type Schedule struct {
	// Periods are five-field cron expressions (minute hour day-of-month month day-of-week, as in
	// GitLab's autoscaler periods); the schedule is active during every minute one of them matches.
	Periods []string `mapstructure:"periods" yaml:"periods" json:"periods"`
	// Timezone is an IANA time zone name for the periods; default "UTC".
	Timezone string `mapstructure:"timezone" yaml:"timezone" json:"timezone"`
	// Min, when set, replaces the policy's MinInstances while active (at least 1).
	Min *int `mapstructure:"min" yaml:"min" json:"min,omitempty"`
	// IdleSlots, when set, replaces the policy's IdleSlots while active.
	IdleSlots *int `mapstructure:"idle_slots" yaml:"idle_slots" json:"idle_slots,omitempty"`
}

// Policy defaults. The scale-in ones were chosen with `publisher simulate` on every trace of
// configs/traces (and three simulation seeds) against the AWS sample's policy (see
// configs/policy.yaml): removing only idle instances, a short window and a large step cost about
// 0.92 × the sample's instance-hours for 0.23-0.60 × its p95 queue wait (0.60 on the week trace);
// longer windows and more idle slots buy shorter waits with instance-hours.
const (
	DefaultMinInstances    = 1
	DefaultMaxInstances    = 10
	DefaultInstanceSlots   = 1
	DefaultScaleInWindow   = 2 * time.Minute
	DefaultMaxScaleInStep  = 10
	DefaultMinUptime       = 3 * time.Minute
	DefaultMaxUnknownShare = 0.2
	DefaultQueueMaxAge     = 3 * time.Minute
	// DefaultReplaceUnknownAfter is long enough that a runner restarting, an instance rebooting
	// or a scrape path flapping never triggers it.
	DefaultReplaceUnknownAfter = 30 * time.Minute
)

// WithDefaults returns a copy of p with every unset knob given its default. It does not validate.
func (p Policy) WithDefaults() Policy {
	if p.MinInstances == 0 {
		p.MinInstances = DefaultMinInstances
	}
	if p.MaxInstances == 0 {
		p.MaxInstances = max(DefaultMaxInstances, p.MinInstances)
	}
	if p.InstanceSlots == 0 {
		p.InstanceSlots = DefaultInstanceSlots
	}
	if p.ScaleInWindow == 0 {
		p.ScaleInWindow = DefaultScaleInWindow
	}
	if p.MaxScaleInStep == 0 {
		p.MaxScaleInStep = DefaultMaxScaleInStep
	}
	if p.MinUptime == 0 {
		p.MinUptime = DefaultMinUptime
	}
	if p.MaxUnknownShare == 0 {
		p.MaxUnknownShare = DefaultMaxUnknownShare
	}
	if p.QueueMaxAge == 0 {
		p.QueueMaxAge = DefaultQueueMaxAge
	}
	if p.ReplaceUnknownAfter == 0 {
		p.ReplaceUnknownAfter = DefaultReplaceUnknownAfter
	}
	if len(p.Schedules) > 0 {
		s := make([]Schedule, len(p.Schedules))
		copy(s, p.Schedules)
		for i := range s {
			if s[i].Timezone == "" {
				s[i].Timezone = "UTC"
			}
		}
		p.Schedules = s
	}
	return p
}

// Validate reports every problem of p (after WithDefaults) joined with errors.Join, or nil.
// Cron periods are checked by scaling.ValidatePolicy, which owns the cron parser.
func (p Policy) Validate() error {
	var errs []error
	if p.MinInstances < 1 {
		errs = append(errs, fmt.Errorf("policy: min must be at least 1, got %d", p.MinInstances))
	}
	if p.MaxInstances < p.MinInstances {
		errs = append(errs, fmt.Errorf("policy: max (%d) must be at least min (%d)", p.MaxInstances, p.MinInstances))
	}
	if p.IdleSlots < 0 {
		errs = append(errs, fmt.Errorf("policy: idle_slots must not be negative, got %d", p.IdleSlots))
	}
	if p.ScaleFactor < 0 {
		errs = append(errs, fmt.Errorf("policy: scale_factor must not be negative, got %g", p.ScaleFactor))
	}
	if p.ScaleFactorLimit < 0 {
		errs = append(errs, fmt.Errorf("policy: scale_factor_limit must not be negative, got %d", p.ScaleFactorLimit))
	}
	if p.InstanceSlots < 1 {
		errs = append(errs, fmt.Errorf("policy: instance_slots must be at least 1, got %d", p.InstanceSlots))
	}
	if p.ScaleInWindow < 0 {
		errs = append(errs, fmt.Errorf("policy: scale_in_window must not be negative, got %s", p.ScaleInWindow))
	}
	if p.MaxScaleInStep < 1 {
		errs = append(errs, fmt.Errorf("policy: max_scale_in_step must be at least 1, got %d", p.MaxScaleInStep))
	}
	if p.MinUptime < 0 {
		errs = append(errs, fmt.Errorf("policy: min_uptime must not be negative, got %s", p.MinUptime))
	}
	if p.MaxUnknownShare > 1 {
		errs = append(errs, fmt.Errorf("policy: max_unknown_share must be at most 1, got %g", p.MaxUnknownShare))
	}
	if p.QueueMaxAge < 0 {
		errs = append(errs, fmt.Errorf("policy: queue_max_age must not be negative, got %s", p.QueueMaxAge))
	}
	for i, s := range p.Schedules {
		if len(s.Periods) == 0 {
			errs = append(errs, fmt.Errorf("policy: schedules[%d]: periods must not be empty", i))
		}
		if s.Timezone != "" {
			if _, err := time.LoadLocation(s.Timezone); err != nil {
				errs = append(errs, fmt.Errorf("policy: schedules[%d]: timezone %q: %w", i, s.Timezone, err))
			}
		}
		if s.Min != nil && *s.Min < 1 {
			errs = append(errs, fmt.Errorf("policy: schedules[%d]: min must be at least 1, got %d", i, *s.Min))
		}
		if s.Min != nil && *s.Min > p.MaxInstances {
			errs = append(errs, fmt.Errorf("policy: schedules[%d]: min (%d) must be at most max (%d)", i, *s.Min, p.MaxInstances))
		}
		if s.IdleSlots != nil && *s.IdleSlots < 0 {
			errs = append(errs, fmt.Errorf("policy: schedules[%d]: idle_slots must not be negative, got %d", i, *s.IdleSlots))
		}
	}
	return errors.Join(errs...)
}
