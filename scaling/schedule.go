package scaling

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/runnerfleet/runnerfleet/fleet"
)

// ValidatePolicy reports every problem of p (after WithDefaults): those of fleet.Policy.Validate
// and every schedule period that is not a valid five-field cron expression. Config loaders call it
// once, so Decide can ignore a period it cannot parse.
func ValidatePolicy(p fleet.Policy) error {
	errs := []error{p.Validate()}
	for i, s := range p.Schedules {
		for j, period := range s.Periods {
			if strings.HasPrefix(strings.TrimSpace(period), "@every") {
				// An interval from whenever it starts, not a time of day: it never matches a
				// minute of the clock, so the schedule would never apply.
				errs = append(errs, fmt.Errorf("policy: schedules[%d].periods[%d] %q: @every is an interval, not a time of day; use a 5-field cron expression such as \"* 8-17 * * 1-5\"", i, j, period))
				continue
			}
			if _, err := cron.ParseStandard(period); err != nil {
				errs = append(errs, fmt.Errorf("policy: schedules[%d].periods[%d] %q: %w", i, j, period, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Effective is what a policy asks for at one moment, schedules applied.
type Effective struct {
	// Min is the floor of instances.
	Min int
	// IdleSlots is the number of free slots to keep.
	IdleSlots int
	// Schedule is the index of the schedule in force, or -1 for none.
	Schedule int
}

// EffectiveAt applies p's schedules at now: the last schedule with a period matching the minute
// of now (in the schedule's time zone) overrides MinInstances and IdleSlots with the values it
// sets. Periods that do not parse and unknown time zones are ignored (ValidatePolicy reports them).
func EffectiveAt(now time.Time, p fleet.Policy) Effective {
	e := Effective{Min: p.MinInstances, IdleSlots: p.IdleSlots, Schedule: -1}
	for i, s := range p.Schedules {
		if !scheduleActive(now, s) {
			continue
		}
		e.Schedule = i
		e.Min, e.IdleSlots = p.MinInstances, p.IdleSlots
		if s.Min != nil {
			e.Min = *s.Min
		}
		if s.IdleSlots != nil {
			e.IdleSlots = *s.IdleSlots
		}
	}
	return e
}

func scheduleActive(now time.Time, s fleet.Schedule) bool {
	loc := time.UTC
	if s.Timezone != "" {
		l, err := time.LoadLocation(s.Timezone)
		if err != nil {
			return false
		}
		loc = l
	}
	minute := now.In(loc).Truncate(time.Minute)
	for _, period := range s.Periods {
		sched, err := cron.ParseStandard(period)
		if err != nil {
			continue
		}
		// Next returns the first matching minute strictly after its argument.
		if sched.Next(minute.Add(-time.Second)).Equal(minute) {
			return true
		}
	}
	return false
}
