package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/smithy-go"

	"github.com/runnerfleet/runnerfleet/handlers/update"
	"github.com/runnerfleet/runnerfleet/infra/aws/stacks"
)

// update --wait does not know the outcome when it cannot read the record or when another update
// takes the fleet's record before this one is seen to end: exit status 3, never 1 ("failed").
func TestFollowUpdateUnknownOutcomes(t *testing.T) {
	now := time.Date(2026, 11, 27, 18, 0, 0, 0, time.UTC)
	accepted := takeCheck{what: "update u1 of fleet blue", deadline: now.Add(time.Hour), now: func() time.Time { return now },
		fate: ledgerSays("", true)}
	reads := 0
	expired := func(context.Context, string, string) ([]byte, bool, error) {
		reads++
		return nil, false, errors.New("ExpiredTokenException: the security token included in the request is expired")
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := follow(ctx, &out, followOptions{load: expired, fleet: "blue", commandID: "u1", interval: time.Millisecond, taken: accepted})
	if err == nil || exitStatus(err) != exitUnknown || !strings.Contains(err.Error(), "ExpiredTokenException") {
		t.Fatalf("failed reads: %v (exit %d); want exit 3 naming the last failed read", err, exitStatus(err))
	}
	if reads < 2 || strings.Count(out.String(), "ExpiredTokenException") != 1 {
		t.Errorf("%d reads, output %q: want reads retried and the error printed once", reads, out.String())
	}

	body := func(id, phase string) []byte {
		b, err := json.Marshal(update.Record{CommandID: id, Fleet: "blue", Phase: phase})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	seq := [][]byte{body("u1", update.PhaseExecuting), body("u2", update.PhaseExecuting)}
	n := 0
	moved := func(context.Context, string, string) ([]byte, bool, error) {
		b := seq[min(n, len(seq)-1)]
		n++
		return b, true, nil
	}
	out.Reset()
	err = follow(context.Background(), &out, followOptions{load: moved, fleet: "blue", commandID: "u1", interval: time.Millisecond, taken: accepted})
	if err == nil || exitStatus(err) != exitUnknown || !strings.Contains(err.Error(), "now holds update u2") {
		t.Fatalf("record taken by another update: %v (exit %d); want exit 3 at once", err, exitStatus(err))
	}
}

// A mistyped fleet is named as such (not as a missing stack), a --stack other than the one the
// worker updates is refused, and so is a negative --timeout: all before anything is sent.
func TestUpdateRefusesWhatWouldMislead(t *testing.T) {
	t.Setenv("RUNNERFLEET_CONFIG", "")
	t.Setenv("RUNNERFLEET_CONFIG_PARAMETER", "")
	cfg := writeUpdateFile(t, "w.yaml", "fleets: [{name: blue, group: blue-asg, stack: blue}]\n")
	props := writeUpdateFile(t, "ok.properties", "MaxSize=3\n")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--fleet", "typo", "--wait"}, `fleet "typo" is not in the worker's configuration`},
		{[]string{"--fleet", "blue", "--stack", "green", "--dry-run"}, "--stack green is not fleet blue's stack blue"},
		{[]string{"--fleet", "blue", "--timeout", "-5m", "--wait"}, "--timeout -5m0s"},
	} {
		args := append([]string{"update", "--config", cfg, "--properties", props}, tc.args...)
		_, err := execute(t, args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v; want %q", tc.args, err, tc.want)
		}
	}
	// --dry-run asks nothing of AWS, even with a config that names the stack.
	if _, err := execute(t, "update", "--config", cfg, "--properties", props, "--fleet", "blue", "--dry-run"); err != nil {
		t.Errorf("dry run: %v", err)
	}
}

// deniedEvents is a CloudFormation client whose DescribeStackEvents is refused (the operator's
// credentials lack cloudformation:DescribeStackEvents); update --wait reads nothing else of it.
type deniedEvents struct{ stacks.API }

func (deniedEvents) DescribeStackEvents(context.Context, *cloudformation.DescribeStackEventsInput, ...func(*cloudformation.Options)) (*cloudformation.DescribeStackEventsOutput, error) {
	return nil, &smithy.GenericAPIError{Code: "AccessDenied", Message: "not authorized to perform: cloudformation:DescribeStackEvents"}
}

// Unreadable stack events are said once, not dropped: a missing permission would otherwise look
// like a stack with no events while the update is followed to its end.
func TestFollowUpdateSaysWhenEventsAreUnreadable(t *testing.T) {
	cf, err := stacks.New(deniedEvents{})
	if err != nil {
		t.Fatal(err)
	}
	body := func(phase, outcome string) []byte {
		b, err := json.Marshal(update.Record{CommandID: "u1", Fleet: "blue", Phase: phase, Outcome: outcome})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	seq := [][]byte{body(update.PhaseExecuting, ""), body(update.PhaseExecuting, ""), body(update.PhaseDone, update.OutcomeSucceeded)}
	n := 0
	load := func(context.Context, string, string) ([]byte, bool, error) {
		b := seq[min(n, len(seq)-1)]
		n++
		return b, true, nil
	}
	var out bytes.Buffer
	if err := follow(context.Background(), &out, followOptions{load: load, cf: cf, events: true, fleet: "blue", stack: "runner-blue",
		commandID: "u1", interval: time.Millisecond}); err != nil {
		t.Fatalf("follow: %v", err)
	}
	if got := strings.Count(out.String(), "stack events of runner-blue unreadable"); got != 1 || !strings.Contains(out.String(), "DescribeStackEvents") {
		t.Errorf("output %q: want the unreadable events said once, with AWS's reason", out.String())
	}
}
