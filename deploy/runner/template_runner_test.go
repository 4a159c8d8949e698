package runner

import (
	"bytes"
	"os/exec"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/runnerfleet/runnerfleet/deploy/runner/documents"
)

func TestEmbeddedTemplateIsTheFile(t *testing.T) {
	m, err := parseTemplate(Template)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, loadTemplate(t, runnerPath)) {
		t.Fatal("Template differs from runner.yaml")
	}
}

// The template carries the drain documents inline; they must say exactly what the files of
// package documents say (the files are linted; the template is what gets deployed).
func TestDocumentsEqualTheFiles(t *testing.T) {
	m := loadTemplate(t, runnerPath)
	for id, file := range map[string]string{
		"StopIntakeDocument": documents.StopIntake,
		"StatusDocument":     documents.Status,
		"UnregisterDocument": documents.Unregister,
	} {
		b, err := documents.FS.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var want any
		if err := yaml.Unmarshal(b, &want); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		p := props(resource(t, m, id))
		if !reflect.DeepEqual(normalize(p["Content"]), normalize(want)) {
			got, _ := yaml.Marshal(p["Content"])
			t.Errorf("%s differs from documents/%s; paste the file's content (without its comments) under Content.\ntemplate has:\n%s", id, file, got)
		}
		if p["DocumentType"] != "Command" || p["DocumentFormat"] != "YAML" {
			t.Errorf("%s: DocumentType %v, DocumentFormat %v", id, p["DocumentType"], p["DocumentFormat"])
		}
	}
}

// normalize makes yaml.v3's map[string]interface{} and ours comparable (ints as int64).
func normalize(v any) any {
	switch c := v.(type) {
	case map[string]any:
		m := map[string]any{}
		for k, x := range c {
			m[k] = normalize(x)
		}
		return m
	case []any:
		s := make([]any, len(c))
		for i, x := range c {
			s[i] = normalize(x)
		}
		return s
	case int:
		return int64(c)
	default:
		return v
	}
}

func TestDocumentNamesDeriveFromTheStack(t *testing.T) {
	m := loadTemplate(t, runnerPath)
	n := NamesFor("STACK")
	for id, want := range map[string]string{
		"StopIntakeDocument": n.StopIntake, "StatusDocument": n.Status, "UnregisterDocument": n.Unregister,
		"TickRule": n.TickRule, "TokenRule": n.TokenRule, "StackRule": n.StackRule,
	} {
		got := path(props(resource(t, m, id)), "Name", "Fn::Sub")
		if strings.ReplaceAll(want, "STACK", "${AWS::StackName}") != got {
			t.Errorf("%s: Name %v, want %s with the stack name", id, got, want)
		}
	}
	// The emulator and AWS accounts alike tell our documents by this pattern.
	for _, d := range []string{n.StopIntake, n.Status, n.Unregister} {
		if !regexp.MustCompile(`^runnerfleet-(.*-)?(stop-intake|status|unregister)$`).MatchString(d) {
			t.Errorf("%s does not match runnerfleet-*-stop-intake|status|unregister", d)
		}
	}
}

// userData returns the launch template's boot script as written (before Fn::Sub).
func userData(t *testing.T, m tmpl) string {
	t.Helper()
	s, ok := path(props(resource(t, m, "LaunchTemplate")), "LaunchTemplateData", "UserData", "Fn::Base64", "Fn::Sub").(string)
	if !ok {
		t.Fatal("UserData is not Fn::Base64 of Fn::Sub of a string")
	}
	return s
}

// The boot script installs the same systemd drop-in as the stop-intake document, so stop-intake
// finds it in place and changes nothing.
func TestDropInMatchesStopIntake(t *testing.T) {
	b, err := documents.FS.ReadFile(documents.StopIntake)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		MainSteps []struct {
			Inputs struct {
				RunCommand []string `yaml:"runCommand"`
			} `yaml:"inputs"`
		} `yaml:"mainSteps"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	script := strings.Join(doc.MainSteps[0].Inputs.RunCommand, "\n")
	mm := regexp.MustCompile(`(?s)want='(.*?)'\n`).FindStringSubmatch(script)
	if mm == nil {
		t.Fatal("stop-intake document: no want='...' drop-in found")
	}
	want := mm[1]
	ud := userData(t, loadTemplate(t, runnerPath))
	mm = regexp.MustCompile(`(?s)<<'DROPIN'\n(.*?)\nDROPIN\n`).FindStringSubmatch(ud)
	if mm == nil {
		t.Fatal("user data: no DROPIN heredoc")
	}
	if mm[1] != want {
		t.Errorf("user data drop-in:\n%s\nstop-intake drop-in:\n%s", mm[1], want)
	}
	for _, line := range []string{"KillSignal=SIGQUIT", "TimeoutStopSec=infinity"} {
		if !strings.Contains(want, line) {
			t.Errorf("drop-in lacks %s", line)
		}
	}
}

func TestBootScript(t *testing.T) {
	ud := userData(t, loadTemplate(t, runnerPath))
	for _, c := range []struct{ what, re string }{
		{"pinned version in the download URL", `gitlab-runner-downloads\.s3\.amazonaws\.com/\$\{GitlabRunnerVersion\}/binaries/gitlab-runner-linux-\$arch`},
		{"amd64 checksum", `x86_64\) arch=amd64; sum=\$\{RunnerSha256Amd64\}`},
		{"arm64 checksum", `aarch64\) arch=arm64; sum=\$\{RunnerSha256Arm64\}`},
		{"checksum verified before install", `(?s)sha256sum -c -\n\s*install -m 0755 /tmp/gitlab-runner`},
		{"fresh system_id", `(?s)rm -f /etc/gitlab-runner/\.runner_system_id.*> /etc/gitlab-runner/\.runner_system_id`},
		{"token rotation off", `FF_DISABLE_AUTOMATIC_TOKEN_ROTATION = true`},
		{"queuing duration monitoring", `\[runners\.monitoring\]\s*\n\s*\[\[runners\.monitoring\.job_queuing_durations\]\]`},
		{"metrics listen address", `listen_address = ":9252"`},
		{"token from its SecureString parameter", `aws ssm get-parameter [^\n]*--with-decryption \\\n\s*--name '\$\{TokenParameterName\}'`},
		{"token through the environment", `export CI_SERVER_TOKEN`},
		{"errors stop the boot", `set -euo pipefail`},
	} {
		if !regexp.MustCompile(c.re).MatchString(ud) {
			t.Errorf("boot script: %s: no match for %s", c.what, c.re)
		}
	}
	for _, c := range []struct{ what, re string }{
		{"tracing would print the token", `set -[a-z]*x`},
		{"IMDSv1 call", `169\.254\.169\.254`},
		{"token on a command line", `--token`},
		{"unpinned runner", `/latest/`},
	} {
		if regexp.MustCompile(c.re).MatchString(ud) {
			t.Errorf("boot script: %s (%s)", c.what, c.re)
		}
	}
	if bytes.Contains(Template, []byte("RunnersToken")) && !bytes.Contains(Template, []byte("TokenParameterName")) {
		t.Error("template takes a token value")
	}
}

func TestRunnerStackShape(t *testing.T) {
	m := loadTemplate(t, runnerPath)
	g := props(resource(t, m, "Group"))
	if g["NewInstancesProtectedFromScaleIn"] != true {
		t.Error("Group: new instances must be protected from scale-in")
	}
	if g["CapacityRebalance"] != false {
		t.Error("Group: CapacityRebalance must be false (the worker handles rebalance notices)")
	}
	// A stack update must not reset the desired capacity the worker set (nor a surge's MaxSize).
	if path(resource(t, m, "Group"), "UpdatePolicy", "AutoScalingScheduledAction", "IgnoreUnmodifiedGroupSizeProperties") != true {
		t.Error("Group: UpdatePolicy.AutoScalingScheduledAction.IgnoreUnmodifiedGroupSizeProperties must be true")
	}
	if path(g, "AutoScalingGroupName", "Fn::Sub") != "runnerfleet-${AWS::StackName}" {
		t.Errorf("Group name %v", g["AutoScalingGroupName"])
	}
	// Fn::If [HasLaunchHook, [terminate, launch], [terminate]].
	hooks := path(g, "LifecycleHookSpecificationList", "Fn::If")
	if path(hooks, "0") != "HasLaunchHook" || len(list(path(hooks, "1"))) != 2 || len(list(path(hooks, "2"))) != 1 {
		t.Fatalf("want the terminate hook and the optional launch hook, got %v", hooks)
	}
	for _, branch := range []string{"1", "2"} {
		term := path(hooks, branch, "0")
		if path(term, "LifecycleHookName") != TerminateHookName || path(term, "LifecycleTransition") != "autoscaling:EC2_INSTANCE_TERMINATING" ||
			path(term, "DefaultResult") != "CONTINUE" || path(term, "HeartbeatTimeout", "Ref") != "HeartbeatTimeout" {
			t.Errorf("terminate hook %v", term)
		}
	}
	if d, _ := path(m, "Parameters", "HeartbeatTimeout", "Default").(int64); d < 1728 {
		t.Errorf("HeartbeatTimeout default %d < 1728: the hook's global timeout would fall short of 48 h", d)
	}
	launch := path(hooks, "1", "1")
	if path(launch, "LifecycleHookName") != LaunchHookName || path(launch, "LifecycleTransition") != "autoscaling:EC2_INSTANCE_LAUNCHING" ||
		path(launch, "DefaultResult") != "ABANDON" {
		t.Errorf("launch hook %v", launch)
	}
	mixed := path(g, "MixedInstancesPolicy", "Fn::If")
	if path(mixed, "0") != "UseMixed" || path(mixed, "1", "InstancesDistribution", "SpotAllocationStrategy", "Ref") != "SpotAllocationStrategy" {
		t.Errorf("mixed instances policy %v", mixed)
	}

	lt := path(props(resource(t, m, "LaunchTemplate")), "LaunchTemplateData")
	ebs := path(lt, "BlockDeviceMappings", "0", "Ebs")
	if path(ebs, "Encrypted") != true || path(m, "Parameters", "VolumeType", "Default") != "gp3" {
		t.Errorf("root volume %v: want encrypted, gp3 by default", ebs)
	}
	if path(lt, "MetadataOptions", "HttpPutResponseHopLimit") != int64(1) {
		t.Error("IMDS hop limit must be 1 (job containers never reach the instance role)")
	}

	// 9252 only from the worker's security group.
	ing := resources(m, "AWS::EC2::SecurityGroupIngress")
	if len(ing) != 1 {
		t.Fatalf("want one ingress rule, got %d", len(ing))
	}
	for id, r := range ing {
		p := props(r)
		if p["FromPort"] != int64(MetricsPort) || p["ToPort"] != int64(MetricsPort) || path(p, "SourceSecurityGroupId", "Ref") != "WorkerSecurityGroupId" || p["CidrIp"] != nil {
			t.Errorf("%s: %v", id, p)
		}
	}
	if path(props(resource(t, m, "SecurityGroup")), "SecurityGroupIngress") != nil {
		t.Error("SecurityGroup: inline ingress rules")
	}

	// Instance role: the SSM agent's channels for Run Command, and its one token parameter; no
	// other SSM parameter read anywhere in it.
	role := props(resource(t, m, "InstanceRole"))
	if b := path(role, "PermissionsBoundary", "Fn::If"); path(b, "0") != "HasBoundary" || path(b, "1", "Ref") != "InstanceRoleBoundaryArn" {
		t.Errorf("InstanceRole: permissions boundary %v", role["PermissionsBoundary"])
	}
	if role["ManagedPolicyArns"] != nil {
		t.Errorf("InstanceRole: managed policies %v", role["ManagedPolicyArns"])
	}
	if a := list(statementBySid(t, m, "InstanceRole", "RunCommandChannel")["Action"]); len(a) == 0 {
		t.Error("InstanceRole: no Run Command channel")
	}
	reads := 0
	for _, p := range list(role["Policies"]) {
		for _, st := range statements(path(p, "PolicyDocument")) {
			for _, a := range list(st["Action"]) {
				if secretParameterReads.MatchString(a.(string)) {
					reads++
				}
			}
		}
	}
	if reads != 1 {
		t.Errorf("InstanceRole: %d statements read SSM parameters, want 1 (its token)", reads)
	}
	st := statementBySid(t, m, "InstanceRole", "ReadOwnTokenOnly")
	if path(st, "Resource", "Fn::Sub") != "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${TokenParameterName}" {
		t.Errorf("ReadOwnTokenOnly resource %v", st["Resource"])
	}

	// Rules onto the control queue, FIFO group = the fleet.
	for _, id := range []string{"TickRule", "TokenRule", "StackRule"} {
		p := props(resource(t, m, id))
		tg := path(p, "Targets", "0")
		if path(tg, "Arn", "Ref") != "ControlQueueArn" || path(tg, "SqsParameters", "MessageGroupId", "Ref") != "FleetName" {
			t.Errorf("%s target %v", id, tg)
		}
	}
	if path(props(resource(t, m, "TickRule")), "ScheduleExpression") != "rate(1 minute)" {
		t.Error("TickRule: want rate(1 minute)")
	}
	if path(props(resource(t, m, "TokenRule")), "EventPattern", "detail", "name", "0", "Ref") != "TokenParameterName" {
		t.Error("TokenRule: must match the token parameter's name")
	}
	if path(props(resource(t, m, "StackRule")), "EventPattern", "detail", "stack-id", "0", "Ref") != "AWS::StackId" {
		t.Error("StackRule: must match this stack")
	}
}

// The boot script parses as bash once CloudFormation has substituted its parameters.
func TestBootScriptParses(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash: %v", err)
	}
	ud := userData(t, loadTemplate(t, runnerPath))
	if strings.Contains(ud, "${!") {
		t.Fatal("the script escapes ${ with ${! : check it by hand, this test does not model it")
	}
	script := regexp.MustCompile(`\$\{[A-Za-z0-9:]+\}`).ReplaceAllString(ud, "X")
	cmd := exec.Command(bash, "-n")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	// A broken script is caught.
	cmd = exec.Command(bash, "-n")
	cmd.Stdin = strings.NewReader(script + "\nif then\n")
	if err := cmd.Run(); err == nil {
		t.Fatal("bash -n accepted a broken script")
	}
}

// Every string parameter the boot script substitutes is constrained (AllowedPattern or
// AllowedValues), so no parameter value can inject shell; Number parameters are numbers.
func TestBootScriptParametersAreConstrained(t *testing.T) {
	m := loadTemplate(t, runnerPath)
	params, _ := m["Parameters"].(map[string]any)
	used := 0
	for _, mm := range regexp.MustCompile(`\$\{([A-Za-z0-9]+)\}`).FindAllStringSubmatch(userData(t, m), -1) {
		p, ok := params[mm[1]].(map[string]any)
		if !ok {
			continue // a resource or pseudo parameter
		}
		used++
		if p["Type"] == "Number" {
			continue
		}
		if p["AllowedPattern"] == nil && p["AllowedValues"] == nil {
			t.Errorf("%s goes into the boot script unconstrained", mm[1])
		}
	}
	if used < 8 {
		t.Fatalf("found only %d parameters in the boot script", used)
	}
}

func TestGroupAndLaunchTemplateNames(t *testing.T) {
	m := loadTemplate(t, runnerPath)
	n := NamesFor("STACK")
	for id, c := range map[string]struct{ prop, want string }{
		"Group":          {"AutoScalingGroupName", n.Group},
		"LaunchTemplate": {"LaunchTemplateName", n.LaunchTemplate},
	} {
		got := path(props(resource(t, m, id)), c.prop, "Fn::Sub")
		if strings.ReplaceAll(c.want, "STACK", "${AWS::StackName}") != got {
			t.Errorf("%s: %s %v, want %s with the stack name", id, c.prop, got, c.want)
		}
	}
}
