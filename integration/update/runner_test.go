package update_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ec2"

	runner "github.com/runnerfleet/runnerfleet/deploy/runner"
	"github.com/runnerfleet/runnerfleet/handlers/update"
	"github.com/runnerfleet/runnerfleet/infra/properties"
	"github.com/runnerfleet/runnerfleet/integration/deploy"
)

// TestTheRunnerTemplate: the worker applies the runner template it embeds. A properties file
// creates the fleet stack; a plan of another runner setting lists the launch template as modified
// and changes nothing.
func TestTheRunnerTemplate(t *testing.T) {
	e := newEnv(t, envOptions{runnerTemplate: true})
	ctx := context.Background()
	net, err := deploy.Discover(ctx, ec2.NewFromConfig(e.awsCfg))
	if err != nil {
		t.Fatal(err)
	}
	queueName := e.control[strings.LastIndex(e.control, "/")+1:]
	params := deploy.Fleet{Stack: e.stack, Name: e.fleet, TokenParameter: e.tokenPar, Min: 1, Max: 3,
		ControlQueueArn: "arn:aws:sqs:us-east-1:123456789012:" + queueName}.Parameters(net)
	names, err := properties.ParameterNames(runner.Template)
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, n := range names {
		known[n] = true
	}
	var lines []string
	for k, v := range params {
		if known[k] && v != "" {
			lines = append(lines, fmt.Sprintf("%s=%s", k, v))
		}
	}
	sort.Strings(lines)

	out, code := e.update(lines, "--wait")
	if code != 0 || !strings.Contains(out, "succeeded (CREATE_COMPLETE") {
		t.Fatalf("create from the runner template: exit %d\n%s", code, out)
	}
	if r := e.record(); r.Type != "CREATE" || len(r.Changes) == 0 {
		t.Errorf("record = %+v", r)
	}

	// A plan of a new runner setting: the launch template would be modified; nothing changes.
	// Executing an update of this stack is left to the small template's tests: in the emulator it
	// rolls back ("AttributeError: 'NoneType' object has no attribute 'name'"), and DescribeStacks
	// shows List parameters as "['subnet-a', 'subnet-b']" where AWS shows "subnet-a,subnet-b", so
	// the same file again is not recognised as no changes there.
	change := append(append([]string{}, lines...), "Concurrent=3")
	out, code = e.update(change, "--plan")
	if code != 0 || !strings.Contains(out, "planned:") {
		t.Fatalf("plan: exit %d\n%s\nemulator:\n%s", code, out, tailLines(e.emu.Output(), 20))
	}
	r := e.record()
	modified := false
	for _, c := range r.Changes {
		if c.LogicalID == "LaunchTemplate" && c.Action == "Modify" {
			modified = true
		}
	}
	if !modified || !strings.Contains(out, "LaunchTemplate") {
		t.Errorf("the launch template is not among the planned changes: %s", update.Summary(r.Changes))
	}
	if status, ps := e.stackParameters(); status != "CREATE_COMPLETE" || ps["Concurrent"] == "3" || ps["TokenParameterName"] != e.tokenPar {
		t.Errorf("after the plan: %s %v", status, ps)
	}
}

func tailLines(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
