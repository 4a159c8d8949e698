package emulator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

func TestRateRuleFiresScheduledEventOnTheTickPeriod(t *testing.T) {
	t.Parallel()
	e := world(t)
	c := newClients(t, e)
	url := ruleQueue(t, c, &eventbridge.PutRuleInput{ScheduleExpression: aws.String("rate(1 minute)")})
	rule, err := c.eb.ListRules(context.Background(), &eventbridge.ListRulesInput{})
	if err != nil {
		t.Fatalf("ListRules: %v", err)
	}
	arns := map[string]bool{}
	for _, r := range rule.Rules {
		arns[aws.ToString(r.Arn)] = true
	}
	ev := receiveEvent(t, c, url, func(ev event) bool { return ev.DetailType == "Scheduled Event" })
	if ev.Source != "aws.events" || len(ev.Resources) != 1 || !arns[ev.Resources[0]] {
		t.Fatalf("scheduled event = %+v, want source aws.events and resources[0] a rule ARN", ev)
	}
}

func TestScheduleOnlyRuleGetsNoServiceEvents(t *testing.T) {
	t.Parallel()
	e := world(t)
	c := newClients(t, e)
	ctx := context.Background()
	url := ruleQueue(t, c, &eventbridge.PutRuleInput{ScheduleExpression: aws.String("rate(1 minute)")})
	ssmc := ssm.NewFromConfig(e.AWSConfig(t))
	if _, err := ssmc.PutParameter(ctx, &ssm.PutParameterInput{
		Name: aws.String("/" + emulator.UniqueName(t, "runnerfleet-p")), Value: aws.String("x"), Type: ssmtypes.ParameterTypeString,
	}); err != nil {
		t.Fatalf("PutParameter: %v", err)
	}
	// The first delivery to a schedule-only rule's queue is its tick, never the parameter event.
	ev := receiveEvent(t, c, url, func(event) bool { return true })
	if ev.DetailType != "Scheduled Event" {
		t.Fatalf("a schedule-only rule received %q", ev.DetailType)
	}
}

func TestPutAndDeleteParameterDeliverParameterStoreChange(t *testing.T) {
	t.Parallel()
	e := world(t)
	c := newClients(t, e)
	ctx := context.Background()
	name := "/runnerfleet/" + emulator.UniqueName(t, "token")
	url := eventQueue(t, c, fmt.Sprintf(`{"source":["aws.ssm"],"detail-type":["Parameter Store Change"],"detail":{"name":[%q]}}`, name))
	ssmc := ssm.NewFromConfig(e.AWSConfig(t))
	for _, overwrite := range []bool{false, true} {
		if _, err := ssmc.PutParameter(ctx, &ssm.PutParameterInput{
			Name: aws.String(name), Value: aws.String("v"), Type: ssmtypes.ParameterTypeSecureString, Overwrite: aws.Bool(overwrite),
		}); err != nil {
			t.Fatalf("PutParameter: %v", err)
		}
	}
	if _, err := ssmc.DeleteParameter(ctx, &ssm.DeleteParameterInput{Name: aws.String(name)}); err != nil {
		t.Fatalf("DeleteParameter: %v", err)
	}
	for _, op := range []string{"Create", "Update", "Delete"} {
		ev := receiveEvent(t, c, url, func(event) bool { return true })
		var d struct{ Operation, Name, Type string }
		if err := json.Unmarshal(ev.Detail, &d); err != nil {
			t.Fatalf("detail: %v", err)
		}
		if d.Operation != op || d.Name != name || d.Type != "SecureString" || ev.Source != "aws.ssm" ||
			len(ev.Resources) != 1 || ev.Resources[0] != "arn:aws:ssm:us-east-1:123456789012:parameter"+name {
			t.Fatalf("event %d = %+v %+v, want operation %s", len(op), ev, d, op)
		}
	}
}

const hookStack = `
Resources:
  LT:
    Type: AWS::EC2::LaunchTemplate
    Properties:
      LaunchTemplateData:
        ImageId: ami-12c6146b
        InstanceType: t3.micro
  Group:
    Type: AWS::AutoScaling::AutoScalingGroup
    Properties:
      MinSize: "0"
      MaxSize: "4"
      DesiredCapacity: "%d"
      AvailabilityZones: [us-east-1a]
      LaunchTemplate:
        LaunchTemplateId: !Ref LT
        Version: !GetAtt LT.LatestVersionNumber
      LifecycleHookSpecificationList:
        - LifecycleHookName: spec-hook
          LifecycleTransition: autoscaling:EC2_INSTANCE_LAUNCHING
          HeartbeatTimeout: 60
          DefaultResult: CONTINUE
  Drain:
    Type: AWS::AutoScaling::LifecycleHook
    Properties:
      AutoScalingGroupName: !Ref Group
      LifecycleTransition: autoscaling:EC2_INSTANCE_TERMINATING
      HeartbeatTimeout: %d
      DefaultResult: CONTINUE
      NotificationMetadata: '{"fleet":"cfn"}'
Outputs:
  GroupName:
    Value: !Ref Group
`

func TestStackLifecycleHooksAndStatusEvents(t *testing.T) {
	t.Parallel()
	e := world(t)
	c := newClients(t, e)
	ctx := context.Background()
	cfn := cloudformation.NewFromConfig(e.AWSConfig(t))
	name := emulator.UniqueName(t, "runnerfleet-stack")
	url := eventQueue(t, c, `{"source":["aws.cloudformation"],"detail-type":["CloudFormation Stack Status Change"]}`)

	out, err := cfn.CreateStack(ctx, &cloudformation.CreateStackInput{
		StackName: aws.String(name), TemplateBody: aws.String(fmt.Sprintf(hookStack, 0, 40)),
	})
	if err != nil {
		t.Fatalf("CreateStack: %v", err)
	}
	stackID := aws.ToString(out.StackId)
	res, err := cfn.DescribeStackResource(ctx, &cloudformation.DescribeStackResourceInput{
		StackName: aws.String(name), LogicalResourceId: aws.String("Group"),
	})
	if err != nil {
		t.Fatalf("DescribeStackResource: %v", err)
	}
	group := aws.ToString(res.StackResourceDetail.PhysicalResourceId)
	hooks := describeHooks(t, c, group)
	drain, ok := hooks["transition:autoscaling:EC2_INSTANCE_TERMINATING"]
	if !ok || aws.ToInt32(drain.HeartbeatTimeout) != 40 || aws.ToString(drain.NotificationMetadata) != `{"fleet":"cfn"}` ||
		aws.ToInt32(drain.GlobalTimeout) != 4000 {
		t.Fatalf("stack group hooks = %+v, want the Drain terminate hook (40 s, metadata, global 4000 s)", hooks)
	}
	if _, ok := hooks["spec-hook"]; !ok {
		t.Fatalf("the group's LifecycleHookSpecificationList hook is missing: %+v", hooks)
	}

	// An update changes the hook in place and keeps the group.
	if _, err := cfn.UpdateStack(ctx, &cloudformation.UpdateStackInput{
		StackName: aws.String(name), TemplateBody: aws.String(fmt.Sprintf(hookStack, 1, 90)),
	}); err != nil {
		t.Fatalf("UpdateStack: %v", err)
	}
	hooks = describeHooks(t, c, group)
	if h := hooks["transition:autoscaling:EC2_INSTANCE_TERMINATING"]; aws.ToInt32(h.HeartbeatTimeout) != 90 {
		t.Fatalf("after the update the drain hook = %+v, want heartbeat 90", h)
	}
	if n := len(groupInstances(t, c, group)); n != 1 {
		t.Fatalf("after the update the group has %d instances, want 1", n)
	}

	var statuses []string
	for _, want := range []string{"CREATE_IN_PROGRESS", "CREATE_COMPLETE", "UPDATE_IN_PROGRESS", "UPDATE_COMPLETE"} {
		ev := receiveEvent(t, c, url, func(ev event) bool {
			var d struct {
				StackID string `json:"stack-id"`
			}
			return json.Unmarshal(ev.Detail, &d) == nil && d.StackID == stackID
		})
		var d struct {
			Status struct {
				Status string `json:"status"`
			} `json:"status-details"`
		}
		if err := json.Unmarshal(ev.Detail, &d); err != nil {
			t.Fatalf("detail: %v", err)
		}
		statuses = append(statuses, d.Status.Status)
		if d.Status.Status != want || len(ev.Resources) != 1 || ev.Resources[0] != stackID {
			t.Fatalf("stack status events so far %v (event %+v), want %s next", statuses, ev, want)
		}
	}
}

type hookView = astypes.LifecycleHook

// describeHooks returns the group's hooks by name, and the first hook of each transition under
// "transition:<transition>" (template hooks get generated names).
func describeHooks(t *testing.T, c clients, group string) map[string]hookView {
	t.Helper()
	out, err := c.asg.DescribeLifecycleHooks(context.Background(), &autoscaling.DescribeLifecycleHooksInput{
		AutoScalingGroupName: aws.String(group),
	})
	if err != nil {
		t.Fatalf("DescribeLifecycleHooks: %v", err)
	}
	m := map[string]hookView{}
	for _, h := range out.LifecycleHooks {
		m[aws.ToString(h.LifecycleHookName)] = h
		key := "transition:" + aws.ToString(h.LifecycleTransition)
		if _, ok := m[key]; !ok {
			m[key] = h
		}
	}
	return m
}

func TestARuleWithAMissingQueueFailsNeitherTheCallNorOtherRules(t *testing.T) {
	t.Parallel()
	e := world(t)
	c := newClients(t, e)
	ctx := context.Background()
	name := "/runnerfleet/" + emulator.UniqueName(t, "p")
	pattern := fmt.Sprintf(`{"source":["aws.ssm"],"detail":{"name":[%q]}}`, name)
	gone := eventQueue(t, c, pattern)
	if _, err := c.sqs.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(gone)}); err != nil {
		t.Fatalf("DeleteQueue: %v", err)
	}
	url := eventQueue(t, c, pattern)
	ssmc := ssm.NewFromConfig(e.AWSConfig(t))
	if _, err := ssmc.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(name), Value: aws.String("v"), Type: ssmtypes.ParameterTypeString}); err != nil {
		t.Fatalf("PutParameter with a rule whose queue is gone: %v", err)
	}
	receiveEvent(t, c, url, func(ev event) bool { return ev.DetailType == "Parameter Store Change" })
	if n := len(logOf(t, e, "event.undelivered", "")); n == 0 {
		t.Fatal("no event.undelivered in the log for the rule whose queue is gone")
	}
}
