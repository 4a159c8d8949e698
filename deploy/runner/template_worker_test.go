package runner

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestWorkerStackShape(t *testing.T) {
	m := loadTemplate(t, workerPath)

	// Queues: SSE-SQS (never aws/sqs KMS: EventBridge cannot deliver there), DLQs with a receive limit.
	for id, q := range resources(m, "AWS::SQS::Queue") {
		p := props(q)
		if p["SqsManagedSseEnabled"] != true || p["KmsMasterKeyId"] != nil {
			t.Errorf("%s: want SqsManagedSseEnabled and no KMS key", id)
		}
		if !strings.HasPrefix(path(p, "QueueName", "Fn::Sub").(string), "runnerfleet-") {
			t.Errorf("%s: name %v does not start with runnerfleet-", id, p["QueueName"])
		}
	}
	for id, dlq := range map[string]string{"LifecycleQueue": "LifecycleDeadLetterQueue", "ControlQueue": "ControlDeadLetterQueue", "StepsQueue": "StepsDeadLetterQueue"} {
		p := props(resource(t, m, id))
		if path(p, "RedrivePolicy", "deadLetterTargetArn", "Fn::GetAtt", "0") != dlq || path(p, "RedrivePolicy", "maxReceiveCount") == nil {
			t.Errorf("%s: redrive policy %v", id, p["RedrivePolicy"])
		}
	}
	c := props(resource(t, m, "ControlQueue"))
	if c["FifoQueue"] != true || c["ContentBasedDeduplication"] != true {
		t.Error("ControlQueue: want FIFO with content-based deduplication")
	}

	// EventBridge may send only from our rules, in our account.
	allow := statementsOf(t, m, "EventQueuesPolicy", "EventBridgeFromOurRulesOnly")
	if path(allow, "Principal", "Service") != "events.amazonaws.com" || path(allow, "Action") != "sqs:SendMessage" ||
		path(allow, "Condition", "StringEquals", "aws:SourceAccount", "Ref") != "AWS::AccountId" ||
		!strings.HasSuffix(path(allow, "Condition", "ArnLike", "aws:SourceArn", "Fn::Sub").(string), ":rule/runnerfleet-*") {
		t.Errorf("EventBridge statement %v", allow)
	}

	// Rules onto the lifecycle queue.
	want := map[string][]string{
		"LifecycleActionRule": {"EC2 Instance-terminate Lifecycle Action", "EC2 Instance-launch Lifecycle Action"},
		"SpotRule":            {"EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation"},
		"StateChangeRule":     {"EC2 Instance State-change Notification"},
	}
	for id, types := range want {
		p := props(resource(t, m, id))
		got := list(path(p, "EventPattern", "detail-type"))
		if len(got) != len(types) {
			t.Errorf("%s: detail-types %v, want %v", id, got, types)
		}
		for i, dt := range types {
			if i < len(got) && got[i] != dt {
				t.Errorf("%s: detail-type %v, want %s", id, got[i], dt)
			}
		}
		if id == "LifecycleActionRule" && path(p, "EventPattern", "detail", "AutoScalingGroupName", "0", "prefix", "Ref") != "FleetGroupPrefix" {
			// One worker stack per environment in a region takes only its own groups' actions.
			t.Errorf("%s: groups %v, want those beginning with FleetGroupPrefix", id, path(p, "EventPattern", "detail", "AutoScalingGroupName"))
		}
		if path(p, "Targets", "0", "Arn", "Fn::GetAtt", "0") != "LifecycleQueue" {
			t.Errorf("%s: target %v", id, path(p, "Targets"))
		}
	}

	// State table: on-demand, pk/sk strings, TTL on expires_at.
	tb := props(resource(t, m, "StateTable"))
	if tb["BillingMode"] != "PAY_PER_REQUEST" || path(tb, "TimeToLiveSpecification", "AttributeName") != "expires_at" ||
		path(tb, "KeySchema", "0", "AttributeName") != "pk" || path(tb, "KeySchema", "1", "AttributeName") != "sk" ||
		path(tb, "AttributeDefinitions", "0", "AttributeType") != "S" || path(tb, "AttributeDefinitions", "1", "AttributeType") != "S" {
		t.Errorf("StateTable %v", tb)
	}

	// ECS: ECS's stop timeout outlasts the worker's own shutdown budget; a health check; logs.
	ctr := path(props(resource(t, m, "TaskDefinition")), "ContainerDefinitions", "0").(map[string]any)
	stop, _ := ctr["StopTimeout"].(int64)
	var budget time.Duration
	for _, e := range list(ctr["Environment"]) {
		if path(e, "Name") == "RUNNERFLEET_STOP_TIMEOUT" {
			budget, _ = time.ParseDuration(path(e, "Value").(string))
		}
	}
	if budget == 0 || time.Duration(stop)*time.Second <= budget || stop > 120 {
		t.Errorf("StopTimeout %ds vs RUNNERFLEET_STOP_TIMEOUT %v: want the budget below ECS's timeout (≤ 120 s on Fargate)", stop, budget)
	}
	if path(ctr, "HealthCheck", "Command", "1") != "/usr/local/bin/probe" || path(ctr, "LogConfiguration", "LogDriver") != "awslogs" {
		t.Errorf("container health check %v, logs %v", ctr["HealthCheck"], ctr["LogConfiguration"])
	}
	if path(ctr, "User") != "65532:65532" {
		t.Errorf("container user %v, want distroless nonroot", ctr["User"])
	}

	// The task passes only the stack role, only to CloudFormation; change sets only with it.
	pass := statementBySid(t, m, "TaskRole", "PassOnlyTheStackRole")
	if path(pass, "Resource", "Fn::GetAtt", "0") != "StackRole" || path(pass, "Condition", "StringEquals", "iam:PassedToService") != "cloudformation.amazonaws.com" {
		t.Errorf("PassRole statement %v", pass)
	}
	cs := statementBySid(t, m, "TaskRole", "FleetStacks")
	if path(cs, "Condition", "StringEquals", "cloudformation:RoleArn", "Fn::GetAtt", "0") != "StackRole" {
		t.Errorf("change sets not bound to the stack role: %v", cs)
	}
	// A condition on a key a request never carries denies it: ExecuteChangeSet has no RoleArn
	// parameter, so it must not sit in the statement conditioned on cloudformation:RoleArn.
	for _, st := range statements(path(props(resource(t, m, "TaskRole")), "Policies", "0", "PolicyDocument")) {
		if _, ok := path(st, "Condition", "StringEquals", "cloudformation:RoleArn").(map[string]any); ok && slices.Contains(list(st["Action"]), any("cloudformation:ExecuteChangeSet")) {
			t.Errorf("ExecuteChangeSet conditioned on cloudformation:RoleArn (never in its request): %v", st)
		}
	}
	// Only the worker's own change sets (runnerfleet-…) are executed, not one an administrator
	// prepared on a fleet stack.
	if ex := statementBySid(t, m, "TaskRole", "FleetStacksExecute"); path(ex, "Action") != "cloudformation:ExecuteChangeSet" ||
		path(ex, "Condition", "StringLike", "cloudformation:ChangeSetName") == nil {
		t.Errorf("ExecuteChangeSet statement %v", ex)
	}
	// The task role holds no IAM, EC2 or Events writes of its own.
	for _, st := range statements(path(props(resource(t, m, "TaskRole")), "Policies", "0", "PolicyDocument")) {
		for _, a := range list(st["Action"]) {
			s := a.(string)
			if (strings.HasPrefix(s, "iam:") && s != "iam:PassRole") || (strings.HasPrefix(s, "ec2:") && !readOnly(s)) || strings.HasPrefix(s, "events:") {
				t.Errorf("task role: %s", s)
			}
		}
	}

	// Runner instance roles stay within the boundary: it reads token parameters under the prefix only.
	b := statements(path(props(resource(t, m, "RunnerInstanceBoundary")), "PolicyDocument"))
	for _, st := range b {
		for _, a := range list(st["Action"]) {
			if secretParameterReads.MatchString(a.(string)) && !strings.HasSuffix(path(st, "Resource", "Fn::Sub").(string), ":parameter${TokenParameterPrefix}*") {
				t.Errorf("boundary reads parameters %v", st["Resource"])
			}
		}
	}
	if path(statementBySid(t, m, "StackRole", "InstanceRolesWithinTheBoundary"), "Condition", "StringEquals", "iam:PermissionsBoundary", "Ref") != "RunnerInstanceBoundary" {
		t.Error("StackRole: role writes not bound to RunnerInstanceBoundary")
	}

	// Alarms named in the issue.
	alarms := resources(m, "AWS::CloudWatch::Alarm")
	for _, id := range []string{"LifecycleDeadLetterAlarm", "ControlDeadLetterAlarm", "OldestDrainAlarm", "DrainDeadlineAlarm", "ScrapeFailuresAlarm", "WorkerDownAlarm"} {
		if alarms[id] == nil {
			t.Errorf("no alarm %s", id)
		}
	}
	if len(resources(m, "AWS::CloudWatch::Dashboard")) != 1 {
		t.Error("no dashboard")
	}
}

func statementsOf(t *testing.T, m tmpl, policy, sid string) map[string]any {
	t.Helper()
	for _, st := range statements(props(resource(t, m, policy))["PolicyDocument"]) {
		if st["Sid"] == sid {
			return st
		}
	}
	t.Fatalf("no statement %s in %s", sid, policy)
	return nil
}
