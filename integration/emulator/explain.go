package emulator

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// ExplainKills tells, from the transition log, the story of every instance that lost a job:
// its lifecycle actions (when each began, every heartbeat, how it ended) with the longest
// silence between heartbeats, and its state changes. A test that finds a killed job prints
// it, so a failure on a busy CI machine says whether a heartbeat came late (the hook timed
// out), the action was completed too early, or the instance left without a hook at all.
func ExplainKills(evs []LogEvent) string {
	victims := Victims(evs)
	if len(victims) == 0 {
		return "the log records no killed job"
	}
	var b strings.Builder
	for _, ev := range evs {
		if ev.Kind == KindRunnerSimSlow {
			fmt.Fprintf(&b, "%s the emulator waited %vs for the runner simulator (%s)\n",
				ev.Time.Format("15:04:05.000"), ev.Fields["seconds"], ev.String("call"))
		}
	}
	for _, id := range victims {
		fmt.Fprintf(&b, "instance %s:\n", id)
		var begun, last time.Time
		var worst time.Duration
		for _, ev := range evs {
			if ev.String("instance_id") != id {
				continue
			}
			switch ev.Kind {
			case KindHookStart:
				begun, last, worst = ev.Time, ev.Time, 0
				fmt.Fprintf(&b, "  %s hook %s began (%s)\n", ev.Time.Format("15:04:05.000"), ev.String("hook"), ev.String("transition"))
			case KindHookHeartbeat:
				if gap := ev.Time.Sub(last); gap > worst {
					worst = gap
				}
				last = ev.Time
			case KindHookComplete, KindHookTimeout:
				if gap := ev.Time.Sub(last); ev.Kind == KindHookTimeout && gap > worst {
					worst = gap
				}
				fmt.Fprintf(&b, "  %s %s result %s %s after %s; longest silence between heartbeats %s\n",
					ev.Time.Format("15:04:05.000"), ev.Kind, ev.String("result"), ev.String("timeout"),
					ev.Time.Sub(begun).Round(time.Millisecond), worst.Round(time.Millisecond))
			case KindInstanceState, KindEC2State, KindJobKilled, KindInstanceJobsKilled, "ssm.command", "runner.intake":
				fmt.Fprintf(&b, "  %s %s %s\n", ev.Time.Format("15:04:05.000"), ev.Kind, fieldsOf(ev))
			}
		}
	}
	return b.String()
}

// Victims returns the instances the log says lost a job, in the order of their first loss.
func Victims(evs []LogEvent) []string {
	var victims []string
	for _, ev := range evs {
		id := ev.String("instance_id")
		killed := ev.Kind == KindJobKilled || (ev.Kind == KindInstanceJobsKilled && ev.Int("killed") > 0)
		if killed && id != "" && !slices.Contains(victims, id) {
			victims = append(victims, id)
		}
	}
	return victims
}

func fieldsOf(ev LogEvent) string {
	keys := make([]string, 0, len(ev.Fields))
	for k := range ev.Fields {
		if k != "instance_id" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%v", k, ev.Fields[k]))
	}
	return strings.Join(parts, " ")
}
