package emulator_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

type instanceDetail struct {
	InstanceID string `json:"instance-id"`
	State      string `json:"state"`
	Action     string `json:"instance-action"`
}

func TestEC2TerminationLeavesGroupWithReplacementAndStateChangeEvent(t *testing.T) {
	t.Parallel()
	e := world(t)
	c := newClients(t, e)
	ctx := context.Background()
	url := eventQueue(t, c, `{"source":["aws.ec2"],"detail-type":["EC2 Instance State-change Notification"],"detail":{"state":["terminated"]}}`)
	group, _ := newGroup(t, c, groupSpec{desired: 1})
	id := anyInstance(t, groupInstances(t, c, group))
	sim.setKilled(id, 2)

	if _, err := c.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Fatalf("TerminateInstances: %v", err)
	}
	after := groupInstances(t, c, group)
	if _, ok := after[id]; ok || len(after) != 1 {
		t.Fatalf("after an EC2 termination the group holds %v, want one replacement", after)
	}
	receiveEvent(t, c, url, func(ev event) bool {
		var d instanceDetail
		return json.Unmarshal(ev.Detail, &d) == nil && d.InstanceID == id && d.State == "terminated"
	})
	killed := logOf(t, e, "instance.jobs_killed", id)
	if len(killed) != 1 || killed[0].Int("killed") != 2 {
		t.Fatalf("instance.jobs_killed log for %s = %+v, want one with killed=2", id, killed)
	}
	replacement := anyInstance(t, after)
	if _, ok := sim.launch(replacement); !ok {
		t.Fatalf("the runner simulator was not told of the replacement %s", replacement)
	}
}

func TestInstancesRecordTheirLaunchTemplateVersion(t *testing.T) {
	t.Parallel()
	e := world(t)
	c := newClients(t, e)
	ctx := context.Background()
	group, lt := newGroup(t, c, groupSpec{desired: 1})
	first := anyInstance(t, groupInstances(t, c, group))

	if _, err := c.ec2.CreateLaunchTemplateVersion(ctx, &ec2.CreateLaunchTemplateVersionInput{
		LaunchTemplateName: aws.String(lt),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeT3Small},
	}); err != nil {
		t.Fatalf("CreateLaunchTemplateVersion: %v", err)
	}
	if _, err := c.asg.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{
		AutoScalingGroupName: aws.String(group), DesiredCapacity: aws.Int32(2),
	}); err != nil {
		t.Fatalf("SetDesiredCapacity: %v", err)
	}
	versions := map[string]string{}
	for id, in := range groupInstances(t, c, group) {
		if in.LaunchTemplate == nil {
			t.Fatalf("instance %s has no launch template", id)
		}
		versions[id] = aws.ToString(in.LaunchTemplate.Version)
	}
	if versions[first] != "1" || len(versions) != 2 {
		t.Fatalf("versions = %v, want %s at 1 and a new one at 2", versions, first)
	}
	for id, v := range versions {
		if id != first && v != "2" {
			t.Fatalf("new instance %s has version %q, want 2", id, v)
		}
		body, ok := sim.launch(id)
		if !ok || body["launch_template_version"] != v || body["group"] != group || body["private_ip"] == "" {
			t.Fatalf("runner simulator launch call for %s = %v (want version %s, group %s, an IP)", id, body, v, group)
		}
	}

	// Scale-in picks the oldest version first.
	if _, err := c.asg.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{
		AutoScalingGroupName: aws.String(group), DesiredCapacity: aws.Int32(1),
	}); err != nil {
		t.Fatalf("SetDesiredCapacity: %v", err)
	}
	if _, ok := groupInstances(t, c, group)[first]; ok {
		t.Fatalf("scale-in kept %s of version 1 over the version 2 instance", first)
	}
}

// A group switched to another launch template (a stack update that replaces its template does
// the same): its instances keep naming the template they were launched from, as AWS reports
// them, though the new template's version is again 1; scale-in takes those of the old template
// first.
func TestInstancesKeepTheirLaunchTemplateWhenTheGroupSwitches(t *testing.T) {
	t.Parallel()
	e := world(t)
	c := newClients(t, e)
	ctx := context.Background()
	group, lt := newGroup(t, c, groupSpec{desired: 1})
	first := anyInstance(t, groupInstances(t, c, group))
	before := groupInstances(t, c, group)[first].LaunchTemplate
	if before == nil || aws.ToString(before.LaunchTemplateId) == "" || aws.ToString(before.LaunchTemplateName) != lt || aws.ToString(before.Version) != "1" {
		t.Fatalf("first instance's launch template %+v, want %s (with its id) version 1", before, lt)
	}

	next := emulator.UniqueName(t, "runnerfleet-lt")
	out, err := c.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(next),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeT3Small},
	})
	if err != nil {
		t.Fatalf("CreateLaunchTemplate: %v", err)
	}
	nextID := aws.ToString(out.LaunchTemplate.LaunchTemplateId)
	if _, err := c.asg.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(group),
		LaunchTemplate:       &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String(nextID), Version: aws.String("$Latest")},
	}); err != nil {
		t.Fatalf("UpdateAutoScalingGroup: %v", err)
	}
	if _, err := c.asg.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{
		AutoScalingGroupName: aws.String(group), DesiredCapacity: aws.Int32(2),
	}); err != nil {
		t.Fatalf("SetDesiredCapacity: %v", err)
	}
	for id, in := range groupInstances(t, c, group) {
		got := in.LaunchTemplate
		wantID, wantName := nextID, next
		if id == first {
			wantID, wantName = aws.ToString(before.LaunchTemplateId), lt
		}
		if got == nil {
			t.Errorf("instance %s: no launch template, want %s (%s) version 1", id, wantName, wantID)
		} else if aws.ToString(got.LaunchTemplateId) != wantID || aws.ToString(got.LaunchTemplateName) != wantName || aws.ToString(got.Version) != "1" {
			t.Errorf("instance %s: launch template %s (%s) version %s, want %s (%s) version 1", id,
				aws.ToString(got.LaunchTemplateName), aws.ToString(got.LaunchTemplateId), aws.ToString(got.Version), wantName, wantID)
		}
	}

	// Scale-in picks the instance of the template the group no longer launches from.
	if _, err := c.asg.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{
		AutoScalingGroupName: aws.String(group), DesiredCapacity: aws.Int32(1),
	}); err != nil {
		t.Fatalf("SetDesiredCapacity: %v", err)
	}
	if _, ok := groupInstances(t, c, group)[first]; ok {
		t.Fatalf("scale-in kept %s of the old launch template over the new one's", first)
	}
}

func TestSpotInterruptionWarnsThenReclaimsAndGroupReplaces(t *testing.T) {
	t.Parallel()
	e := world(t)
	c := newClients(t, e)
	ctx := context.Background()
	url := eventQueue(t, c, `{"source":["aws.ec2"],"detail-type":["EC2 Spot Instance Interruption Warning","EC2 Instance Rebalance Recommendation"]}`)
	group, _ := newGroup(t, c, groupSpec{desired: 1})
	id := anyInstance(t, groupInstances(t, c, group))

	if err := e.Rebalance(ctx, id); err != nil {
		t.Fatalf("Rebalance: %v", err)
	}
	receiveEvent(t, c, url, func(ev event) bool {
		var d instanceDetail
		return ev.DetailType == "EC2 Instance Rebalance Recommendation" && json.Unmarshal(ev.Detail, &d) == nil && d.InstanceID == id
	})
	if err := e.SpotInterruption(ctx, id, 2*time.Second); err != nil {
		t.Fatalf("SpotInterruption: %v", err)
	}
	receiveEvent(t, c, url, func(ev event) bool {
		var d instanceDetail
		return ev.DetailType == "EC2 Spot Instance Interruption Warning" && json.Unmarshal(ev.Detail, &d) == nil &&
			d.InstanceID == id && d.Action == "terminate"
	})
	eventually(t, "the reclaim of "+id, func() bool { return ec2State(t, c, id) == ec2types.InstanceStateNameTerminated })
	eventually(t, "a replacement", func() bool {
		m := groupInstances(t, c, group)
		_, old := m[id]
		return !old && len(m) == 1
	})
	if err := e.SpotInterruption(ctx, "i-doesnotexist0000", time.Second); err == nil {
		t.Fatal("SpotInterruption of an unknown instance succeeded")
	}
}

func TestLaunchHookHoldsPendingWaitUntilContinueAndAbandonReplaces(t *testing.T) {
	t.Parallel()
	e := world(t)
	c := newClients(t, e)
	ctx := context.Background()
	url := eventQueue(t, c, `{"source":["aws.autoscaling"],"detail-type":["EC2 Instance-launch Lifecycle Action"]}`)
	group, _ := newGroup(t, c, groupSpec{desired: 2, hooks: []astypes.LifecycleHookSpecification{{
		LifecycleHookName:   aws.String("boot"),
		LifecycleTransition: aws.String("autoscaling:EC2_INSTANCE_LAUNCHING"),
		HeartbeatTimeout:    aws.Int32(300),
		DefaultResult:       aws.String("ABANDON"),
	}}})
	ids := groupInstances(t, c, group)
	if len(ids) != 2 {
		t.Fatalf("group has %d instances, want 2", len(ids))
	}
	for id, in := range ids {
		if in.LifecycleState != astypes.LifecycleStatePendingWait {
			t.Fatalf("instance %s is %q, want Pending:Wait", id, in.LifecycleState)
		}
	}
	tokens := map[string]string{}
	for len(tokens) < 2 {
		_, d := lifecycleEvent(t, c, url, group)
		if d.LifecycleTransition != "autoscaling:EC2_INSTANCE_LAUNCHING" || d.Origin != "EC2" || d.Destination != "AutoScalingGroup" {
			t.Fatalf("launch detail = %+v", d)
		}
		tokens[d.EC2InstanceId] = d.LifecycleActionToken
	}
	var keep, abandon string
	for id := range ids {
		if keep == "" {
			keep = id
		} else {
			abandon = id
		}
	}
	for id, result := range map[string]string{keep: "CONTINUE", abandon: "ABANDON"} {
		if _, err := c.asg.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
			AutoScalingGroupName: aws.String(group), LifecycleHookName: aws.String("boot"),
			LifecycleActionToken: aws.String(tokens[id]), LifecycleActionResult: aws.String(result),
		}); err != nil {
			t.Fatalf("CompleteLifecycleAction(%s, %s): %v", id, result, err)
		}
	}
	after := groupInstances(t, c, group)
	if after[keep].LifecycleState != astypes.LifecycleStateInService {
		t.Fatalf("after CONTINUE %s is %q, want InService", keep, after[keep].LifecycleState)
	}
	if _, ok := after[abandon]; ok || len(after) != 2 {
		t.Fatalf("after ABANDON the group holds %v, want %s gone and a replacement", after, abandon)
	}
	if got := ec2State(t, c, abandon); got != ec2types.InstanceStateNameTerminated {
		t.Fatalf("abandoned instance is %q, want terminated", got)
	}
}

func TestStopAndTerminateOutsideAGroupEmitStateChanges(t *testing.T) {
	t.Parallel()
	e := world(t)
	c := newClients(t, e)
	ctx := context.Background()
	url := eventQueue(t, c, `{"source":["aws.ec2"],"detail-type":["EC2 Instance State-change Notification"]}`)
	run, err := c.ec2.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String("ami-12c6146b"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	if err != nil {
		t.Fatalf("RunInstances: %v", err)
	}
	id := aws.ToString(run.Instances[0].InstanceId)
	if body, ok := sim.launch(id); !ok || body["group"] != "" {
		t.Fatalf("runner simulator launch call for %s = %v, want one with no group", id, body)
	}
	if _, err := c.ec2.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Fatalf("StopInstances: %v", err)
	}
	if _, err := c.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Fatalf("TerminateInstances: %v", err)
	}
	for _, want := range []string{"stopping", "stopped", "shutting-down", "terminated"} {
		ev := receiveEvent(t, c, url, func(ev event) bool {
			var d instanceDetail
			return json.Unmarshal(ev.Detail, &d) == nil && d.InstanceID == id
		})
		var d instanceDetail
		_ = json.Unmarshal(ev.Detail, &d)
		if d.State != want {
			t.Fatalf("state-change event %+v, want state %s next", d, want)
		}
	}
}
