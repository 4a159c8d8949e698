package cycle_test

import (
	"context"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/runnerfleet/runnerfleet/handlers/cycle"
	"github.com/runnerfleet/runnerfleet/infra/aws/cyclestate"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
	"github.com/runnerfleet/runnerfleet/messages"
)

// A group switched to another launch template (as a stack update that replaces the template
// leaves it): the new template's version is again 1, like the old one's. The adapter reports the
// members with the template they were launched from, and a cycle replaces them all, each drained.
func TestACycleReplacesTheInstancesOfASwitchedLaunchTemplate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, spec{instances: 2})
	ctx := context.Background()
	old := e.ids()
	oldID := aws.ToString(e.members()[old[0]].LaunchTemplate.LaunchTemplateId)

	next := emulator.UniqueName(t, "runnerfleet-lt")
	out, err := e.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(next),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeT3Small},
	})
	if err != nil {
		t.Fatalf("CreateLaunchTemplate: %v", err)
	}
	nextID := aws.ToString(out.LaunchTemplate.LaunchTemplateId)
	if _, err := e.asg.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(e.group),
		LaunchTemplate:       &astypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String(next), Version: aws.String("$Latest")},
	}); err != nil {
		t.Fatalf("UpdateAutoScalingGroup: %v", err)
	}

	group, err := cyclestate.NewGroup(e.asg, e.ec2)
	if err != nil {
		t.Fatal(err)
	}
	st, err := group.Describe(ctx, e.group)
	if err != nil {
		t.Fatal(err)
	}
	if st.CurrentTemplate != nextID || st.CurrentVersion != "1" || st.AddressErr != nil {
		t.Fatalf("group launches from %q version %q (address error %v); want %s (looked up by name) version 1", st.CurrentTemplate, st.CurrentVersion, st.AddressErr, nextID)
	}
	for _, m := range st.Members {
		if m.Template != oldID || m.Version != "1" || st.Current(m) || m.PrivateIP == "" {
			t.Errorf("member %+v; want launched from the old template %s version 1, not current, with its address", m, oldID)
		}
	}

	e.startTicking()
	if err := e.command(messages.CycleArgs{MaxUnavailable: 1, Surge: 1}); err != nil {
		t.Fatal(err)
	}
	if rec := e.record(); !slices.Equal(slices.Sorted(slices.Values(rec.Old)), old) || rec.TargetTemplate != nextID || rec.TargetVersion != "1" {
		t.Fatalf("cycle's old %v, target %q version %q; want every instance of the old template, target %s version 1", rec.Old, rec.TargetTemplate, rec.TargetVersion, nextID)
	}
	e.eventually("the cycle ends", func() bool { return e.record().Status.Final() })
	rec := e.record()
	if rec.Status != cycle.StatusSucceeded {
		dumpLog(t, e.log())
		t.Fatalf("cycle %s: %s; events %v", rec.Status, rec.Reason, rec.Events)
	}
	members := e.members()
	if len(members) != 2 {
		t.Errorf("group has %d members, want 2", len(members))
	}
	for id, m := range members {
		if slices.Contains(old, id) || m.LaunchTemplate == nil || aws.ToString(m.LaunchTemplate.LaunchTemplateId) != nextID {
			t.Errorf("member %s after the cycle: %+v, want a replacement on %s", id, m.LaunchTemplate, nextID)
		}
	}
	e.noneKilled()
}
