package emulator_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"

	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

const changeSetStack = `
Parameters:
  InstanceType: {Type: String, Default: t3.micro}
Resources:
  LT:
    Type: AWS::EC2::LaunchTemplate
    Properties:
      LaunchTemplateData:
        ImageId: ami-12c6146b
        InstanceType: !Ref InstanceType
  Group:
    Type: AWS::AutoScaling::AutoScalingGroup
    Properties:
      AutoScalingGroupName: %s
      MinSize: "0"
      MaxSize: "4"
      DesiredCapacity: "1"
      AvailabilityZones: [us-east-1a]
      LaunchTemplate:
        LaunchTemplateId: !Ref LT
        Version: !GetAtt LT.LatestVersionNumber
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: %s
`

func TestChangeSetShowsReplacementAndMovesTheGroupToTheNewVersion(t *testing.T) {
	t.Parallel()
	e := world(t)
	c := newClients(t, e)
	ctx := context.Background()
	cfn := cloudformation.NewFromConfig(e.AWSConfig(t))
	stack := emulator.UniqueName(t, "runnerfleet-cs")
	group := emulator.UniqueName(t, "runnerfleet-asg")
	q1, q2 := emulator.UniqueName(t, "runnerfleet-q"), emulator.UniqueName(t, "runnerfleet-q")
	if _, err := cfn.CreateStack(ctx, &cloudformation.CreateStackInput{
		StackName: aws.String(stack), TemplateBody: aws.String(fmt.Sprintf(changeSetStack, group, q1)),
	}); err != nil {
		t.Fatalf("CreateStack: %v", err)
	}
	first := anyInstance(t, groupInstances(t, c, group))

	// No ChangeSetType: AWS's default is UPDATE.
	if _, err := cfn.CreateChangeSet(ctx, &cloudformation.CreateChangeSetInput{
		StackName: aws.String(stack), ChangeSetName: aws.String("next"),
		TemplateBody: aws.String(fmt.Sprintf(changeSetStack, group, q2)),
		Parameters:   []cfntypes.Parameter{{ParameterKey: aws.String("InstanceType"), ParameterValue: aws.String("t3.small")}},
	}); err != nil {
		t.Fatalf("CreateChangeSet: %v", err)
	}
	cs, err := cfn.DescribeChangeSet(ctx, &cloudformation.DescribeChangeSetInput{StackName: aws.String(stack), ChangeSetName: aws.String("next")})
	if err != nil {
		t.Fatalf("DescribeChangeSet: %v", err)
	}
	got := map[string]string{}
	for _, ch := range cs.Changes {
		rc := ch.ResourceChange
		got[aws.ToString(rc.LogicalResourceId)] = string(rc.Action) + "/" + string(rc.Replacement)
	}
	want := map[string]string{"LT": "Modify/False", "Group": "Modify/False", "Queue": "Modify/True"}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("change set = %v, want %v", got, want)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("change set = %v, want only %v", got, want)
	}

	if _, err := cfn.ExecuteChangeSet(ctx, &cloudformation.ExecuteChangeSetInput{StackName: aws.String(stack), ChangeSetName: aws.String("next")}); err != nil {
		t.Fatalf("ExecuteChangeSet: %v", err)
	}
	if _, err := c.asg.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String(group), DesiredCapacity: aws.Int32(2)}); err != nil {
		t.Fatalf("SetDesiredCapacity: %v", err)
	}
	for id, in := range groupInstances(t, c, group) {
		wantVersion, wantType := "2", "t3.small"
		if id == first {
			wantVersion, wantType = "1", "t3.micro"
		}
		if v := aws.ToString(in.LaunchTemplate.Version); v != wantVersion || aws.ToString(in.InstanceType) != wantType {
			t.Fatalf("instance %s: version %s type %s, want %s %s", id, v, aws.ToString(in.InstanceType), wantVersion, wantType)
		}
	}
}

const rollbackStack = `
Resources:
  LT:
    Type: AWS::EC2::LaunchTemplate
    Properties:
      LaunchTemplateData:
        ImageId: ami-12c6146b
  Group:
    Type: AWS::AutoScaling::AutoScalingGroup
    Properties:
      AutoScalingGroupName: %s
      MinSize: "0"
      MaxSize: "4"
      DesiredCapacity: "%d"
      %s
      LaunchTemplate:
        LaunchTemplateId: !Ref LT
        Version: !GetAtt LT.LatestVersionNumber
`

func TestAFailedUpdateRollsTheStackBack(t *testing.T) {
	t.Parallel()
	e := world(t)
	c := newClients(t, e)
	ctx := context.Background()
	cfn := cloudformation.NewFromConfig(e.AWSConfig(t))
	stack := emulator.UniqueName(t, "runnerfleet-rb")
	group := emulator.UniqueName(t, "runnerfleet-asg")
	good := "AvailabilityZones: [us-east-1a]"
	bad := "VPCZoneIdentifier: [subnet-00000000doesnotexist]"
	if _, err := cfn.CreateStack(ctx, &cloudformation.CreateStackInput{
		StackName: aws.String(stack), TemplateBody: aws.String(fmt.Sprintf(rollbackStack, group, 1, good)),
	}); err != nil {
		t.Fatalf("CreateStack: %v", err)
	}
	status := func() (cfntypes.StackStatus, string) {
		out, err := cfn.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(stack)})
		if err != nil || len(out.Stacks) != 1 {
			t.Fatalf("DescribeStacks: %v", err)
		}
		return out.Stacks[0].StackStatus, aws.ToString(out.Stacks[0].StackStatusReason)
	}

	// UpdateStack: the call succeeds (AWS updates asynchronously); the stack rolls back.
	if _, err := cfn.UpdateStack(ctx, &cloudformation.UpdateStackInput{
		StackName: aws.String(stack), TemplateBody: aws.String(fmt.Sprintf(rollbackStack, group, 2, bad)),
	}); err != nil {
		t.Fatalf("UpdateStack: %v", err)
	}
	if st, reason := status(); st != cfntypes.StackStatusUpdateRollbackComplete || reason == "" {
		t.Fatalf("after a failing update the stack is %s (%q), want UPDATE_ROLLBACK_COMPLETE with a reason", st, reason)
	}
	if n := len(groupInstances(t, c, group)); n != 1 {
		t.Fatalf("after the rollback the group has %d instances, want 1", n)
	}

	// The same through a change set, which ends EXECUTE_FAILED.
	if _, err := cfn.CreateChangeSet(ctx, &cloudformation.CreateChangeSetInput{
		StackName: aws.String(stack), ChangeSetName: aws.String(emulator.UniqueName(t, "bad")),
		TemplateBody: aws.String(fmt.Sprintf(rollbackStack, group, 3, bad)),
	}); err != nil {
		t.Fatalf("CreateChangeSet: %v", err)
	}
	list, err := cfn.ListChangeSets(ctx, &cloudformation.ListChangeSetsInput{StackName: aws.String(stack)})
	if err != nil || len(list.Summaries) == 0 {
		t.Fatalf("ListChangeSets: %v", err)
	}
	id := list.Summaries[len(list.Summaries)-1].ChangeSetId
	if _, err := cfn.ExecuteChangeSet(ctx, &cloudformation.ExecuteChangeSetInput{StackName: aws.String(stack), ChangeSetName: id}); err != nil {
		t.Fatalf("ExecuteChangeSet: %v", err)
	}
	cs, err := cfn.DescribeChangeSet(ctx, &cloudformation.DescribeChangeSetInput{StackName: aws.String(stack), ChangeSetName: id})
	if err != nil {
		t.Fatalf("DescribeChangeSet: %v", err)
	}
	if cs.ExecutionStatus != cfntypes.ExecutionStatusExecuteFailed {
		t.Fatalf("failed change set execution status = %s, want EXECUTE_FAILED", cs.ExecutionStatus)
	}
	if st, _ := status(); st != cfntypes.StackStatusUpdateRollbackComplete {
		t.Fatalf("after a failing change set the stack is %s, want UPDATE_ROLLBACK_COMPLETE", st)
	}
	if n := len(groupInstances(t, c, group)); n != 1 {
		t.Fatalf("after the rollback the group has %d instances, want 1", n)
	}
}
