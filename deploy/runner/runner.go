// Package runner holds the runner fleet's CloudFormation template (runner.yaml), embedded for the
// worker, which applies it when it updates a fleet, and for the publisher, which checks
// properties files against its parameters.
//
// The template carries the launch template, the Auto Scaling group with its lifecycle hooks, the
// three drain SSM documents (the same content as package documents; a test keeps them equal), the
// security group, the instance role and the fleet's EventBridge rules. Every name it creates
// derives from the stack name (runnerfleet-<stack>-...), so several fleets share one account. It
// never takes the runner token as a parameter: TokenParameterName names an SSM SecureString that
// the instances read at boot.
package runner

import (
	_ "embed"
	"strings"
)

// Template is the runner fleet's CloudFormation template (YAML), as deploy/runner/runner.yaml.
//
//go:embed runner.yaml
var Template []byte

// Group, hook and rule names as the template derives them from the stack name.
const (
	// TerminateHookName is the group's terminate lifecycle hook: the drain.
	TerminateHookName = "runnerfleet-drain"
	// LaunchHookName is the group's optional launch lifecycle hook (parameter LaunchHook).
	LaunchHookName = "runnerfleet-launch"
	// MetricsPort is gitlab-runner's listen_address port, open to the worker only.
	MetricsPort = 9252
)

// Names are the AWS names a runner stack creates, all derived from the stack name.
type Names struct {
	// Group is the Auto Scaling group.
	Group string
	// LaunchTemplate is the EC2 launch template.
	LaunchTemplate string
	// TickRule, TokenRule and StackRule are the fleet's EventBridge rules.
	TickRule, TokenRule, StackRule string
	// StopIntake, Status and Unregister are the drain SSM documents.
	StopIntake, Status, Unregister string
}

// NamesFor returns the names the template gives the resources of the stack named stack.
func NamesFor(stack string) Names {
	p := "runnerfleet-" + strings.TrimSpace(stack)
	return Names{
		Group:          p,
		LaunchTemplate: p,
		TickRule:       p + "-tick",
		TokenRule:      p + "-token",
		StackRule:      p + "-stack",
		StopIntake:     p + "-stop-intake",
		Status:         p + "-status",
		Unregister:     p + "-unregister",
	}
}
