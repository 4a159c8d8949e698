package emulator_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// lifecycleDetail is the detail of an EC2 Instance-launch/terminate Lifecycle Action event.
type lifecycleDetail struct {
	LifecycleActionToken string
	AutoScalingGroupName string
	LifecycleHookName    string
	EC2InstanceId        string
	LifecycleTransition  string
	NotificationMetadata string
	Origin               string
	Destination          string
}

const terminatePattern = `{"source":["aws.autoscaling"],"detail-type":["EC2 Instance-terminate Lifecycle Action"]}`

func lifecycleEvent(t *testing.T, c clients, url, group string) (event, lifecycleDetail) {
	t.Helper()
	var d lifecycleDetail
	ev := receiveEvent(t, c, url, func(ev event) bool {
		var x lifecycleDetail
		return json.Unmarshal(ev.Detail, &x) == nil && x.AutoScalingGroupName == group
	})
	if err := json.Unmarshal(ev.Detail, &d); err != nil {
		t.Fatalf("lifecycle detail: %v", err)
	}
	return ev, d
}

func TestTerminateHookHoldsInstanceWhileHeartbeatsArriveUntilComplete(t *testing.T) {
	t.Parallel()
	e := world(t)
	c := newClients(t, e)
	ctx := context.Background()
	url := eventQueue(t, c, terminatePattern)
	group, _ := newGroup(t, c, groupSpec{desired: 1, hooks: []astypes.LifecycleHookSpecification{
		terminateHook("drain", 5, "CONTINUE", `{"fleet":"alpha"}`),
	}})
	id := anyInstance(t, groupInstances(t, c, group))

	if _, err := c.asg.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(id), ShouldDecrementDesiredCapacity: aws.Bool(true),
	}); err != nil {
		t.Fatalf("TerminateInstanceInAutoScalingGroup: %v", err)
	}
	if got := groupInstances(t, c, group)[id].LifecycleState; got != astypes.LifecycleStateTerminatingWait {
		t.Fatalf("after TerminateInstanceInAutoScalingGroup the instance is %q, want Terminating:Wait", got)
	}

	ev, d := lifecycleEvent(t, c, url, group)
	want := lifecycleDetail{
		LifecycleActionToken: d.LifecycleActionToken,
		AutoScalingGroupName: group, LifecycleHookName: "drain", EC2InstanceId: id,
		LifecycleTransition: "autoscaling:EC2_INSTANCE_TERMINATING", NotificationMetadata: `{"fleet":"alpha"}`,
		Origin: "AutoScalingGroup", Destination: "EC2",
	}
	if d != want || d.LifecycleActionToken == "" {
		t.Fatalf("lifecycle detail = %+v, want %+v", d, want)
	}
	if ev.Source != "aws.autoscaling" || len(ev.Resources) != 1 || ev.Region != "us-east-1" || ev.Time == "" {
		t.Fatalf("event envelope = %+v", ev)
	}

	// Heartbeats every 2 s keep a 5 s hook waiting for 12 s.
	for i := 0; i < 6; i++ {
		time.Sleep(2 * time.Second)
		if _, err := c.asg.RecordLifecycleActionHeartbeat(ctx, &autoscaling.RecordLifecycleActionHeartbeatInput{
			AutoScalingGroupName: aws.String(group), LifecycleHookName: aws.String("drain"),
			LifecycleActionToken: aws.String(d.LifecycleActionToken),
		}); err != nil {
			t.Fatalf("RecordLifecycleActionHeartbeat #%d: %v", i+1, err)
		}
	}
	if got := groupInstances(t, c, group)[id].LifecycleState; got != astypes.LifecycleStateTerminatingWait {
		t.Fatalf("after 12 s of heartbeats the instance is %q, want Terminating:Wait", got)
	}
	if got := ec2State(t, c, id); got != ec2types.InstanceStateNameRunning {
		t.Fatalf("EC2 state while waiting = %q, want running", got)
	}

	if _, err := c.asg.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
		AutoScalingGroupName: aws.String(group), LifecycleHookName: aws.String("drain"),
		LifecycleActionToken: aws.String(d.LifecycleActionToken), LifecycleActionResult: aws.String("CONTINUE"),
	}); err != nil {
		t.Fatalf("CompleteLifecycleAction: %v", err)
	}
	if _, ok := groupInstances(t, c, group)[id]; ok {
		t.Fatal("the instance is still in the group after CompleteLifecycleAction")
	}
	if got := ec2State(t, c, id); got != ec2types.InstanceStateNameTerminated {
		t.Fatalf("EC2 state after completion = %q, want terminated", got)
	}
	// A finished action is AWS's ValidationError.
	_, err := c.asg.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
		AutoScalingGroupName: aws.String(group), LifecycleHookName: aws.String("drain"),
		LifecycleActionToken: aws.String(d.LifecycleActionToken), LifecycleActionResult: aws.String("CONTINUE"),
	})
	if apiCode(err) != "ValidationError" {
		t.Fatalf("completing a finished action: err = %v, want ValidationError", err)
	}
	if n := len(logOf(t, e, "hook.heartbeat", id)); n != 6 {
		t.Fatalf("log has %d hook.heartbeat events for %s, want 6", n, id)
	}
	if n := len(logOf(t, e, "hook.timeout", id)); n != 0 {
		t.Fatalf("log has %d hook.timeout events for %s, want 0", n, id)
	}
}

func TestTerminateHookWithoutHeartbeatsEndsAtTheTimeoutWithDefaultResult(t *testing.T) {
	t.Parallel()
	e := world(t)
	c := newClients(t, e)
	ctx := context.Background()
	group, _ := newGroup(t, c, groupSpec{desired: 2, hooks: []astypes.LifecycleHookSpecification{
		terminateHook("drain", 3, "ABANDON", ""),
	}})
	before := groupInstances(t, c, group)

	// A lower desired capacity sends one instance through the hook.
	if _, err := c.asg.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{
		AutoScalingGroupName: aws.String(group), DesiredCapacity: aws.Int32(1),
	}); err != nil {
		t.Fatalf("SetDesiredCapacity: %v", err)
	}
	var waiting string
	for id, in := range groupInstances(t, c, group) {
		if in.LifecycleState == astypes.LifecycleStateTerminatingWait {
			waiting = id
		}
	}
	if waiting == "" {
		t.Fatalf("no instance in Terminating:Wait after lowering the desired capacity: %+v", groupInstances(t, c, group))
	}
	eventually(t, "termination at the heartbeat timeout", func() bool {
		_, still := groupInstances(t, c, group)[waiting]
		return !still
	})
	if got := ec2State(t, c, waiting); got != ec2types.InstanceStateNameTerminated {
		t.Fatalf("EC2 state after the timeout = %q, want terminated", got)
	}
	timeouts := logOf(t, e, "hook.timeout", waiting)
	if len(timeouts) != 1 || timeouts[0].String("result") != "ABANDON" {
		t.Fatalf("hook.timeout events = %+v, want one with result ABANDON", timeouts)
	}
	if after := groupInstances(t, c, group); len(after) != 1 || len(before) != 2 {
		t.Fatalf("group has %d instances after scale-in from %d, want 1", len(after), len(before))
	}
}

func TestCompleteLifecycleActionByInstanceIDAndWrongToken(t *testing.T) {
	t.Parallel()
	e := world(t)
	c := newClients(t, e)
	ctx := context.Background()
	group, _ := newGroup(t, c, groupSpec{desired: 1, hooks: []astypes.LifecycleHookSpecification{
		terminateHook("drain", 30, "CONTINUE", ""),
	}})
	id := anyInstance(t, groupInstances(t, c, group))
	if _, err := c.asg.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(id), ShouldDecrementDesiredCapacity: aws.Bool(false),
	}); err != nil {
		t.Fatalf("TerminateInstanceInAutoScalingGroup: %v", err)
	}
	// Without decrement the group launches a replacement at once.
	if n := len(groupInstances(t, c, group)); n != 2 {
		t.Fatalf("group has %d instances (terminating + replacement), want 2", n)
	}

	_, err := c.asg.RecordLifecycleActionHeartbeat(ctx, &autoscaling.RecordLifecycleActionHeartbeatInput{
		AutoScalingGroupName: aws.String(group), LifecycleHookName: aws.String("drain"),
		LifecycleActionToken: aws.String("00000000-0000-0000-0000-000000000000"),
	})
	if apiCode(err) != "ValidationError" {
		t.Fatalf("heartbeat with a wrong token: err = %v, want ValidationError", err)
	}
	if _, err := c.asg.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
		AutoScalingGroupName: aws.String(group), LifecycleHookName: aws.String("drain"),
		InstanceId: aws.String(id), LifecycleActionResult: aws.String("CONTINUE"),
	}); err != nil {
		t.Fatalf("CompleteLifecycleAction by instance id: %v", err)
	}
	m := groupInstances(t, c, group)
	if _, ok := m[id]; ok || len(m) != 1 {
		t.Fatalf("after completion the group holds %v, want only the replacement", m)
	}
	completes := logOf(t, e, "hook.complete", id)
	if len(completes) != 1 || completes[0].String("by") != "instance_id" {
		t.Fatalf("hook.complete events = %+v", completes)
	}
	// The runner simulator heard of the termination; its killed count is in the log.
	if sim.deletes(id) != 1 {
		t.Fatalf("runner simulator DELETE calls for %s = %d, want 1", id, sim.deletes(id))
	}
}

func TestScaleInSkipsProtectedInstances(t *testing.T) {
	t.Parallel()
	e := world(t)
	c := newClients(t, e)
	ctx := context.Background()
	group, _ := newGroup(t, c, groupSpec{desired: 3})
	ids := groupInstances(t, c, group)
	var protected []string
	for id := range ids {
		if len(protected) < 2 {
			protected = append(protected, id)
		}
	}
	if _, err := c.asg.SetInstanceProtection(ctx, &autoscaling.SetInstanceProtectionInput{
		AutoScalingGroupName: aws.String(group), InstanceIds: protected, ProtectedFromScaleIn: aws.Bool(true),
	}); err != nil {
		t.Fatalf("SetInstanceProtection: %v", err)
	}
	if _, err := c.asg.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{
		AutoScalingGroupName: aws.String(group), DesiredCapacity: aws.Int32(11),
	}); apiCode(err) != "ValidationError" {
		t.Fatalf("SetDesiredCapacity above MaxSize: err = %v, want ValidationError", err)
	}
	if _, err := c.asg.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{
		AutoScalingGroupName: aws.String(group), DesiredCapacity: aws.Int32(1),
	}); err != nil {
		t.Fatalf("SetDesiredCapacity: %v", err)
	}
	after := groupInstances(t, c, group)
	for _, id := range protected {
		if _, ok := after[id]; !ok {
			t.Fatalf("protected instance %s was chosen for scale-in", id)
		}
	}
	if len(after) != 2 {
		t.Fatalf("group has %d instances, want the 2 protected ones", len(after))
	}
}

func TestDeletingAHookCompletesItsWaitingActions(t *testing.T) {
	t.Parallel()
	e := world(t)
	c := newClients(t, e)
	ctx := context.Background()
	group, _ := newGroup(t, c, groupSpec{desired: 1, hooks: []astypes.LifecycleHookSpecification{
		terminateHook("drain", 300, "ABANDON", ""),
	}})
	id := anyInstance(t, groupInstances(t, c, group))
	if _, err := c.asg.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(id), ShouldDecrementDesiredCapacity: aws.Bool(true),
	}); err != nil {
		t.Fatalf("TerminateInstanceInAutoScalingGroup: %v", err)
	}
	if _, err := c.asg.DeleteLifecycleHook(ctx, &autoscaling.DeleteLifecycleHookInput{
		AutoScalingGroupName: aws.String(group), LifecycleHookName: aws.String("drain"),
	}); err != nil {
		t.Fatalf("DeleteLifecycleHook: %v", err)
	}
	if _, ok := groupInstances(t, c, group)[id]; ok {
		t.Fatal("the instance still waits after its hook was deleted")
	}
	completes := logOf(t, e, "hook.complete", id)
	if len(completes) != 1 || completes[0].String("result") != "CONTINUE" || completes[0].String("by") != "hook_deleted" {
		t.Fatalf("hook.complete = %+v, want one CONTINUE by hook_deleted", completes)
	}
}
