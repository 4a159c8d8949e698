package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/runnerfleet/runnerfleet/deploy/runner"
	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/infra/config"
	"github.com/runnerfleet/runnerfleet/infra/sqs"
	"github.com/runnerfleet/runnerfleet/integration/deploy"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

// checkFree refuses ports something listens on, naming them, before anything starts.
func checkFree(ports ...int) error {
	var errs []error
	for _, p := range ports {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			errs = append(errs, fmt.Errorf("port 127.0.0.1:%d is taken (a `make emulator` or another demo running?): stop it, or run the demo with --free-ports", p))
			continue
		}
		_ = l.Close()
	}
	return errors.Join(errs...)
}

type clients struct {
	sqs *awssqs.Client
	eb  *eventbridge.Client
	asg *autoscaling.Client
	ec2 *ec2.Client
	ssm *ssm.Client
	cfn *cloudformation.Client
}

const account = "123456789012"

func queueARN(name string) string {
	return "arn:aws:sqs:" + emulator.Region + ":" + account + ":" + name
}

// createQueues creates the worker's queues (lifecycle, control, and steps when named) with their
// DLQs (redrive after 5 receives) and returns the URL of each by name.
func (c clients) createQueues(ctx context.Context, q config.Queues) (map[string]string, error) {
	urls := map[string]string{}
	for _, queue := range q.Consumed() {
		for _, name := range []string{queue.DeadLetter, queue.Name} {
			attrs := map[string]string{"VisibilityTimeout": fmt.Sprint(int(queue.VisibilityTimeout / time.Second))}
			if sqs.IsFIFO(queue.Name) {
				attrs["FifoQueue"], attrs["ContentBasedDeduplication"] = "true", "true"
			}
			if name == queue.Name {
				attrs["RedrivePolicy"] = fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"5"}`, queueARN(queue.DeadLetter))
			}
			out, err := c.sqs.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
			if err != nil {
				return nil, fmt.Errorf("creating queue %s: %w", name, err)
			}
			urls[name] = aws.ToString(out.QueueUrl)
		}
	}
	return urls, nil
}

// createLifecycleRule makes the worker stack's instance-events rule in small: lifecycle actions,
// spot and rebalance notices and state changes to the lifecycle queue. (The fleet's own rules —
// its tick, token and stack events to the control queue — come with its stack.)
func (c clients) createLifecycleRule(ctx context.Context, q config.Queues) error {
	pattern, _ := json.Marshal(map[string]any{
		"source": []string{"aws.autoscaling", "aws.ec2"},
		"detail-type": []string{"EC2 Instance-launch Lifecycle Action", "EC2 Instance-terminate Lifecycle Action",
			"EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation", "EC2 Instance State-change Notification"},
	})
	name := "runnerfleet-demo-lifecycle"
	if _, err := c.eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String(name), EventPattern: aws.String(string(pattern))}); err != nil {
		return fmt.Errorf("creating rule %s: %w", name, err)
	}
	if _, err := c.eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(name), Targets: []ebtypes.Target{{
		Id: aws.String("queue"), Arn: aws.String(queueARN(q.Lifecycle.Name)),
	}}}); err != nil {
		return fmt.Errorf("targeting rule %s at %s: %w", name, q.Lifecycle.Name, err)
	}
	return nil
}

// provisionFleet creates the fleet's stack from the runner template (deploy/runner/runner.yaml)
// as an operator would — the token parameter first, then the stack — and checks that its outputs
// are what the worker's config says.
func (c clients) provisionFleet(ctx context.Context, f fleet.Settings, q config.Queues) (map[string]string, error) {
	if _, err := c.ssm.PutParameter(ctx, &ssm.PutParameterInput{
		Name: aws.String(f.TokenParameter), Value: aws.String("glrt-demo-placeholder"), Type: ssmtypes.ParameterTypeSecureString, Overwrite: aws.Bool(true),
	}); err != nil {
		return nil, fmt.Errorf("putting the token parameter %s: %w", f.TokenParameter, err)
	}
	network, err := deploy.Discover(ctx, c.ec2)
	if err != nil {
		return nil, err
	}
	spec := deploy.Fleet{
		Stack: f.StackName, Name: f.Name, ControlQueueArn: queueARN(q.Control.Name), TokenParameter: f.TokenParameter,
		Min: 1, Max: f.Policy.MaxInstances, Desired: 1, HeartbeatTimeout: f.Drain.HookTimeout,
		// The launch gate (issue 7) completes each new instance's launch action once its runner's
		// job requests succeed; the hook's default result, ABANDON, would end it otherwise.
		LaunchHook: true, LaunchHookTimeout: launchHookTimeout,
	}
	out, err := deploy.CreateStack(ctx, c.cfn, f.StackName, string(runner.Template), spec.Parameters(network))
	if err != nil {
		return nil, err
	}
	var errs []error
	want := map[string]string{
		"GroupName": f.GroupName, "FleetName": f.Name, "StopIntakeDocument": f.Documents.StopIntake,
		"StatusDocument": f.Documents.Status, "UnregisterDocument": f.Documents.Unregister,
		"HookTimeout": fmt.Sprint(int(f.Drain.HookTimeout / time.Second)),
	}
	for k, v := range want {
		if out[k] != v {
			errs = append(errs, fmt.Errorf("stack output %s is %q, the config says %q", k, out[k], v))
		}
	}
	if !strings.HasSuffix(out["TickRuleArn"], "/"+f.TickRule) && out["TickRuleArn"] != f.TickRule {
		errs = append(errs, fmt.Errorf("stack output TickRuleArn is %q, the config's tick_rule %q", out["TickRuleArn"], f.TickRule))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configs/local.yaml does not match the fleet stack %s: %w", f.StackName, err)
	}
	return out, nil
}

func (c clients) group(ctx context.Context, group string) (astypes.AutoScalingGroup, bool) {
	out, err := c.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
	if err != nil || len(out.AutoScalingGroups) == 0 {
		return astypes.AutoScalingGroup{}, false
	}
	return out.AutoScalingGroups[0], true
}

func (c clients) inService(ctx context.Context, group string) []string {
	g, _ := c.group(ctx, group)
	var ids []string
	for _, i := range g.Instances {
		if i.LifecycleState == astypes.LifecycleStateInService {
			ids = append(ids, aws.ToString(i.InstanceId))
		}
	}
	sort.Strings(ids)
	return ids
}

// dlqDepth is the number of messages in the worker's DLQs.
func (c clients) dlqDepth(ctx context.Context, urls map[string]string, q config.Queues) (int, error) {
	total := 0
	for _, queue := range q.Consumed() {
		dlq := queue.DeadLetter
		out, err := c.sqs.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{QueueUrl: aws.String(urls[dlq]),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages}})
		if err != nil {
			return 0, fmt.Errorf("reading the depth of %s: %w", dlq, err)
		}
		var n int
		fmt.Sscan(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)], &n)
		total += n
	}
	return total, nil
}

func unknownEvent() string {
	return fmt.Sprintf(`{"version":"0","id":"demo-unknown-%d","detail-type":"AWS API Call via CloudTrail","source":"aws.autoscaling","account":"123456789012","time":%q,"region":"us-east-1","resources":[],"detail":{}}`,
		time.Now().UnixNano(), time.Now().UTC().Format(time.RFC3339))
}
