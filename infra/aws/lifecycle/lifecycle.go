// Package lifecycle is the Auto Scaling side of a drain: lifecycle hooks, heartbeats,
// completion and the instance's state in its group. It satisfies handlers/drain.Lifecycle.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	smithy "github.com/aws/smithy-go"

	rfaws "github.com/runnerfleet/runnerfleet/infra/aws"
)

// API is the part of the Auto Scaling client Client calls, with the SDK's signatures.
type API interface {
	CompleteLifecycleAction(ctx context.Context, in *autoscaling.CompleteLifecycleActionInput, optFns ...func(*autoscaling.Options)) (*autoscaling.CompleteLifecycleActionOutput, error)
	RecordLifecycleActionHeartbeat(ctx context.Context, in *autoscaling.RecordLifecycleActionHeartbeatInput, optFns ...func(*autoscaling.Options)) (*autoscaling.RecordLifecycleActionHeartbeatOutput, error)
	DescribeLifecycleHooks(ctx context.Context, in *autoscaling.DescribeLifecycleHooksInput, optFns ...func(*autoscaling.Options)) (*autoscaling.DescribeLifecycleHooksOutput, error)
	DescribeAutoScalingInstances(ctx context.Context, in *autoscaling.DescribeAutoScalingInstancesInput, optFns ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingInstancesOutput, error)
	DescribeAutoScalingGroups(ctx context.Context, in *autoscaling.DescribeAutoScalingGroupsInput, optFns ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingGroupsOutput, error)
}

// Terminating and Launching are the LifecycleTransition of a terminate and a launch hook.
const (
	Terminating = "autoscaling:EC2_INSTANCE_TERMINATING"
	Launching   = "autoscaling:EC2_INSTANCE_LAUNCHING"
)

// completeTimeout bounds CompleteLifecycleAction on its own context: one small call; the SDK
// retries throttling inside it.
const completeTimeout = 10 * time.Second

// Client wraps the Auto Scaling calls of a drain. It is safe for concurrent use.
type Client struct {
	api API
}

// New returns a Client; it refuses a nil client.
func New(api API) (*Client, error) {
	if api == nil {
		return nil, errors.New("lifecycle: nil autoscaling client")
	}
	return &Client{api: api}, nil
}

// HookTimeouts returns the hook's heartbeat timeout and global timeout.
func (c *Client) HookTimeouts(ctx context.Context, group, hook string) (time.Duration, time.Duration, error) {
	out, err := c.api.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{
		AutoScalingGroupName: aws.String(group), LifecycleHookNames: []string{hook},
	})
	if err != nil {
		return 0, 0, fmt.Errorf("describing lifecycle hook %s of %s: %w", hook, group, err)
	}
	for _, h := range out.LifecycleHooks {
		if aws.ToString(h.LifecycleHookName) == hook {
			return seconds(h.HeartbeatTimeout), seconds(h.GlobalTimeout), nil
		}
	}
	return 0, 0, fmt.Errorf("describing lifecycle hook %s of %s: no such hook", hook, group)
}

// GroupExists reports whether the Auto Scaling group exists. DescribeAutoScalingGroups answers a
// name it does not know with an empty list, not an error (and DescribeLifecycleHooks, on the
// emulator, with no hooks): only this tells "no such group" from "a group without hooks".
func (c *Client) GroupExists(ctx context.Context, group string) (bool, error) {
	out, err := c.api.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
	if err != nil {
		return false, fmt.Errorf("describing auto scaling group %s: %w", group, err)
	}
	for _, g := range out.AutoScalingGroups {
		if aws.ToString(g.AutoScalingGroupName) == group {
			return true, nil
		}
	}
	return false, nil
}

// TerminateHooks names the group's hooks on instance termination.
func (c *Client) TerminateHooks(ctx context.Context, group string) ([]string, error) {
	return c.hooksOn(ctx, group, Terminating)
}

// LaunchHooks names the group's hooks on instance launch.
func (c *Client) LaunchHooks(ctx context.Context, group string) ([]string, error) {
	return c.hooksOn(ctx, group, Launching)
}

func (c *Client) hooksOn(ctx context.Context, group, transition string) ([]string, error) {
	out, err := c.api.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String(group)})
	if err != nil {
		return nil, fmt.Errorf("describing lifecycle hooks of %s: %w", group, err)
	}
	var names []string
	for _, h := range out.LifecycleHooks {
		if aws.ToString(h.LifecycleTransition) == transition {
			names = append(names, aws.ToString(h.LifecycleHookName))
		}
	}
	return names, nil
}

// InstanceState returns the instance's lifecycle state in its group; found is false when no
// group knows it (terminated and gone, or never in a group).
func (c *Client) InstanceState(ctx context.Context, instanceID string) (string, bool, error) {
	out, err := c.api.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: []string{instanceID}})
	if err != nil {
		if rfaws.IsNotFound(err) {
			return "", false, nil
		}
		return "", false, fmt.Errorf("describing auto scaling instance %s: %w", instanceID, err)
	}
	for _, in := range out.AutoScalingInstances {
		if aws.ToString(in.InstanceId) == instanceID {
			return aws.ToString(in.LifecycleState), true, nil
		}
	}
	return "", false, nil
}

// Heartbeat records a heartbeat for the action. active is false when AWS answers that the
// action is not pending any more (ValidationError: completed, timed out, wrong token).
func (c *Client) Heartbeat(ctx context.Context, group, hook, token, instanceID string) (bool, error) {
	_, err := c.api.RecordLifecycleActionHeartbeat(ctx, &autoscaling.RecordLifecycleActionHeartbeatInput{
		AutoScalingGroupName: aws.String(group), LifecycleHookName: aws.String(hook),
		LifecycleActionToken: aws.String(token), InstanceId: aws.String(instanceID),
	})
	if err != nil {
		if noAction(err) {
			return false, nil
		}
		return false, fmt.Errorf("recording lifecycle heartbeat for %s: %w", instanceID, err)
	}
	return true, nil
}

// Complete completes the lifecycle action with result (CONTINUE or ABANDON). The call runs on
// a fresh context bounded by completeTimeout — and by ctx's deadline, if it has one — so a
// cancelled parent does not cut it. active is false when the action was no longer pending.
func (c *Client) Complete(ctx context.Context, group, hook, token, instanceID, result string) (bool, error) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), completeTimeout)
	defer cancel()
	if dl, ok := ctx.Deadline(); ok {
		var c2 context.CancelFunc
		cctx, c2 = context.WithDeadline(cctx, dl)
		defer c2()
	}
	_, err := c.api.CompleteLifecycleAction(cctx, &autoscaling.CompleteLifecycleActionInput{
		AutoScalingGroupName: aws.String(group), LifecycleHookName: aws.String(hook),
		LifecycleActionToken: aws.String(token), InstanceId: aws.String(instanceID),
		LifecycleActionResult: aws.String(result),
	})
	if err != nil {
		if noAction(err) {
			return false, nil
		}
		return false, fmt.Errorf("completing lifecycle action for %s with %s: %w", instanceID, result, err)
	}
	return true, nil
}

// noAction: AWS answers ValidationError "No active Lifecycle Action found with token …" (or
// "… instance ID …") for an action that is not pending. A group deleted meanwhile
// ("AutoScalingGroup name not found - …") or a hook deleted (which ends its pending actions with
// their default result) leaves no action either: retried, such a drain or launch gate would be
// stepped, and swept, for ever.
func noAction(err error) bool {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "ValidationError" {
		return false
	}
	msg := strings.ToLower(apiErr.ErrorMessage())
	return strings.Contains(msg, "no active lifecycle action") ||
		strings.Contains(msg, "autoscalinggroup name not found") ||
		strings.Contains(msg, "no lifecycle hook found") ||
		(strings.Contains(msg, "lifecycle hook") && strings.Contains(msg, "not found"))
}

func seconds(p *int32) time.Duration {
	if p == nil {
		return 0
	}
	return time.Duration(*p) * time.Second
}
