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

// SampleKey says what became of one key of the AWS sample "Deploy and Manage GitLab Runners on
// Amazon EC2" (its sample-runner.properties and gitlab-runner.yaml parameters).
type SampleKey struct {
	// Parameter is the runner template parameter the key maps to; empty when the key was dropped.
	Parameter string
	// Note says what changed (for a mapped key) or why the key is gone and what replaced it.
	Note string
}

// SampleKeys maps every key of the AWS sample's properties file and template to this template, so
// a properties file written for the sample can be checked key by key (publisher update) and
// every dropped key answered with what replaced it.
var SampleKeys = map[string]SampleKey{
	"VpcID":                 {Parameter: "VpcID"},
	"SubnetIds":             {Parameter: "SubnetIds"},
	"ImageId":               {Parameter: "ImageId", Note: "an AMI with the AWS CLI and the SSM agent (Amazon Linux 2023)"},
	"InstanceType":          {Parameter: "InstanceType", Note: "ExtraInstanceTypes and OnDemandPercentage add mixed and spot instances"},
	"InstanceName":          {Parameter: "InstanceName"},
	"VolumeSize":            {Parameter: "VolumeSize"},
	"VolumeType":            {Parameter: "VolumeType", Note: "gp3 (default) or io2; gp2 is refused"},
	"MaxSize":               {Parameter: "MaxSize"},
	"MinSize":               {Parameter: "MinSize", Note: "at least 1"},
	"DesiredCapacity":       {Parameter: "DesiredCapacity", Note: "initial size only: leave it empty after the first deploy, the worker owns the desired capacity"},
	"MaxInstanceLifetime":   {Parameter: "MaxInstanceLifetime", Note: "default 0 (no limit); replacements drain through the terminate hook"},
	"GitlabServerURL":       {Parameter: "GitlabServerURL"},
	"DockerImagePath":       {Parameter: "DockerImagePath"},
	"Concurrent":            {Parameter: "Concurrent"},
	"CheckInterval":         {Parameter: "CheckInterval"},
	"CostCenter":            {Parameter: "CostCenter"},
	"AppId":                 {Parameter: "AppId"},
	"MaxBatchSize":          {Note: "CloudFormation rolling updates are gone: publisher cycle --surge N replaces instances drain-aware"},
	"MinInstancesInService": {Note: "CloudFormation rolling updates are gone: publisher cycle --max-unavailable N bounds the instances out of service"},
	"RunnersToken": {Note: "tokens never pass through properties, templates or messages: store the runner authentication token (glrt-) " +
		"in an SSM SecureString parameter and set TokenParameterName to its name"},
	"RunnerRegistrationTokens": {Note: "registration tokens are deprecated; one authentication token (glrt-) per fleet, " +
		"in the SecureString parameter named by TokenParameterName"},
	"RunnerVersion": {Note: "it was a tag label; with authentication tokens, tags are set on the runner in GitLab. " +
		"GitlabRunnerVersion pins the gitlab-runner release"},
	"RunnerEnvironment": {Note: "it chose tags, locked and access level at registration; with authentication tokens " +
		"these are set on the runner in GitLab"},
	"LambdaS3Bucket":              {Note: "there are no Lambda functions: the RunnerFleet worker (deploy/ecs) does their work"},
	"TimeStamp":                   {Note: "there is no Lambda code to upload: the worker applies the template it was built with"},
	"ScaleInCoolDownInSeconds":    {Note: "scaling is the worker's: set policy.scale_in_window for the fleet in the worker's config"},
	"CountOfNewJobsBeforeScaling": {Note: "scaling is the worker's: set policy.idle_slots for the fleet in the worker's config"},
}
