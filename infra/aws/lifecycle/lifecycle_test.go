package lifecycle_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/runnerfleet/runnerfleet/infra/aws/lifecycle"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

// The adapter against the emulator's terminate hooks: timeouts read back, the instance's state,
// a heartbeat and a completion on an active action, and "not active" (not an error) afterwards.
func TestClientAgainstTheEmulator(t *testing.T) {
	e := emulator.Start(t, emulator.Options{})
	cfg := e.AWSConfig(t)
	ctx := context.Background()
	asg := autoscaling.NewFromConfig(cfg)
	lt := emulator.UniqueName(t, "runnerfleet-lt")
	if _, err := ec2.NewFromConfig(cfg).CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(lt),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeT3Micro},
	}); emulator.Created(err) != nil {
		t.Fatal(err)
	}
	group := emulator.UniqueName(t, "runnerfleet-asg")
	if _, err := asg.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(group), MinSize: aws.Int32(0), MaxSize: aws.Int32(1), DesiredCapacity: aws.Int32(1),
		LaunchTemplate:    &astypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String(lt), Version: aws.String("$Latest")},
		AvailabilityZones: []string{"us-east-1a"},
		LifecycleHookSpecificationList: []astypes.LifecycleHookSpecification{{
			LifecycleHookName: aws.String("drain"), LifecycleTransition: aws.String(lifecycle.Terminating),
			HeartbeatTimeout: aws.Int32(60), DefaultResult: aws.String("CONTINUE"),
		}},
	}); err != nil {
		t.Fatal(err)
	}
	c, err := lifecycle.New(asg)
	if err != nil {
		t.Fatal(err)
	}
	hb, global, err := c.HookTimeouts(ctx, group, "drain")
	if err != nil || hb != time.Minute {
		t.Fatalf("HookTimeouts = %s, %s, %v; want 1m heartbeat", hb, global, err)
	}
	if global != 0 && global != 100*time.Minute {
		t.Errorf("global timeout %s, want 100 × heartbeat (or unset)", global)
	}
	if ok, err := c.GroupExists(ctx, group); err != nil || !ok {
		t.Fatalf("GroupExists(%s) = %v, %v; want true", group, ok, err)
	}
	if ok, err := c.GroupExists(ctx, group+"-nope"); err != nil || ok {
		t.Fatalf("GroupExists of a group that does not exist = %v, %v; want false, no error", ok, err)
	}
	if launch, err := c.LaunchHooks(ctx, group); err != nil || len(launch) != 0 {
		t.Fatalf("LaunchHooks = %v, %v; want none (the group has a terminate hook only)", launch, err)
	}
	names, err := c.TerminateHooks(ctx, group)
	if err != nil || len(names) != 1 || names[0] != "drain" {
		t.Fatalf("TerminateHooks = %v, %v", names, err)
	}
	if _, _, err := c.HookTimeouts(ctx, group, "nope"); err == nil {
		t.Error("HookTimeouts of a missing hook succeeded")
	}

	out, err := asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
	if err != nil || len(out.AutoScalingGroups) != 1 || len(out.AutoScalingGroups[0].Instances) != 1 {
		t.Fatalf("DescribeAutoScalingGroups: %v", err)
	}
	id := aws.ToString(out.AutoScalingGroups[0].Instances[0].InstanceId)
	if _, err := asg.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(id), ShouldDecrementDesiredCapacity: aws.Bool(true),
	}); err != nil {
		t.Fatal(err)
	}
	state, found, err := c.InstanceState(ctx, id)
	if err != nil || !found || state != "Terminating:Wait" {
		t.Fatalf("InstanceState = %q, %v, %v; want Terminating:Wait", state, found, err)
	}
	token := hookToken(t, e, id)
	if active, err := c.Heartbeat(ctx, group, "drain", token, id); err != nil || !active {
		t.Fatalf("Heartbeat = %v, %v; want active", active, err)
	}
	if active, err := c.Heartbeat(ctx, group, "drain", "00000000-0000-0000-0000-000000000000", id); err != nil || active {
		t.Fatalf("Heartbeat with a wrong token = %v, %v; want not active, no error", active, err)
	}
	// A cancelled parent does not cut the completion (fresh, bounded context).
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if active, err := c.Complete(cancelled, group, "drain", token, id, "CONTINUE"); err != nil || !active {
		t.Fatalf("Complete on a cancelled parent = %v, %v; want active", active, err)
	}
	if active, err := c.Complete(ctx, group, "drain", token, id, "CONTINUE"); err != nil || active {
		t.Fatalf("second Complete = %v, %v; want not active, no error", active, err)
	}
	if _, found, err := c.InstanceState(ctx, id); err != nil || found {
		t.Fatalf("InstanceState after completion: found %v, %v; want gone", found, err)
	}
}

func hookToken(t *testing.T, e *emulator.Emulator, id string) string {
	t.Helper()
	evs, err := e.Log(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Kind == emulator.KindHookStart && ev.String("instance_id") == id {
			return ev.String("token")
		}
	}
	t.Fatal("no hook.start in the log")
	return ""
}
