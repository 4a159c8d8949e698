package deploy

// The worker stack and runner fleet stacks deployed into the AWS emulator through CloudFormation,
// asserting the resources that result. The emulator (moto) silently skips some resource types;
// skippedTypes lists them and README.md (Running on AWS) says so.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"go.yaml.in/yaml/v3"

	"github.com/runnerfleet/runnerfleet/deploy/runner"
	"github.com/runnerfleet/runnerfleet/infra/aws/cwmetrics"
	"github.com/runnerfleet/runnerfleet/infra/aws/state"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

// skippedTypes are the resource types moto 5.2.1's CloudFormation accepts in a template but does
// not create (it logs a warning and moves on). README.md (Running on AWS) lists them; the test fails when a
// type goes missing that is not listed here.
var skippedTypes = map[string]bool{
	"AWS::SQS::QueuePolicy":  true,
	"AWS::CloudWatch::Alarm": true,
}

const (
	workerStack = "wk1"
	fleetStack  = "fleet1"
	fleetName   = "linux-docker"
	tokenParam  = "/runnerfleet/fleet1/token"
)

type clients struct {
	cfn *cloudformation.Client
	sqs *sqs.Client
	evb *eventbridge.Client
	ddb *dynamodb.Client
	asg *autoscaling.Client
	ec2 *ec2.Client
	ssm *ssm.Client
}

func TestStacksDeployIntoTheEmulator(t *testing.T) {
	// Scheduled rules fire every second, so a tick arrives while the test looks.
	e := emulator.Start(t, emulator.Options{TickPeriod: time.Second})
	cfg := e.AWSConfig(t)
	c := clients{
		cfn: cloudformation.NewFromConfig(cfg), sqs: sqs.NewFromConfig(cfg), evb: eventbridge.NewFromConfig(cfg),
		ddb: dynamodb.NewFromConfig(cfg), asg: autoscaling.NewFromConfig(cfg), ec2: ec2.NewFromConfig(cfg),
		ssm: ssm.NewFromConfig(cfg),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("emulator output:\n%s", tail(e.Output(), 6000))
		}
	})

	net, err := Discover(ctx, c.ec2)
	if err != nil {
		t.Fatal(err)
	}
	workerBody, err := WorkerTemplate()
	if err != nil {
		t.Fatal(err)
	}
	wout, err := CreateStack(ctx, c.cfn, workerStack, workerBody, WorkerParameters(net,
		"fleets:\n  - name: "+fleetName+"\n    group: runnerfleet-"+fleetStack+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	fout, err := CreateStack(ctx, c.cfn, fleetStack, string(runner.Template), Fleet{
		Stack: fleetStack, Name: fleetName, ControlQueueArn: wout["ControlQueueArn"],
		WorkerSecurityGroupID: wout["TaskSecurityGroupId"], InstanceRoleBoundaryArn: wout["InstanceRoleBoundaryArn"],
		TokenParameter: tokenParam, Desired: 1, LaunchHook: true,
	}.Parameters(net))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("skipped types are the known ones", func(t *testing.T) {
		for _, stack := range []string{workerStack, fleetStack} {
			checkSkipped(ctx, t, c.cfn, stack)
		}
	})
	t.Run("roles and retention", func(t *testing.T) { checkRolesAndRetention(ctx, t, c.cfn) })
	t.Run("queues", func(t *testing.T) { checkQueues(ctx, t, c.sqs, wout) })
	t.Run("rules", func(t *testing.T) { checkRules(ctx, t, c.evb, wout, fout) })
	t.Run("table", func(t *testing.T) { checkTable(ctx, t, c.ddb) })
	t.Run("group and hooks", func(t *testing.T) { checkGroup(ctx, t, c.asg, c.ec2, fout) })
	t.Run("documents and config", func(t *testing.T) { checkSSM(ctx, t, c.ssm, fout, wout) })
	t.Run("events reach the queues", func(t *testing.T) { checkDelivery(ctx, t, c, wout, fout) })
	t.Run("short hooks and an update", func(t *testing.T) { checkSecondFleet(ctx, t, c, net, wout) })
	t.Run("the publisher's environment", func(t *testing.T) { checkPublisherEnvironment(ctx, t, e, wout, fout) })
	t.Run("the worker-errors alarm", func(t *testing.T) { checkWorkerErrorsAlarm(ctx, t, cwmetrics.NewClient(cfg)) })
}

// checkWorkerErrorsAlarm: the worker stack's alarm on its own ERROR lines reads the metric its
// log group's metric filter makes, in the stack's own namespace (two worker stacks in one account
// do not share it). The filter itself is checked by "skipped types are the known ones".
func checkWorkerErrorsAlarm(ctx context.Context, t *testing.T, api *cloudwatch.Client) {
	name := "runnerfleet-" + workerStack + "-worker-errors"
	out, err := api.DescribeAlarms(ctx, &cloudwatch.DescribeAlarmsInput{AlarmNames: []string{name}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.MetricAlarms) != 1 {
		t.Fatalf("alarm %s: %d found, want 1", name, len(out.MetricAlarms))
	}
	a := out.MetricAlarms[0]
	if aws.ToString(a.Namespace) != "RunnerFleet/"+workerStack || aws.ToString(a.MetricName) != "WorkerErrors" ||
		aws.ToInt32(a.EvaluationPeriods) != 3 || aws.ToFloat64(a.Threshold) != 0 {
		t.Errorf("alarm %s: namespace %q, metric %q, %d periods, threshold %g; want RunnerFleet/%s, WorkerErrors, 3, 0",
			name, aws.ToString(a.Namespace), aws.ToString(a.MetricName), aws.ToInt32(a.EvaluationPeriods), aws.ToFloat64(a.Threshold), workerStack)
	}
}

// A second fleet as tests and the demo make them: a terminate hook below AWS's 30 s minimum, no
// launch hook; then a stack update that changes the instance type only.
func checkSecondFleet(ctx context.Context, t *testing.T, c clients, net Network, wout map[string]string) {
	f := Fleet{Stack: "fleet2", Name: "arm", ControlQueueArn: wout["ControlQueueArn"], TokenParameter: "/runnerfleet/fleet2/token",
		Min: 1, Max: 3, Desired: 2, HeartbeatTimeout: 5 * time.Second}
	params := f.Parameters(net)
	if _, err := CreateStack(ctx, c.cfn, f.Stack, string(runner.Template), params); err != nil {
		t.Fatal(err)
	}
	n := runner.NamesFor(f.Stack)
	hooks, err := c.asg.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String(n.Group)})
	if err != nil {
		t.Fatal(err)
	}
	if len(hooks.LifecycleHooks) != 1 || aws.ToString(hooks.LifecycleHooks[0].LifecycleHookName) != runner.TerminateHookName ||
		aws.ToInt32(hooks.LifecycleHooks[0].HeartbeatTimeout) != 5 {
		t.Errorf("hooks %+v, want only the terminate hook with 5 s", hooks.LifecycleHooks)
	}
	if got := inService(ctx, t, c.asg, n.Group); got != 2 {
		t.Errorf("%d instances, want 2", got)
	}

	var keep []string
	for k := range params {
		keep = append(keep, k)
	}
	keep = append(keep, "InstanceType")
	if _, err := UpdateStack(ctx, c.cfn, f.Stack, map[string]string{"InstanceType": "m7g.large"}, keep); err != nil {
		t.Fatal(err)
	}
	v, err := c.ec2.DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{
		LaunchTemplateName: aws.String(n.LaunchTemplate), Versions: []string{"$Latest"},
	})
	if err != nil || len(v.LaunchTemplateVersions) == 0 {
		t.Fatalf("launch template: %v", err)
	}
	latest := v.LaunchTemplateVersions[0]
	if latest.LaunchTemplateData.InstanceType != "m7g.large" || aws.ToInt64(latest.VersionNumber) < 2 {
		t.Errorf("latest launch template version %d has %s, want a new version with m7g.large",
			aws.ToInt64(latest.VersionNumber), latest.LaunchTemplateData.InstanceType)
	}
	g, err := c.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{n.Group}})
	if err != nil || len(g.AutoScalingGroups) != 1 {
		t.Fatalf("group after the update: %v", err)
	}
	if lt := g.AutoScalingGroups[0].LaunchTemplate; lt == nil || aws.ToString(lt.Version) != itoa(int32(aws.ToInt64(latest.VersionNumber))) {
		t.Errorf("group's launch template %+v, want version %d", lt, aws.ToInt64(latest.VersionNumber))
	}
	// Updated in place: same instances, still protected from scale-in.
	if got := inService(ctx, t, c.asg, n.Group); got != 2 {
		t.Errorf("%d instances after the update, want the same 2", got)
	}
}

func inService(ctx context.Context, t *testing.T, api *autoscaling.Client, group string) int {
	t.Helper()
	g, err := api.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
	if err != nil || len(g.AutoScalingGroups) != 1 {
		t.Fatalf("group %s: %v", group, err)
	}
	n := 0
	for _, i := range g.AutoScalingGroups[0].Instances {
		if !aws.ToBool(i.ProtectedFromScaleIn) {
			t.Errorf("instance %s not protected from scale-in", aws.ToString(i.InstanceId))
		}
		n++
	}
	return n
}

func checkSkipped(ctx context.Context, t *testing.T, api *cloudformation.Client, stack string) {
	tmpl, err := api.GetTemplate(ctx, &cloudformation.GetTemplateInput{StackName: aws.String(stack)})
	if err != nil {
		t.Fatal(err)
	}
	declared := declaredTypes(t, aws.ToString(tmpl.TemplateBody))
	res, err := api.DescribeStackResources(ctx, &cloudformation.DescribeStackResourcesInput{StackName: aws.String(stack)})
	if err != nil {
		t.Fatal(err)
	}
	created := map[string]bool{}
	for _, r := range res.StackResources {
		created[aws.ToString(r.LogicalResourceId)] = true
	}
	var skipped []string
	for id, typ := range declared {
		if created[id] {
			continue
		}
		skipped = append(skipped, id+" ("+typ+")")
		if !skippedTypes[typ] {
			t.Errorf("stack %s: %s of type %s was not created; if the emulator skips this type, list it in skippedTypes and README.md (Running on AWS)", stack, id, typ)
		}
	}
	sort.Strings(skipped)
	t.Logf("stack %s: the emulator skipped %v", stack, skipped)
}

// declaredTypes returns the template's unconditional resources by logical id.
func declaredTypes(t *testing.T, body string) map[string]string {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(body), &doc); err != nil || len(doc.Content) != 1 {
		t.Fatalf("parsing the template: %v", err)
	}
	out := map[string]string{}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "Resources" {
			continue
		}
		rs := root.Content[i+1]
		for j := 0; j+1 < len(rs.Content); j += 2 {
			var typ, cond string
			r := rs.Content[j+1]
			for k := 0; k+1 < len(r.Content); k += 2 {
				switch r.Content[k].Value {
				case "Type":
					typ = r.Content[k+1].Value
				case "Condition":
					cond = r.Content[k+1].Value
				}
			}
			if cond == "" {
				out[rs.Content[j].Value] = typ
			}
		}
	}
	if len(out) < 5 {
		t.Fatalf("found only %d resources in the template", len(out))
	}
	return out
}

// checkRolesAndRetention reads the templates the deployed stacks hold (the emulator evaluates no
// IAM, README.md (Running on AWS)): the worker stack's CloudFormation service role may tag what the
// fleet's launch template tags on launch, only within RunInstances; the task role touches only
// change sets the worker named; it may read launch templates (a group on $Latest or $Default);
// and no resource with a fixed name is retained when the stack's first create rolls back.
func checkRolesAndRetention(ctx context.Context, t *testing.T, api *cloudformation.Client) {
	checkTemplatePolicies(t, stackTemplate(ctx, t, api, workerStack), stackTemplate(ctx, t, api, fleetStack))
}

// checkTemplatePolicies is checkRolesAndRetention on the decoded worker and fleet templates.
func checkTemplatePolicies(t *testing.T, worker, fleet map[string]any) {
	stackRole, taskRole := policyStatements(t, worker, "StackRole"), policyStatements(t, worker, "TaskRole")

	// Auto Scaling checks that whoever creates or updates a group may launch its launch template:
	// RunInstances, passing the instance role, and tagging each resource type it tags on launch.
	var tagged []string
	for _, ts := range listOf(walk(fleet, "Resources", "LaunchTemplate", "Properties", "LaunchTemplateData", "TagSpecifications")) {
		if rt, _ := walk(ts, "ResourceType").(string); rt != "" {
			tagged = append(tagged, rt)
		}
	}
	if len(tagged) == 0 {
		t.Error("the fleet's launch template tags nothing on launch; this check expects instance and volume")
	}
	for _, rt := range tagged {
		found := false
		for _, st := range allowing(stackRole, "ec2:CreateTags") {
			if walk(st, "Condition", "StringEquals", "ec2:CreateAction") != "RunInstances" {
				continue
			}
			for _, r := range listOf(st["Resource"]) {
				found = found || strings.HasSuffix(fmt.Sprint(r), ":"+rt+"/*")
			}
		}
		if !found {
			t.Errorf("StackRole: no ec2:CreateTags on %s/* with ec2:CreateAction RunInstances; the launch template tags %s on launch", rt, rt)
		}
	}
	for _, st := range allowing(stackRole, "ec2:CreateTags") {
		for _, r := range listOf(st["Resource"]) {
			if (strings.HasSuffix(fmt.Sprint(r), ":instance/*") || strings.HasSuffix(fmt.Sprint(r), ":volume/*")) &&
				walk(st, "Condition", "StringEquals", "ec2:CreateAction") != "RunInstances" {
				t.Errorf("StackRole: ec2:CreateTags on %v outside RunInstances: %v", r, st)
			}
		}
	}
	if len(allowing(stackRole, "ec2:RunInstances")) == 0 {
		t.Error("StackRole: no ec2:RunInstances")
	}
	rolePath, _ := walk(fleet, "Resources", "InstanceRole", "Properties", "Path").(string)
	passes := false
	for _, st := range allowing(stackRole, "iam:PassRole") {
		for _, r := range listOf(st["Resource"]) {
			passes = passes || walk(st, "Condition", "StringEquals", "iam:PassedToService") == "ec2.amazonaws.com" &&
				strings.HasSuffix(fmt.Sprint(r), ":role"+rolePath+"*")
		}
	}
	if rolePath == "" || !passes {
		t.Errorf("StackRole: does not pass the fleet's instance role (path %q) to EC2", rolePath)
	}

	// Change sets: only those the worker names (runnerfleet-<command id>), as a name or an ARN.
	for _, action := range []string{"cloudformation:CreateChangeSet", "cloudformation:ExecuteChangeSet", "cloudformation:DeleteChangeSet"} {
		sts := allowing(taskRole, action)
		if action != "cloudformation:DeleteChangeSet" && len(sts) == 0 {
			t.Errorf("TaskRole: no %s", action)
		}
		for _, st := range sts {
			names := listOf(walk(st, "Condition", "StringLike", "cloudformation:ChangeSetName"))
			if len(names) == 0 {
				t.Errorf("TaskRole: %s without a cloudformation:ChangeSetName condition: %v", action, st)
			}
			for _, n := range names {
				if s := fmt.Sprint(n); !strings.HasPrefix(s, "runnerfleet-") && !strings.Contains(s, ":changeSet/runnerfleet-") {
					t.Errorf("TaskRole: %s on change sets %q, not only runnerfleet-*", action, s)
				}
			}
		}
	}
	// infra/aws/cyclestate resolves a group's $Latest or $Default launch template version.
	readsTemplates := false
	for _, st := range allowing(taskRole, "ec2:DescribeLaunchTemplates") {
		readsTemplates = readsTemplates || slices.Contains(listOf(st["Resource"]), any("*"))
	}
	if !readsTemplates {
		t.Error("TaskRole: no ec2:DescribeLaunchTemplates on *")
	}

	// The state table outlives the stack, but not a failed first create: its name is fixed, so a
	// table left by a rollback would make every retry fail with "already exists".
	table, _ := walk(worker, "Resources", "StateTable").(map[string]any)
	if table["DeletionPolicy"] != "RetainExceptOnCreate" || table["UpdateReplacePolicy"] != "Retain" {
		t.Errorf("StateTable: DeletionPolicy %v, UpdateReplacePolicy %v; want RetainExceptOnCreate, Retain",
			table["DeletionPolicy"], table["UpdateReplacePolicy"])
	}
	for name, tm := range map[string]map[string]any{workerStack: worker, fleetStack: fleet} {
		rs, _ := tm["Resources"].(map[string]any)
		for id, r := range rs {
			if walk(r, "DeletionPolicy") != "Retain" {
				continue
			}
			props, _ := walk(r, "Properties").(map[string]any)
			for k, v := range props {
				if strings.HasSuffix(k, "Name") && v != nil {
					t.Errorf("stack %s: %s is named (%s) and kept by DeletionPolicy Retain even when the first create fails; use RetainExceptOnCreate", name, id, k)
				}
			}
		}
	}
}

// stackTemplate returns the template a stack holds, decoded; short-form functions (!Sub, !Ref,
// !GetAtt) decode as their plain arguments.
func stackTemplate(ctx context.Context, t *testing.T, api *cloudformation.Client, stack string) map[string]any {
	t.Helper()
	tmpl, err := api.GetTemplate(ctx, &cloudformation.GetTemplateInput{StackName: aws.String(stack)})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal([]byte(aws.ToString(tmpl.TemplateBody)), &m); err != nil {
		t.Fatalf("parsing the template of %s: %v", stack, err)
	}
	return m
}

// policyStatements returns the statements of a role's inline policies.
func policyStatements(t *testing.T, tm map[string]any, role string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, p := range listOf(walk(tm, "Resources", role, "Properties", "Policies")) {
		for _, st := range listOf(walk(p, "PolicyDocument", "Statement")) {
			if m, ok := st.(map[string]any); ok {
				out = append(out, m)
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("role %s has no policy statements", role)
	}
	return out
}

// allowing returns the Allow statements whose Action names action.
func allowing(sts []map[string]any, action string) []map[string]any {
	var out []map[string]any
	for _, st := range sts {
		if st["Effect"] == "Allow" && slices.Contains(listOf(st["Action"]), any(action)) {
			out = append(out, st)
		}
	}
	return out
}

// walk follows map keys from v; nil when one is missing.
func walk(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// listOf returns v as a list: a list as it is, a single value as a list of one, nil as none.
func listOf(v any) []any {
	switch l := v.(type) {
	case nil:
		return nil
	case []any:
		return l
	default:
		return []any{l}
	}
}

func checkQueues(ctx context.Context, t *testing.T, api *sqs.Client, wout map[string]string) {
	dlqArn := map[string]string{}
	for _, q := range []struct {
		name, output string
		fifo         bool
		dlq          string
	}{
		{"runnerfleet-" + workerStack + "-lifecycle-dlq", "LifecycleDeadLetterQueueUrl", false, ""},
		{"runnerfleet-" + workerStack + "-control-dlq.fifo", "ControlDeadLetterQueueUrl", true, ""},
		{"runnerfleet-" + workerStack + "-lifecycle", "LifecycleQueueUrl", false, "runnerfleet-" + workerStack + "-lifecycle-dlq"},
		{"runnerfleet-" + workerStack + "-control.fifo", "ControlQueueUrl", true, "runnerfleet-" + workerStack + "-control-dlq.fifo"},
		{"runnerfleet-" + workerStack + "-steps-dlq", "StepsDeadLetterQueueUrl", false, ""},
		{"runnerfleet-" + workerStack + "-steps", "StepsQueueUrl", false, "runnerfleet-" + workerStack + "-steps-dlq"},
	} {
		u, err := api.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(q.name)})
		if err != nil {
			t.Errorf("queue %s: %v", q.name, err)
			continue
		}
		// The emulator's Ref of a queue is AWS's URL form (https://sqs.REGION.amazonaws.com/...),
		// not its own endpoint: compare the account/name path.
		if _, p, _ := strings.Cut(strings.TrimPrefix(aws.ToString(u.QueueUrl), "http://"), "/"); !strings.HasSuffix(wout[q.output], "/"+p) {
			t.Errorf("output %s = %s, queue url %s", q.output, wout[q.output], aws.ToString(u.QueueUrl))
		}
		a, err := api.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: u.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
		if err != nil {
			t.Fatal(err)
		}
		attrs := a.Attributes
		dlqArn[q.name] = attrs["QueueArn"]
		if (attrs["FifoQueue"] == "true") != q.fifo {
			t.Errorf("%s: FifoQueue %q", q.name, attrs["FifoQueue"])
		}
		if q.fifo && q.dlq != "" && attrs["ContentBasedDeduplication"] != "true" {
			t.Errorf("%s: ContentBasedDeduplication %q", q.name, attrs["ContentBasedDeduplication"])
		}
		if attrs["SqsManagedSseEnabled"] != "true" {
			t.Errorf("%s: SqsManagedSseEnabled %q", q.name, attrs["SqsManagedSseEnabled"])
		}
		if q.dlq != "" {
			var rp struct {
				DeadLetterTargetArn string `json:"deadLetterTargetArn"`
				MaxReceiveCount     any    `json:"maxReceiveCount"`
			}
			if err := json.Unmarshal([]byte(attrs["RedrivePolicy"]), &rp); err != nil {
				t.Errorf("%s: RedrivePolicy %q: %v", q.name, attrs["RedrivePolicy"], err)
			} else if rp.DeadLetterTargetArn != dlqArn[q.dlq] || rp.MaxReceiveCount == nil {
				t.Errorf("%s: RedrivePolicy %+v, want DLQ %s", q.name, rp, dlqArn[q.dlq])
			}
		}
	}
}

func checkRules(ctx context.Context, t *testing.T, api *eventbridge.Client, wout, fout map[string]string) {
	rules, err := api.ListRules(ctx, &eventbridge.ListRulesInput{NamePrefix: aws.String("runnerfleet-")})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, r := range rules.Rules {
		got[aws.ToString(r.Name)] = true
	}
	n := runner.NamesFor(fleetStack)
	for _, name := range []string{
		"runnerfleet-" + workerStack + "-lifecycle-actions", "runnerfleet-" + workerStack + "-spot",
		"runnerfleet-" + workerStack + "-state-change", n.TickRule, n.TokenRule, n.StackRule,
	} {
		if !got[name] {
			t.Errorf("no rule %s (have %v)", name, got)
		}
	}
	tick, err := api.DescribeRule(ctx, &eventbridge.DescribeRuleInput{Name: aws.String(n.TickRule)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(tick.ScheduleExpression) != "rate(1 minute)" || aws.ToString(tick.Arn) != fout["TickRuleArn"] {
		t.Errorf("tick rule %s %s, output %s", aws.ToString(tick.ScheduleExpression), aws.ToString(tick.Arn), fout["TickRuleArn"])
	}
	for _, name := range []string{n.TickRule, n.TokenRule, n.StackRule} {
		tg, err := api.ListTargetsByRule(ctx, &eventbridge.ListTargetsByRuleInput{Rule: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		if len(tg.Targets) != 1 || aws.ToString(tg.Targets[0].Arn) != wout["ControlQueueArn"] ||
			tg.Targets[0].SqsParameters == nil || aws.ToString(tg.Targets[0].SqsParameters.MessageGroupId) != fleetName {
			t.Errorf("rule %s targets %+v, want the control queue with group %s", name, tg.Targets, fleetName)
		}
	}
}

func checkTable(ctx context.Context, t *testing.T, api *dynamodb.Client) {
	name := "runnerfleet-" + workerStack + "-state"
	d, err := api.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	tb := d.Table
	var keys []string
	for _, k := range tb.KeySchema {
		keys = append(keys, aws.ToString(k.AttributeName)+"/"+string(k.KeyType))
	}
	if strings.Join(keys, ",") != "pk/HASH,sk/RANGE" {
		t.Errorf("keys %v", keys)
	}
	if tb.BillingModeSummary == nil || tb.BillingModeSummary.BillingMode != "PAY_PER_REQUEST" {
		t.Errorf("billing %+v", tb.BillingModeSummary)
	}
	// The sparse index the worker lists unfinished records with (infra/aws/state.IndexOpen).
	var index []string
	for _, gsi := range tb.GlobalSecondaryIndexes {
		if aws.ToString(gsi.IndexName) != state.IndexOpen {
			continue
		}
		for _, k := range gsi.KeySchema {
			index = append(index, aws.ToString(k.AttributeName)+"/"+string(k.KeyType))
		}
		if gsi.Projection == nil || gsi.Projection.ProjectionType != "ALL" {
			t.Errorf("index %s projection %+v, want ALL", state.IndexOpen, gsi.Projection)
		}
	}
	if strings.Join(index, ",") != state.AttrOpen+"/HASH,"+state.AttrPK+"/RANGE" {
		t.Errorf("index %q keys %v, want %s/HASH,%s/RANGE", state.IndexOpen, index, state.AttrOpen, state.AttrPK)
	}
	ttl, err := api.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	// moto 5.2.1 ignores a template's TimeToLiveSpecification (README.md (Running on AWS)); AWS applies it.
	// So: TTL on expires_at, or off altogether; on for any other attribute is wrong.
	switch d := ttl.TimeToLiveDescription; {
	case d == nil:
		t.Error("no ttl description")
	case d.TimeToLiveStatus == "DISABLED" && d.AttributeName == nil:
		t.Log("emulator gap: the template's TimeToLiveSpecification was not applied (known; AWS applies it)")
	case aws.ToString(d.AttributeName) != "expires_at":
		t.Errorf("ttl %+v, want expires_at", d)
	}
}

func checkGroup(ctx context.Context, t *testing.T, api *autoscaling.Client, ec2api *ec2.Client, fout map[string]string) {
	name := runner.NamesFor(fleetStack).Group
	if fout["GroupName"] != name {
		t.Errorf("output GroupName %q, want %q", fout["GroupName"], name)
	}
	g, err := api.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
	if err != nil || len(g.AutoScalingGroups) != 1 {
		t.Fatalf("group %s: %v", name, err)
	}
	grp := g.AutoScalingGroups[0]
	if !aws.ToBool(grp.NewInstancesProtectedFromScaleIn) {
		t.Error("new instances not protected from scale-in")
	}
	if aws.ToBool(grp.CapacityRebalance) {
		t.Error("capacity rebalancing on")
	}
	if aws.ToInt32(grp.MinSize) != 1 || aws.ToInt32(grp.MaxSize) != 10 || aws.ToInt32(grp.DesiredCapacity) != 1 {
		t.Errorf("sizes min %d max %d desired %d", aws.ToInt32(grp.MinSize), aws.ToInt32(grp.MaxSize), aws.ToInt32(grp.DesiredCapacity))
	}
	if grp.LaunchTemplate == nil || aws.ToString(grp.LaunchTemplate.LaunchTemplateName) != runner.NamesFor(fleetStack).LaunchTemplate {
		t.Errorf("launch template %+v", grp.LaunchTemplate)
	}

	hooks, err := api.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]string{}
	for _, h := range hooks.LifecycleHooks {
		byName[aws.ToString(h.LifecycleHookName)] = aws.ToString(h.LifecycleTransition) + " " + aws.ToString(h.DefaultResult) + " " +
			itoa(aws.ToInt32(h.HeartbeatTimeout))
	}
	for hook, want := range map[string]string{
		runner.TerminateHookName: "autoscaling:EC2_INSTANCE_TERMINATING CONTINUE 1800",
		runner.LaunchHookName:    "autoscaling:EC2_INSTANCE_LAUNCHING ABANDON 900",
	} {
		if byName[hook] != want {
			t.Errorf("hook %s: %q, want %q", hook, byName[hook], want)
		}
	}

	v, err := ec2api.DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{
		LaunchTemplateName: aws.String(runner.NamesFor(fleetStack).LaunchTemplate), Versions: []string{"$Latest"},
	})
	if err != nil || len(v.LaunchTemplateVersions) == 0 {
		t.Fatalf("launch template: %v", err)
	}
	d := v.LaunchTemplateVersions[0].LaunchTemplateData
	if d.MetadataOptions == nil || d.MetadataOptions.HttpTokens != ec2types.LaunchTemplateHttpTokensStateRequired {
		t.Errorf("metadata options %+v, want IMDSv2 required", d.MetadataOptions)
	}
}

func checkSSM(ctx context.Context, t *testing.T, api *ssm.Client, fout, wout map[string]string) {
	n := runner.NamesFor(fleetStack)
	for key, doc := range map[string]string{"StopIntakeDocument": n.StopIntake, "StatusDocument": n.Status, "UnregisterDocument": n.Unregister} {
		if fout[key] != doc {
			t.Errorf("output %s = %q, want %q", key, fout[key], doc)
		}
		d, err := api.GetDocument(ctx, &ssm.GetDocumentInput{Name: aws.String(doc)})
		if err != nil {
			t.Errorf("document %s: %v", doc, err)
			continue
		}
		if !strings.Contains(aws.ToString(d.Content), "aws:runShellScript") {
			t.Errorf("document %s content %q", doc, aws.ToString(d.Content))
		}
	}
	p, err := api.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(wout["ConfigParameterName"])})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(aws.ToString(p.Parameter.Value), "name: "+fleetName) {
		t.Errorf("config parameter %q", aws.ToString(p.Parameter.Value))
	}
	// No stack made a parameter out of the token: the token parameter is the operator's.
	if _, err := api.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(tokenParam)}); err == nil {
		t.Errorf("a stack created the token parameter %s", tokenParam)
	}
}

func itoa(i int32) string {
	b, _ := json.Marshal(i)
	return string(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// checkDelivery follows events through the deployed rules: the fleet's tick, a change of its token
// parameter and its stack's status reach the control queue in the fleet's message group; a
// terminate lifecycle action of its group reaches the lifecycle queue.
func checkDelivery(ctx context.Context, t *testing.T, c clients, wout, fout map[string]string) {
	if _, err := c.ssm.PutParameter(ctx, &ssm.PutParameterInput{
		Name: aws.String(tokenParam), Value: aws.String("glrt-canary"), Type: ssmtypes.ParameterTypeSecureString,
	}); err != nil {
		t.Fatal(err)
	}
	g, err := c.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{fout["GroupName"]}})
	if err != nil || len(g.AutoScalingGroups) != 1 || len(g.AutoScalingGroups[0].Instances) == 0 {
		t.Fatalf("group %s: %v", fout["GroupName"], err)
	}
	victim := aws.ToString(g.AutoScalingGroups[0].Instances[0].InstanceId)
	if _, err := c.asg.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(victim), ShouldDecrementDesiredCapacity: aws.Bool(false),
	}); err != nil {
		t.Fatal(err)
	}

	type event struct {
		DetailType string          `json:"detail-type"`
		Resources  []string        `json:"resources"`
		Detail     json.RawMessage `json:"detail"`
	}
	want := map[string]func(e event, group string) bool{
		"tick": func(e event, group string) bool {
			return e.DetailType == "Scheduled Event" && len(e.Resources) > 0 && e.Resources[0] == fout["TickRuleArn"] && group == fleetName
		},
		"token": func(e event, group string) bool {
			return e.DetailType == "Parameter Store Change" && strings.Contains(string(e.Detail), tokenParam) && group == fleetName
		},
		"stack": func(e event, group string) bool {
			return e.DetailType == "CloudFormation Stack Status Change" && strings.Contains(string(e.Detail), "stack/"+fleetStack+"/") && group == fleetName
		},
		"lifecycle": func(e event, group string) bool {
			return e.DetailType == "EC2 Instance-terminate Lifecycle Action" && strings.Contains(string(e.Detail), victim) && group == ""
		},
	}
	seen := map[string]bool{}
	deadline := time.Now().Add(45 * time.Second)
	for len(seen) < len(want) && time.Now().Before(deadline) {
		for _, q := range []string{wout["ControlQueueUrl"], wout["LifecycleQueueUrl"]} {
			// The outputs hold AWS's URL form (see checkQueues): ask the emulator for its own.
			u, err := c.sqs.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(q[strings.LastIndex(q, "/")+1:])})
			if err != nil {
				t.Fatal(err)
			}
			out, err := c.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
				QueueUrl: u.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
				MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameMessageGroupId},
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range out.Messages {
				var e event
				if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &e); err != nil {
					t.Errorf("message %q: %v", aws.ToString(m.Body), err)
					continue
				}
				if strings.Contains(aws.ToString(m.Body), "glrt-canary") {
					t.Errorf("a message carries the token: %s", aws.ToString(m.Body))
				}
				for name, ok := range want {
					if ok(e, m.Attributes[string(sqstypes.MessageSystemAttributeNameMessageGroupId)]) {
						seen[name] = true
					}
				}
				if _, err := c.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: u.QueueUrl, ReceiptHandle: m.ReceiptHandle}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("no %s event arrived on its queue", name)
		}
	}
}

// checkPublisherEnvironment: the worker stack's PublisherEnvironment output names the stack's own
// queues, table and config parameter (the config holds none of them), and the publisher run with
// exactly that environment reads the fleet. Loopback only: the instance's 10.x address is never
// dialled (status's scrape of it is refused before any connection).
func checkPublisherEnvironment(ctx context.Context, t *testing.T, e *emulator.Emulator, wout, fout map[string]string) {
	env := map[string]string{}
	for _, kv := range strings.Fields(wout["PublisherEnvironment"]) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("PublisherEnvironment %q: %q is not KEY=VALUE", wout["PublisherEnvironment"], kv)
		}
		env[k] = v
	}
	for k, want := range map[string]string{
		"RUNNERFLEET_CONFIG_PARAMETER":           wout["ConfigParameterName"],
		"RUNNERFLEET_QUEUES_CONTROL_NAME":        wout["ControlQueueUrl"],
		"RUNNERFLEET_QUEUES_CONTROL_DEAD_LETTER": wout["ControlDeadLetterQueueUrl"],
		"RUNNERFLEET_STATE_TABLE":                wout["StateTableName"],
	} {
		if want == "" || env[k] != want {
			t.Errorf("PublisherEnvironment %s = %q, want %q", k, env[k], want)
		}
	}
	if arn := wout["OperatorPolicyArn"]; !strings.Contains(arn, ":policy/runnerfleet/") {
		t.Errorf("OperatorPolicyArn = %q, want the operators' managed policy", arn)
	}
	if env["RUNNERFLEET_REGION"] == "" {
		t.Errorf("PublisherEnvironment has no region: %v", env)
	}
	bin := filepath.Join(t.TempDir(), "publisher")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/runnerfleet/runnerfleet/cmd/publisher").CombinedOutput(); err != nil {
		t.Fatalf("go build publisher: %v\n%s", err, out)
	}
	cmd := exec.CommandContext(ctx, bin, "status", "--fleet", fleetName, "--json")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RUNNERFLEET_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, "RUNNERFLEET_ENDPOINT="+e.Endpoint, "RUNNERFLEET_LOOPBACK_ONLY=true",
		"AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("publisher status with the stack's PublisherEnvironment: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), fout["GroupName"]) {
		t.Errorf("publisher status does not name the fleet's group %s:\n%s", fout["GroupName"], out)
	}
}
