package runner

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// The policy rules every template of deploy/ must pass. Each rule has a test that breaks a copy of
// a real template and proves the rule reports it.

// noResourceLevel lists mutating actions that support no resource-level permissions, so "*" is
// the only possible Resource; each with the condition or reason that bounds it.
var noResourceLevel = map[string]string{
	"cloudwatch:PutMetricData":         "no resource type; bounded by the cloudwatch:namespace condition",
	"ec2messages:AcknowledgeMessage":   "the SSM agent's Run Command channel has no resource types",
	"ec2messages:DeleteMessage":        "the SSM agent's Run Command channel has no resource types",
	"ec2messages:FailMessage":          "the SSM agent's Run Command channel has no resource types",
	"ec2messages:SendReply":            "the SSM agent's Run Command channel has no resource types",
	"ssmmessages:CreateControlChannel": "Session Manager's channels have no resource types",
	"ssmmessages:CreateDataChannel":    "Session Manager's channels have no resource types",
	"ssmmessages:OpenControlChannel":   "Session Manager's channels have no resource types",
	"ssmmessages:OpenDataChannel":      "Session Manager's channels have no resource types",
}

// broadManagedPolicies are AWS managed policies that grant what our roles must not hold.
var broadManagedPolicies = map[string]string{
	"AmazonSSMManagedInstanceCore": "grants ssm:GetParameter(s) on every parameter: every fleet's token",
	"AmazonSSMFullAccess":          "grants every SSM action on every resource",
	"AmazonSSMReadOnlyAccess":      "grants reading every parameter",
	"AdministratorAccess":          "grants everything",
	"PowerUserAccess":              "grants everything but IAM",
	"CloudWatchAgentAdminPolicy":   "grants ssm:PutParameter on AmazonCloudWatch-*",
	"AmazonEC2FullAccess":          "grants every EC2 action",
	"AutoScalingFullAccess":        "grants every Auto Scaling action",
}

// readVerbs are the action verbs that only read. (Reading SSM parameters is handled apart: a
// token is a parameter.)
var readVerbs = []string{"Describe", "Get", "List", "Validate"}

// secretParameterReads are reads that can return a runner token.
var secretParameterReads = regexp.MustCompile(`(?i)^ssm:(GetParameter|GetParameters|GetParametersByPath|\*)$`)

// tokenish matches names that would carry a secret value.
var tokenish = regexp.MustCompile(`(?i)token|secret|password|credential`)

// problem is one rule violation, sortable and printable.
type problem struct{ rule, where, what string }

func (p problem) String() string { return fmt.Sprintf("[%s] %s: %s", p.rule, p.where, p.what) }

func checkPolicies(m tmpl) []problem {
	var ps []problem
	ps = append(ps, checkIAM(m)...)
	ps = append(ps, checkTokens(m)...)
	ps = append(ps, checkBoundary(m)...)
	ps = append(ps, checkIMDS(m)...)
	ps = append(ps, checkQueueTLS(m)...)
	sort.Slice(ps, func(i, j int) bool { return ps[i].String() < ps[j].String() })
	return ps
}

// policyDocuments returns every IAM policy document of the template, by where it is.
func policyDocuments(m tmpl) map[string]any {
	docs := map[string]any{}
	for id, r := range resources(m, "AWS::IAM::Role") {
		for i, p := range list(props(r)["Policies"]) {
			docs[fmt.Sprintf("%s.Policies[%d]", id, i)] = path(p, "PolicyDocument")
		}
	}
	for _, typ := range []string{"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"} {
		for id, r := range resources(m, typ) {
			docs[id] = props(r)["PolicyDocument"]
		}
	}
	return docs
}

// statements flattens a statement list, including both branches of an Fn::If.
func statements(doc any) []map[string]any {
	var out []map[string]any
	var add func(v any)
	add = func(v any) {
		switch c := v.(type) {
		case []any:
			for _, x := range c {
				add(x)
			}
		case map[string]any:
			if branches, ok := c["Fn::If"].([]any); ok && len(branches) == 3 {
				add(branches[1])
				add(branches[2])
				return
			}
			if _, ok := c["Ref"]; ok {
				return // AWS::NoValue
			}
			out = append(out, c)
		}
	}
	add(path(doc, "Statement"))
	return out
}

func isStar(v any) bool {
	s, ok := v.(string)
	return ok && s == "*"
}

func readOnly(action string) bool {
	_, verb, ok := strings.Cut(action, ":")
	if !ok || strings.Contains(verb, "*") && !hasReadPrefix(verb) {
		return false
	}
	return hasReadPrefix(verb)
}

func hasReadPrefix(verb string) bool {
	for _, p := range readVerbs {
		if strings.HasPrefix(verb, p) {
			return true
		}
	}
	return false
}

// Rule iam: no mutating action (nor a read of SSM parameters) on Resource "*" where AWS supports
// resource-level permissions, and no managed policy that grants such.
func checkIAM(m tmpl) []problem {
	var ps []problem
	for id, r := range resources(m, "AWS::IAM::Role") {
		for _, arn := range list(props(r)["ManagedPolicyArns"]) {
			s, _ := arn.(string)
			if sub, ok := path(arn, "Fn::Sub").(string); ok {
				s = sub
			}
			for name, why := range broadManagedPolicies {
				if strings.HasSuffix(s, "/"+name) {
					ps = append(ps, problem{"iam", id, fmt.Sprintf("managed policy %s %s", name, why)})
				}
			}
		}
	}
	for where, doc := range policyDocuments(m) {
		for i, st := range statements(doc) {
			if st["Effect"] != "Allow" {
				continue
			}
			star := false
			for _, r := range list(st["Resource"]) {
				star = star || isStar(r)
			}
			if st["NotResource"] != nil {
				star = true
			}
			if !star {
				continue
			}
			loc := fmt.Sprintf("%s statement %d (%v)", where, i, st["Sid"])
			if st["NotAction"] != nil {
				ps = append(ps, problem{"iam", loc, "NotAction on Resource \"*\""})
			}
			for _, a := range list(st["Action"]) {
				action, _ := a.(string)
				switch {
				case action == "*" || strings.HasSuffix(action, ":*"):
					ps = append(ps, problem{"iam", loc, fmt.Sprintf("%s on Resource \"*\"", action)})
				case secretParameterReads.MatchString(action):
					ps = append(ps, problem{"iam", loc, fmt.Sprintf("%s on Resource \"*\" reads every token", action)})
				case readOnly(action):
				case noResourceLevel[action] != "":
				default:
					ps = append(ps, problem{"iam", loc, fmt.Sprintf("mutating %s on Resource \"*\" (scope it to our resources)", action)})
				}
			}
		}
	}
	return ps
}

// refs returns the names every Ref inside v points at.
func refs(v any) []string {
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch c := v.(type) {
		case map[string]any:
			if r, ok := c["Ref"].(string); ok {
				out = append(out, r)
			}
			if sub, ok := c["Fn::Sub"]; ok {
				s, _ := sub.(string)
				if l, ok := sub.([]any); ok && len(l) > 0 {
					s, _ = l[0].(string)
				}
				for _, mm := range regexp.MustCompile(`\$\{([A-Za-z0-9:]+)\}`).FindAllStringSubmatch(s, -1) {
					out = append(out, mm[1])
				}
			}
			for _, x := range c {
				walk(x)
			}
		case []any:
			for _, x := range c {
				walk(x)
			}
		}
	}
	walk(v)
	return out
}

// carriesName reports whether a parameter named like a secret only carries its name or ARN.
func carriesName(param string) bool {
	for _, s := range []string{"ParameterName", "ParameterPrefix", "ParameterArn", "SecretArn", "SecretName", "KmsKeyArn"} {
		if strings.HasSuffix(param, s) {
			return true
		}
	}
	return false
}

// Rule token: no template parameter and no SSM parameter resource carries a token value.
func checkTokens(m tmpl) []problem {
	var ps []problem
	params, _ := m["Parameters"].(map[string]any)
	secretParam := map[string]bool{}
	for name, p := range params {
		if path(p, "NoEcho") == true || path(p, "NoEcho") == "true" {
			ps = append(ps, problem{"token", "Parameters." + name, "NoEcho parameter: a secret value would pass through the template"})
		}
		if tokenish.MatchString(name) && !carriesName(name) {
			secretParam[name] = true
			ps = append(ps, problem{"token", "Parameters." + name, "looks like a secret value; take the NAME of its SecureString parameter instead (…ParameterName)"})
		}
	}
	for id, r := range resources(m, "AWS::SSM::Parameter") {
		p := props(r)
		if name, ok := p["Name"].(string); ok && tokenish.MatchString(name) {
			ps = append(ps, problem{"token", id, fmt.Sprintf("SSM parameter %q would hold a secret (CloudFormation makes only plain Strings)", name)})
		}
		for _, ref := range refs(p["Value"]) {
			if secretParam[ref] || (tokenish.MatchString(ref) && !carriesName(ref)) {
				ps = append(ps, problem{"token", id, fmt.Sprintf("Value takes %s, a secret value", ref)})
			}
		}
	}
	return ps
}

// roleWrites are the IAM actions that give a role permissions.
var roleWrites = map[string]bool{
	"iam:CreateRole": true, "iam:PutRolePolicy": true, "iam:AttachRolePolicy": true,
	"iam:DetachRolePolicy": true, "iam:DeleteRolePolicy": true,
	"iam:PutRolePermissionsBoundary": true, "iam:DeleteRolePermissionsBoundary": true,
}

// Rule boundary: whoever may create a role or change its policies may do so only for roles that
// carry our permissions boundary (iam:PermissionsBoundary condition), so no template applied
// through the worker can make a role stronger than the boundary.
func checkBoundary(m tmpl) []problem {
	var ps []problem
	for where, doc := range policyDocuments(m) {
		for i, st := range statements(doc) {
			if st["Effect"] != "Allow" {
				continue
			}
			bounded := path(st, "Condition", "StringEquals", "iam:PermissionsBoundary") != nil
			for _, a := range list(st["Action"]) {
				action, _ := a.(string)
				if (roleWrites[action] || action == "iam:*" || action == "*") && !bounded {
					ps = append(ps, problem{"boundary", fmt.Sprintf("%s statement %d (%v)", where, i, st["Sid"]),
						fmt.Sprintf("%s without an iam:PermissionsBoundary condition", action)})
				}
			}
		}
	}
	return ps
}

// Rule imds: every launch template and launch configuration requires IMDSv2.
func checkIMDS(m tmpl) []problem {
	var ps []problem
	for id, r := range resources(m, "AWS::EC2::LaunchTemplate") {
		if v := path(props(r), "LaunchTemplateData", "MetadataOptions", "HttpTokens"); v != "required" {
			ps = append(ps, problem{"imds", id, fmt.Sprintf("MetadataOptions.HttpTokens is %v, want required (IMDSv2 only)", v)})
		}
	}
	for id, r := range resources(m, "AWS::AutoScaling::LaunchConfiguration") {
		if v := path(props(r), "MetadataOptions", "HttpTokens"); v != "required" {
			ps = append(ps, problem{"imds", id, fmt.Sprintf("MetadataOptions.HttpTokens is %v, want required (IMDSv2 only)", v)})
		}
	}
	return ps
}

// Rule tls: every queue is covered by a queue policy that denies requests without TLS.
func checkQueueTLS(m tmpl) []problem {
	covered := map[string]bool{}
	for _, r := range resources(m, "AWS::SQS::QueuePolicy") {
		p := props(r)
		if !deniesInsecureTransport(p["PolicyDocument"]) {
			continue
		}
		for _, q := range list(p["Queues"]) {
			for _, ref := range refs(q) {
				covered[ref] = true
			}
		}
	}
	var ps []problem
	for id := range resources(m, "AWS::SQS::Queue") {
		if !covered[id] {
			ps = append(ps, problem{"tls", id, "no queue policy denies it requests without TLS (aws:SecureTransport false)"})
		}
	}
	return ps
}

func deniesInsecureTransport(doc any) bool {
	for _, st := range statements(doc) {
		if st["Effect"] != "Deny" {
			continue
		}
		if p := st["Principal"]; !isStar(p) && !isStar(path(p, "AWS")) {
			continue
		}
		all := false
		for _, a := range list(st["Action"]) {
			all = all || a == "sqs:*" || a == "*"
		}
		v := path(st, "Condition", "Bool", "aws:SecureTransport")
		if all && (v == "false" || v == false) {
			return true
		}
	}
	return false
}

func TestTemplatesPassPolicies(t *testing.T) {
	for _, p := range templatePaths(t) {
		t.Run(p, func(t *testing.T) {
			for _, pr := range checkPolicies(loadTemplate(t, p)) {
				t.Error(pr)
			}
		})
	}
}

// breakCase breaks a copy of one template and names the rule that must then report.
type breakCase struct {
	name     string
	template string
	rule     string
	breakIt  func(t *testing.T, m tmpl)
}

func resource(t *testing.T, m tmpl, id string) map[string]any {
	t.Helper()
	r, ok := path(m, "Resources", id).(map[string]any)
	if !ok {
		t.Fatalf("no resource %s", id)
	}
	return r
}

func statementBySid(t *testing.T, m tmpl, role, sid string) map[string]any {
	t.Helper()
	docs := []any{props(resource(t, m, role))["PolicyDocument"]} // a managed policy's
	for _, p := range list(props(resource(t, m, role))["Policies"]) {
		docs = append(docs, path(p, "PolicyDocument"))
	}
	for _, doc := range docs {
		for _, st := range statements(doc) {
			if st["Sid"] == sid {
				return st
			}
		}
	}
	t.Fatalf("no statement %s in %s", sid, role)
	return nil
}

func TestPolicyRulesCatchBrokenTemplates(t *testing.T) {
	cases := []breakCase{
		{"mutating action added to a Resource * statement", workerPath, "iam", func(t *testing.T, m tmpl) {
			st := statementBySid(t, m, "TaskRole", "ReadOnlyWithoutResourceLevel")
			st["Action"] = append(list(st["Action"]), "ec2:TerminateInstances")
		}},
		{"scoped statement widened to *", workerPath, "iam", func(t *testing.T, m tmpl) {
			statementBySid(t, m, "TaskRole", "FleetGroups")["Resource"] = "*"
		}},
		{"operators may send to every queue", workerPath, "iam", func(t *testing.T, m tmpl) {
			statementBySid(t, m, "OperatorPolicy", "SendCommands")["Resource"] = "*"
		}},
		{"operators may update fleet stacks", workerPath, "iam", func(t *testing.T, m tmpl) {
			st := statementBySid(t, m, "OperatorPolicy", "ReadFleetsWithoutResourceLevel")
			st["Action"] = append(list(st["Action"]), "cloudformation:UpdateStack")
		}},
		{"service wildcard on *", workerPath, "iam", func(t *testing.T, m tmpl) {
			statementBySid(t, m, "StackRole", "Rules")["Resource"] = "*"
		}},
		{"instance role reads every parameter", runnerPath, "iam", func(t *testing.T, m tmpl) {
			statementBySid(t, m, "InstanceRole", "ReadOwnTokenOnly")["Resource"] = "*"
		}},
		{"instance role with AmazonSSMManagedInstanceCore", runnerPath, "iam", func(t *testing.T, m tmpl) {
			props(resource(t, m, "InstanceRole"))["ManagedPolicyArns"] = []any{
				map[string]any{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"},
			}
		}},
		{"role creation without the boundary", workerPath, "boundary", func(t *testing.T, m tmpl) {
			delete(statementBySid(t, m, "StackRole", "InstanceRolesWithinTheBoundary"), "Condition")
		}},
		{"policy attachment outside the bounded statement", workerPath, "boundary", func(t *testing.T, m tmpl) {
			st := statementBySid(t, m, "StackRole", "InstanceRoles")
			st["Action"] = append(list(st["Action"]), "iam:AttachRolePolicy")
		}},
		{"token value as a template parameter", runnerPath, "token", func(t *testing.T, m tmpl) {
			path(m, "Parameters").(map[string]any)["RunnersToken"] = map[string]any{"Type": "String"}
		}},
		{"NoEcho parameter", runnerPath, "token", func(t *testing.T, m tmpl) {
			path(m, "Parameters").(map[string]any)["GitlabPat"] = map[string]any{"Type": "String", "NoEcho": true}
		}},
		{"SSM parameter resource holding the token", runnerPath, "token", func(t *testing.T, m tmpl) {
			path(m, "Parameters").(map[string]any)["RunnerRegistrationTokens"] = map[string]any{"Type": "String"}
			path(m, "Resources").(map[string]any)["TokenParam"] = map[string]any{
				"Type": "AWS::SSM::Parameter",
				"Properties": map[string]any{
					"Name":  map[string]any{"Fn::Sub": "/${AWS::StackName}/ci-tokens"},
					"Type":  "String",
					"Value": map[string]any{"Ref": "RunnerRegistrationTokens"},
				},
			}
		}},
		{"SSM parameter resource named like a token", workerPath, "token", func(t *testing.T, m tmpl) {
			props(resource(t, m, "ConfigParameter"))["Name"] = "/runnerfleet/runner-token"
		}},
		{"launch template without metadata options", runnerPath, "imds", func(t *testing.T, m tmpl) {
			delete(path(props(resource(t, m, "LaunchTemplate")), "LaunchTemplateData").(map[string]any), "MetadataOptions")
		}},
		{"launch template allowing IMDSv1", runnerPath, "imds", func(t *testing.T, m tmpl) {
			path(props(resource(t, m, "LaunchTemplate")), "LaunchTemplateData", "MetadataOptions").(map[string]any)["HttpTokens"] = "optional"
		}},
		{"queue policy without the TLS deny", workerPath, "tls", func(t *testing.T, m tmpl) {
			doc := path(props(resource(t, m, "EventQueuesPolicy")), "PolicyDocument").(map[string]any)
			var kept []any
			for _, st := range list(doc["Statement"]) {
				if path(st, "Sid") != "DenyInsecureTransport" {
					kept = append(kept, st)
				}
			}
			doc["Statement"] = kept
		}},
		{"TLS deny that only denies receives", workerPath, "tls", func(t *testing.T, m tmpl) {
			doc := path(props(resource(t, m, "DeadLetterQueuesPolicy")), "PolicyDocument")
			path(doc, "Statement", "0").(map[string]any)["Action"] = "sqs:ReceiveMessage"
		}},
		{"queue without any policy", workerPath, "tls", func(t *testing.T, m tmpl) {
			path(m, "Resources").(map[string]any)["ExtraQueue"] = map[string]any{
				"Type": "AWS::SQS::Queue", "Properties": map[string]any{"SqsManagedSseEnabled": true},
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := deepCopy(loadTemplate(t, tc.template)).(tmpl)
			tc.breakIt(t, m)
			var hits []problem
			for _, p := range checkPolicies(m) {
				if p.rule == tc.rule {
					hits = append(hits, p)
				}
			}
			if len(hits) == 0 {
				t.Fatalf("rule %s did not report the broken template", tc.rule)
			}
			t.Logf("reported: %v", hits)
		})
	}
}

// The worker stack's OperatorPolicy allows what the publisher calls (README, "Running on AWS"),
// each on the resource it names, and nothing that changes a fleet but cancelling its update.
func TestOperatorPolicyCoversThePublisher(t *testing.T) {
	m := loadTemplate(t, workerPath)
	doc := props(resource(t, m, "OperatorPolicy"))["PolicyDocument"]
	allowed := map[string]string{} // action → its statement's Sid
	for _, st := range statements(doc) {
		if st["Effect"] != "Allow" {
			continue
		}
		for _, a := range list(st["Action"]) {
			allowed[fmt.Sprint(a)] = fmt.Sprint(st["Sid"])
		}
		if st["Action"] != nil && list(st["Action"]) == nil {
			allowed[fmt.Sprint(st["Action"])] = fmt.Sprint(st["Sid"])
		}
	}
	for action, sid := range map[string]string{
		"sqs:SendMessage": "SendCommands", "sqs:GetQueueUrl": "SendCommands",
		"dynamodb:GetItem": "ReadState", "dynamodb:Query": "ReadState",
		"ssm:GetParameter":                      "ReadConfig",
		"autoscaling:DescribeAutoScalingGroups": "ReadFleetsWithoutResourceLevel", "autoscaling:DescribeAutoScalingInstances": "ReadFleetsWithoutResourceLevel",
		"ec2:DescribeInstances":         "ReadFleetsWithoutResourceLevel",
		"cloudformation:DescribeStacks": "FleetStacks", "cloudformation:DescribeStackEvents": "FleetStacks",
		"cloudformation:CancelUpdateStack": "FleetStacks",
	} {
		if got, ok := allowed[action]; !ok || got != sid {
			t.Errorf("OperatorPolicy: %s allowed by %q, want statement %s", action, got, sid)
		}
		delete(allowed, action)
	}
	for action := range allowed {
		t.Errorf("OperatorPolicy allows %s, which the publisher does not call", action)
	}
	if v := path(m, "Outputs", "OperatorPolicyArn", "Value"); v == nil {
		t.Error("no OperatorPolicyArn output")
	}
}
