package main

import (
	"strings"

	"github.com/runnerfleet/runnerfleet/infra/config"
	"github.com/runnerfleet/runnerfleet/messages"
)

// fleetOf names the fleet a message is about, from what the message carries and the config;
// "" when only a lookup can tell (spot and state-change notices name an instance only).
func fleetOf(cfg *config.Config) func(m *messages.Message) string {
	return func(m *messages.Message) string {
		switch p := m.Payload.(type) {
		case *messages.Command:
			return p.Fleet
		case *messages.DrainStep:
			return p.Fleet
		case *messages.LifecycleAction:
			for _, f := range cfg.Fleets {
				if f.GroupName == p.AutoScalingGroupName {
					return f.Name
				}
			}
		case *messages.Scheduled:
			return fleetOfRule(cfg, p.RuleARN, p.RuleName)
		case *messages.ParameterChange:
			for _, f := range cfg.Fleets {
				if f.TokenParameter != "" && strings.TrimPrefix(f.TokenParameter, "/") == strings.TrimPrefix(p.Name, "/") {
					return f.Name
				}
			}
		case *messages.StackStatus:
			for _, f := range cfg.Fleets {
				if f.StackName != "" && f.StackName == p.StackName {
					return f.Name
				}
			}
		}
		return ""
	}
}

// fleetOfRule maps a tick rule (ARN or name, as configured) to its fleet.
func fleetOfRule(cfg *config.Config, arn, name string) string {
	for _, f := range cfg.Fleets {
		if f.TickRule != "" && (f.TickRule == arn || f.TickRule == name) {
			return f.Name
		}
	}
	return ""
}
