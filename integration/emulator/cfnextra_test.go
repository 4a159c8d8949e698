package emulator_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/runnerfleet/runnerfleet/infra/aws/cwmetrics"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

const policyAlarmStack = `
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: %[1]s
  Policy:
    Type: AWS::SQS::QueuePolicy
    Properties:
      Queues: [!Ref Queue]
      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Sid: DenyInsecureTransport
            Effect: Deny
            Principal: "*"
            Action: sqs:*
            Resource: !GetAtt Queue.Arn
            Condition: {Bool: {aws:SecureTransport: "false"}}
  Depth:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmName: %[1]s-depth
      Namespace: AWS/SQS
      MetricName: ApproximateNumberOfMessagesVisible
      Dimensions: [{Name: QueueName, Value: !GetAtt Queue.QueueName}]
      Statistic: Maximum
      Period: 60
      EvaluationPeriods: 1
      Threshold: 0
      ComparisonOperator: GreaterThanThreshold
  Insights:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmName: %[1]s-insights
      Metrics:
        - Id: oldest
          Expression: SELECT MAX(OldestDrainAge) FROM SCHEMA(RunnerFleet, Fleet)
          Period: 300
          ReturnData: true
      EvaluationPeriods: 1
      Threshold: 3600
      ComparisonOperator: GreaterThanThreshold
`

func TestStacksCreateQueuePoliciesAndAlarms(t *testing.T) {
	t.Parallel()
	e := world(t)
	c := newClients(t, e)
	ctx := context.Background()
	cfg := e.AWSConfig(t)
	cfn := cloudformation.NewFromConfig(cfg)
	name := emulator.UniqueName(t, "runnerfleet-pa")
	if _, err := cfn.CreateStack(ctx, &cloudformation.CreateStackInput{
		StackName: aws.String(name), TemplateBody: aws.String(fmt.Sprintf(policyAlarmStack, name)),
	}); err != nil {
		t.Fatalf("CreateStack: %v", err)
	}
	url, err := c.sqs.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatalf("GetQueueUrl: %v", err)
	}
	attrs, err := c.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: url.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNamePolicy},
	})
	if err != nil {
		t.Fatalf("GetQueueAttributes: %v", err)
	}
	if p := attrs.Attributes["Policy"]; !strings.Contains(p, "DenyInsecureTransport") {
		t.Fatalf("queue policy = %q, want the stack's policy", p)
	}
	cw := cwmetrics.NewClient(cfg)
	alarms, err := cw.DescribeAlarms(ctx, &cloudwatch.DescribeAlarmsInput{AlarmNamePrefix: aws.String(name)})
	if err != nil {
		t.Fatalf("DescribeAlarms: %v", err)
	}
	got := map[string]bool{}
	for _, a := range alarms.MetricAlarms {
		got[aws.ToString(a.AlarmName)] = true
	}
	if !got[name+"-depth"] || !got[name+"-insights"] {
		t.Fatalf("alarms = %v, want %s-depth and %s-insights", got, name, name)
	}
	if _, err := cfn.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: aws.String(name)}); err != nil {
		t.Fatalf("DeleteStack: %v", err)
	}
	alarms, err = cw.DescribeAlarms(ctx, &cloudwatch.DescribeAlarmsInput{AlarmNamePrefix: aws.String(name)})
	if err != nil || len(alarms.MetricAlarms) != 0 {
		t.Fatalf("after DeleteStack: alarms %v, err %v; want none", alarms.MetricAlarms, err)
	}
}
