package emulator_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
)

func refreshStatus(t *testing.T, c clients, group, id string) astypes.InstanceRefreshStatus {
	t.Helper()
	out, err := c.asg.DescribeInstanceRefreshes(context.Background(), &autoscaling.DescribeInstanceRefreshesInput{
		AutoScalingGroupName: aws.String(group), InstanceRefreshIds: []string{id},
	})
	if err != nil {
		t.Fatalf("DescribeInstanceRefreshes: %v", err)
	}
	if len(out.InstanceRefreshes) != 1 {
		t.Fatalf("DescribeInstanceRefreshes(%s) = %d refreshes", id, len(out.InstanceRefreshes))
	}
	return out.InstanceRefreshes[0].Status
}

// waitingInstances returns the group's instances in Terminating:Wait.
func waitingInstances(t *testing.T, c clients, group string) []string {
	var out []string
	for id, in := range groupInstances(t, c, group) {
		if in.LifecycleState == astypes.LifecycleStateTerminatingWait {
			out = append(out, id)
		}
	}
	return out
}

func complete(t *testing.T, c clients, group, hook, id string) {
	t.Helper()
	if _, err := c.asg.CompleteLifecycleAction(context.Background(), &autoscaling.CompleteLifecycleActionInput{
		AutoScalingGroupName: aws.String(group), LifecycleHookName: aws.String(hook),
		InstanceId: aws.String(id), LifecycleActionResult: aws.String("CONTINUE"),
	}); err != nil {
		t.Fatalf("CompleteLifecycleAction(%s): %v", id, err)
	}
}

func TestInstanceRefreshGoesThroughHooksAndSkipsProtectedInstances(t *testing.T) {
	t.Parallel()
	e := world(t)
	c := newClients(t, e)
	ctx := context.Background()
	group, _ := newGroup(t, c, groupSpec{desired: 3, hooks: []astypes.LifecycleHookSpecification{
		terminateHook("drain", 60, "ABANDON", ""),
	}})
	before := groupInstances(t, c, group)
	protected := anyInstance(t, before)
	if _, err := c.asg.SetInstanceProtection(ctx, &autoscaling.SetInstanceProtectionInput{
		AutoScalingGroupName: aws.String(group), InstanceIds: []string{protected}, ProtectedFromScaleIn: aws.Bool(true),
	}); err != nil {
		t.Fatalf("SetInstanceProtection: %v", err)
	}
	out, err := c.asg.StartInstanceRefresh(ctx, &autoscaling.StartInstanceRefreshInput{
		AutoScalingGroupName: aws.String(group),
		Preferences: &astypes.RefreshPreferences{
			MinHealthyPercentage:      aws.Int32(50),
			ScaleInProtectedInstances: astypes.ScaleInProtectedInstancesIgnore,
		},
	})
	if err != nil {
		t.Fatalf("StartInstanceRefresh: %v", err)
	}
	id := aws.ToString(out.InstanceRefreshId)
	if _, err := c.asg.StartInstanceRefresh(ctx, &autoscaling.StartInstanceRefreshInput{AutoScalingGroupName: aws.String(group)}); apiCode(err) != "InstanceRefreshInProgress" {
		t.Fatalf("a second StartInstanceRefresh: err = %v, want InstanceRefreshInProgress", err)
	}

	// One instance at a time (3 desired, 50 % healthy → 1 out of service), each through the hook.
	replaced := map[string]bool{}
	for len(replaced) < 2 {
		var waiting []string
		eventually(t, "an instance in Terminating:Wait", func() bool {
			waiting = waitingInstances(t, c, group)
			return len(waiting) > 0
		})
		if len(waiting) != 1 {
			t.Fatalf("%d instances terminating at once, want 1: %v", len(waiting), waiting)
		}
		if waiting[0] == protected {
			t.Fatal("the refresh replaced the protected instance")
		}
		replaced[waiting[0]] = true
		complete(t, c, group, "drain", waiting[0])
	}
	eventually(t, "the refresh to succeed", func() bool {
		return refreshStatus(t, c, group, id) == astypes.InstanceRefreshStatusSuccessful
	})
	after := groupInstances(t, c, group)
	if _, ok := after[protected]; !ok || len(after) != 3 {
		t.Fatalf("after the refresh the group holds %v, want the protected %s and 2 new", after, protected)
	}
	for old := range replaced {
		if _, ok := after[old]; ok {
			t.Fatalf("replaced instance %s is still in the group", old)
		}
	}
}

func TestCancelInstanceRefreshStopsReplacing(t *testing.T) {
	t.Parallel()
	e := world(t)
	c := newClients(t, e)
	ctx := context.Background()
	group, _ := newGroup(t, c, groupSpec{desired: 2, hooks: []astypes.LifecycleHookSpecification{
		terminateHook("drain", 60, "ABANDON", ""),
	}})
	if _, err := c.asg.CancelInstanceRefresh(ctx, &autoscaling.CancelInstanceRefreshInput{AutoScalingGroupName: aws.String(group)}); apiCode(err) != "ActiveInstanceRefreshNotFound" {
		t.Fatalf("CancelInstanceRefresh without one: err = %v, want ActiveInstanceRefreshNotFound", err)
	}
	out, err := c.asg.StartInstanceRefresh(ctx, &autoscaling.StartInstanceRefreshInput{
		AutoScalingGroupName: aws.String(group),
		Preferences:          &astypes.RefreshPreferences{MinHealthyPercentage: aws.Int32(50)},
	})
	if err != nil {
		t.Fatalf("StartInstanceRefresh: %v", err)
	}
	var waiting []string
	eventually(t, "an instance in Terminating:Wait", func() bool {
		waiting = waitingInstances(t, c, group)
		return len(waiting) == 1
	})
	if _, err := c.asg.CancelInstanceRefresh(ctx, &autoscaling.CancelInstanceRefreshInput{AutoScalingGroupName: aws.String(group)}); err != nil {
		t.Fatalf("CancelInstanceRefresh: %v", err)
	}
	complete(t, c, group, "drain", waiting[0])
	id := aws.ToString(out.InstanceRefreshId)
	eventually(t, "the refresh to be cancelled", func() bool {
		return refreshStatus(t, c, group, id) == astypes.InstanceRefreshStatusCancelled
	})
	if w := waitingInstances(t, c, group); len(w) != 0 {
		t.Fatalf("after cancelling, instances still sent through the hook: %v", w)
	}
	if n := len(logOf(t, e, "refresh.replace", "")); n == 0 {
		t.Fatal("no refresh.replace in the log")
	}
}

func TestInstanceRefreshWaitsForProtectedInstancesWhenAskedTo(t *testing.T) {
	t.Parallel()
	e := world(t)
	c := newClients(t, e)
	ctx := context.Background()
	group, _ := newGroup(t, c, groupSpec{desired: 1, protectNew: true})
	old := anyInstance(t, groupInstances(t, c, group))
	out, err := c.asg.StartInstanceRefresh(ctx, &autoscaling.StartInstanceRefreshInput{
		AutoScalingGroupName: aws.String(group),
		Preferences:          &astypes.RefreshPreferences{ScaleInProtectedInstances: astypes.ScaleInProtectedInstancesWait},
	})
	if err != nil {
		t.Fatalf("StartInstanceRefresh: %v", err)
	}
	id := aws.ToString(out.InstanceRefreshId)
	// StartInstanceRefresh takes its first step before it answers: with the only instance
	// protected and ScaleInProtectedInstances=Wait, that step must leave it alone.
	if st := refreshStatus(t, c, group, id); st != astypes.InstanceRefreshStatusInProgress {
		t.Fatalf("refresh status with its only instance protected = %q, want InProgress", st)
	}
	if _, ok := groupInstances(t, c, group)[old]; !ok || len(logOf(t, e, "refresh.replace", old)) != 0 {
		t.Fatalf("the refresh replaced protected instance %s instead of waiting", old)
	}
	if _, err := c.asg.SetInstanceProtection(ctx, &autoscaling.SetInstanceProtectionInput{
		AutoScalingGroupName: aws.String(group), InstanceIds: []string{old}, ProtectedFromScaleIn: aws.Bool(false),
	}); err != nil {
		t.Fatalf("SetInstanceProtection: %v", err)
	}
	eventually(t, "the refresh to succeed once unprotected", func() bool {
		return refreshStatus(t, c, group, id) == astypes.InstanceRefreshStatusSuccessful
	})
	after := groupInstances(t, c, group)
	if _, ok := after[old]; ok || len(after) != 1 {
		t.Fatalf("after the refresh the group holds %v, want one new instance", after)
	}
}
