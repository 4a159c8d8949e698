package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runnerfleet/runnerfleet/messages"
)

func writeUpdateFile(t *testing.T, name, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestUpdateListsEveryMistakeWithItsLineAndSendsNothing(t *testing.T) {
	file := writeUpdateFile(t, "fleet.properties", strings.Join([]string{
		"# three mistakes",
		"Colour=blue",
		"VolumeSize=big",
		"this line is not a property",
		"InstanceType=t3.large",
	}, "\n"))
	// The queue URL is unreachable: had anything been sent, the error would say so.
	out, err := execute(t, "update", "--fleet", "blue", "--queue", "http://127.0.0.1:1/q.fifo", "--properties", file)
	if err == nil {
		t.Fatalf("no error; output:\n%s", out)
	}
	msg := err.Error()
	for _, want := range []string{"line 2: unknown key Colour", "line 3: VolumeSize: \"big\" is not a number", "line 4: not a Key=Value line"} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "publishing") || strings.Count(msg, "line ") != 3 {
		t.Errorf("want exactly the three problems and nothing sent:\n%s", msg)
	}
}

func TestUpdateAnswersDroppedSampleKeysWithoutTheirValues(t *testing.T) {
	file := writeUpdateFile(t, "sample.properties", "RunnersToken=glrt-canary-0123456789\nLambdaS3Bucket=my-bucket\nMaxBatchSize=2\n")
	_, err := execute(t, "update", "--fleet", "blue", "--queue", "q.fifo", "--properties", file, "--dry-run")
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{"line 1: RunnersToken is no longer used", "SecureString", "line 2: LambdaS3Bucket", "line 3: MaxBatchSize", "publisher cycle"} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "glrt-canary") {
		t.Errorf("the token is quoted back:\n%s", msg)
	}
}

func TestUpdateDryRunCarriesTheParametersOnly(t *testing.T) {
	file := writeUpdateFile(t, "ok.properties", "VolumeSize=200\nInstanceType=t3.large\n")
	out, err := execute(t, "update", "--fleet", "blue", "--config", writeConfig(t), "--properties", file, "--dry-run")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// Notes about sample keys come first (stderr), the message after.
	if !strings.Contains(out, "note: line 2: InstanceType: ExtraInstanceTypes") {
		t.Errorf("no note for the sample key InstanceType:\n%s", out)
	}
	var got struct {
		Body json.RawMessage `json:"body"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "\n{")+1:]), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	m, err := messages.Parse(got.Body)
	if err != nil {
		t.Fatal(err)
	}
	c := m.Payload.(*messages.Command)
	if c.Type != messages.CommandUpdate || c.Update.Parameters["VolumeSize"] != "200" || len(c.Update.Parameters) != 2 ||
		c.Update.TemplateBody != "" || c.Update.Plan {
		t.Errorf("command = %+v / %+v", c, c.Update)
	}
}

func TestUpdateWithItsOwnTemplate(t *testing.T) {
	tmpl := writeUpdateFile(t, "t.yaml", "Parameters:\n  Size: {Type: Number, MaxValue: 5}\nResources: {}\n")
	file := writeUpdateFile(t, "p.properties", "Size=9\n")
	_, err := execute(t, "update", "--fleet", "blue", "--queue", "q.fifo", "--properties", file, "--template", tmpl, "--dry-run")
	if err == nil || !strings.Contains(err.Error(), "line 1: Size: \"9\" is above MaxValue 5") {
		t.Errorf("err = %v", err)
	}
	big := writeUpdateFile(t, "big.yaml", "Parameters: {}\n#"+strings.Repeat("x", messages.MaxTemplateBody))
	if _, err := execute(t, "update", "--fleet", "blue", "--queue", "q.fifo", "--properties", file, "--template", big, "--dry-run"); err == nil ||
		!strings.Contains(err.Error(), "51200") {
		t.Errorf("a too large template: %v", err)
	}
}

// A properties file written for the AWS sample, key for key (values made up): the keys that
// still make sense pass, each that does not says what replaced it, and no value of a token key
// is quoted back.
func TestUpdateWithAnAWSSampleFile(t *testing.T) {
	sample := strings.Join([]string{
		"VpcID=vpc-0123456789abcdef0", "SubnetIds=subnet-0123456789abcdef0,subnet-0123456789abcdef1",
		"ImageId=ami-0123456789abcdef0", "InstanceType=t3.micro", "InstanceName=runner", "VolumeSize=200",
		"VolumeType=gp2", "MaxSize=4", "MinSize=1", "DesiredCapacity=1", "MaxBatchSize=1", "MinInstancesInService=1",
		"MaxInstanceLifetime=604800", `GitlabServerURL="https://gitlab.example.com"`, `DockerImagePath="alpine:3"`,
		"RunnersToken=regtokenAAAA1111,regtokenBBBB2222", "RunnerVersion=v1", "RunnerEnvironment=dev",
		"LambdaS3Bucket=some-bucket", "Concurrent=2", "CheckInterval=3", "CostCenter=10000", "AppId=1111",
	}, "\n")
	file := writeUpdateFile(t, "sample-runner.properties", sample)
	_, err := execute(t, "update", "--fleet", "blue", "--queue", "q.fifo", "--properties", file, "--dry-run")
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	wantLines := map[int]string{
		7: "VolumeType", 11: "MaxBatchSize is no longer used", 12: "MinInstancesInService is no longer used",
		16: "RunnersToken is no longer used", 17: "RunnerVersion is no longer used", 18: "RunnerEnvironment is no longer used",
		19: "LambdaS3Bucket is no longer used",
	}
	for line, want := range wantLines {
		if !strings.Contains(msg, fmt.Sprintf("line %d: %s", line, want)) {
			t.Errorf("missing line %d (%s) in:\n%s", line, want, msg)
		}
	}
	if n := strings.Count(msg, "\n  line "); n != len(wantLines) {
		t.Errorf("%d problems, want %d:\n%s", n, len(wantLines), msg)
	}
	if strings.Contains(msg, "regtoken") {
		t.Errorf("a token value is quoted back:\n%s", msg)
	}
}

// A fleet that does not accept custom templates (the default) refuses --template before anything
// is sent: the worker would reject the command. With allow_custom_template the command carries it.
func TestUpdateTemplateOnlyWhereTheFleetAcceptsOne(t *testing.T) {
	tmpl := writeUpdateFile(t, "t.yaml", "Parameters:\n  Size: {Type: Number}\nResources: {}\n")
	file := writeUpdateFile(t, "p.properties", "Size=3\n")
	_, err := execute(t, "update", "--fleet", "blue", "--config", writeConfig(t), "--properties", file, "--template", tmpl, "--dry-run")
	if err == nil || !strings.Contains(err.Error(), "allow_custom_template") {
		t.Fatalf("err = %v, want the refusal naming allow_custom_template", err)
	}
	cfg := filepath.Join(t.TempDir(), "w.yaml")
	if err := os.WriteFile(cfg, []byte("fleets: [{name: blue, group: blue-asg, allow_custom_template: true}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := execute(t, "update", "--fleet", "blue", "--config", cfg, "--properties", file, "--template", tmpl, "--dry-run")
	if err != nil || !strings.Contains(out, "Size: {Type: Number}") {
		t.Fatalf("allowed: %v\n%s", err, out)
	}
}

// --follow sends nothing, so it takes none of the flags that make an update.
func TestUpdateFollowRefusesCommandFlags(t *testing.T) {
	for _, extra := range [][]string{{"--properties", "x.properties"}, {"--plan"}, {"--wait"}, {"--dry-run"}, {"--template", "t.yaml"}} {
		args := append([]string{"update", "--fleet", "blue", "--follow", "--config", writeConfig(t)}, extra...)
		if _, err := execute(t, args...); err == nil || !strings.Contains(err.Error(), "--follow sends nothing") {
			t.Errorf("update --follow %v: err %v, want it refused", extra, err)
		}
	}
}
