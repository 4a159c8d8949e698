package asg_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/runnerfleet/runnerfleet/handlers/scale"
	"github.com/runnerfleet/runnerfleet/infra/aws/asg"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

// The adapter against the emulator's Auto Scaling and EC2.
func TestGroupAgainstEmulator(t *testing.T) {
	e := emulator.Start(t, emulator.Options{})
	ctx := context.Background()
	cfg := e.AWSConfig(t)
	asc, ec2c := autoscaling.NewFromConfig(cfg), ec2.NewFromConfig(cfg)

	lt := emulator.UniqueName(t, "runnerfleet-lt")
	if _, err := ec2c.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(lt),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeT3Micro},
	}); err != nil {
		t.Fatal(err)
	}
	name := emulator.UniqueName(t, "runnerfleet-asg")
	if _, err := asc.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(name),
		LaunchTemplate:       &astypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String(lt), Version: aws.String("$Latest")},
		MinSize:              aws.Int32(0), MaxSize: aws.Int32(6), DesiredCapacity: aws.Int32(2),
		AvailabilityZones: []string{"us-east-1a"},
	}); err != nil {
		t.Fatal(err)
	}

	g, err := asg.New(asc, ec2c)
	if err != nil {
		t.Fatal(err)
	}
	st, err := g.Describe(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if st.Desired != 2 || st.Min != 0 || st.Max != 6 || len(st.Members) != 2 {
		t.Fatalf("described %+v", st)
	}
	for _, m := range st.Members {
		if m.PrivateIP == "" || m.Instance.LaunchedAt.IsZero() || m.Instance.ID == "" || m.Instance.State == "" {
			t.Errorf("member lacks EC2 details: %+v", m)
		}
	}

	victim, keeper := st.Members[0].Instance.ID, st.Members[1].Instance.ID
	if err := g.SetProtection(ctx, name, []string{keeper}, true); err != nil {
		t.Fatal(err)
	}
	if err := g.SetDesiredCapacity(ctx, name, 3); err != nil {
		t.Fatal(err)
	}
	if err := g.TerminateInstance(ctx, victim); err != nil {
		t.Fatal(err)
	}
	st, err = g.Describe(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if st.Desired != 2 {
		t.Errorf("desired = %d after raising to 3 and terminating one with decrement, want 2", st.Desired)
	}
	i := slices.IndexFunc(st.Members, func(m scale.Member) bool { return m.Instance.ID == keeper })
	if i < 0 || !st.Members[i].Instance.Protected {
		t.Errorf("protected instance %s lost its protection or left: %+v", keeper, st.Members)
	}
	for _, m := range st.Members {
		if m.Instance.ID == victim && !m.Instance.State.Leaving() {
			t.Errorf("terminated instance %s still %s", victim, m.Instance.State)
		}
	}

	if _, err := g.Describe(ctx, "runnerfleet-no-such-group"); !errors.Is(err, scale.ErrGroupNotFound) {
		t.Errorf("missing group: err %v, want ErrGroupNotFound", err)
	}
	if _, err := asg.New(nil, nil); err == nil {
		t.Error("nil clients accepted")
	}
}
