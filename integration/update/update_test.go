package update_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/handlers/update"
	"github.com/runnerfleet/runnerfleet/messages"
)

// TestUpdatePlanAndNoChanges: create the stack from a file, change it, apply the same file again
// (no changes), plan a change (nothing changes), refuse a file with three mistakes (nothing
// sent) — and the token planted in the fleet's parameter appears nowhere.
func TestUpdatePlanAndNoChanges(t *testing.T) {
	e := newEnv(t)

	// The stack does not exist: the update creates it.
	out, code := e.update([]string{"# the first deploy", "TokenParameterName=" + e.tokenPar, "Visibility=30"}, "--wait")
	if code != 0 || !strings.Contains(out, "succeeded (CREATE_COMPLETE") {
		t.Fatalf("create: exit %d\n%s", code, out)
	}
	if status, ps := e.stackParameters(); status != "CREATE_COMPLETE" || ps["Visibility"] != "30" || ps["TokenParameterName"] != e.tokenPar {
		t.Fatalf("after create: %s %v", status, ps)
	}
	// --follow reads the fleet's record: nothing in progress, it says what ended last.
	out, code = e.publisher("update", "--fleet", e.fleet, "--config", e.config, "--follow")
	if code == 0 || !strings.Contains(out, "has no update in progress (last: ") || !strings.Contains(out, "succeeded)") {
		t.Errorf("update --follow with none in progress: exit %d\n%s", code, out)
	}

	// An update changes the stack's parameters; absent ones keep their values.
	change := []string{"Visibility=60", "InstanceType=t3.large"}
	out, code = e.update(change, "--wait")
	if code != 0 || !strings.Contains(out, "succeeded (UPDATE_COMPLETE") {
		t.Fatalf("update: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, "UPDATE_COMPLETE") || !strings.Contains(out, "AWS::CloudFormation::Stack") {
		t.Errorf("--wait showed no stack events:\n%s", out)
	}
	status, ps := e.stackParameters()
	if status != "UPDATE_COMPLETE" || ps["Visibility"] != "60" || ps["InstanceType"] != "t3.large" || ps["TokenParameterName"] != e.tokenPar {
		t.Fatalf("after update: %s %v", status, ps)
	}

	// The same file again: no changes, a clean success.
	out, code = e.update(change, "--wait")
	if code != 0 || !strings.Contains(out, "no changes") {
		t.Fatalf("same file again: exit %d\n%s", code, out)
	}
	if r := e.record(); r.Outcome != update.OutcomeNoChanges {
		t.Errorf("record after the same file: %+v", r)
	}

	// --plan prints the change set and changes nothing.
	out, code = e.update([]string{"Visibility=90", "InstanceType=t3.large"}, "--plan")
	if code != 0 || !strings.Contains(out, "planned:") || !strings.Contains(out, "change set runnerfleet-") {
		t.Fatalf("plan: exit %d\n%s", code, out)
	}
	if r := e.record(); r.Outcome != update.OutcomePlanned || !r.Plan {
		t.Errorf("record after the plan: %+v", r)
	}
	if status, ps := e.stackParameters(); status != "UPDATE_COMPLETE" || ps["Visibility"] != "60" {
		t.Errorf("the plan changed the stack: %s %v", status, ps)
	}

	// A file with three mistakes: all listed with their lines, non-zero exit, nothing published.
	before := e.record()
	out, code = e.update([]string{"# three mistakes", "Colour2=red", "Visibility=sixty", "this is not a property"}, "--wait")
	if code == 0 {
		t.Fatalf("three mistakes: exit 0\n%s", out)
	}
	for _, want := range []string{"line 2: unknown key Colour2", "line 3: Visibility: \"sixty\" is not a number", "line 4: not a Key=Value line"} {
		if !strings.Contains(out, want) {
			t.Errorf("three mistakes: %q missing from\n%s", want, out)
		}
	}
	// Nothing was published: a tick sent now is the next message the worker sees (FIFO per fleet).
	seenBefore := strings.Count(e.seen.String(), `"kind":"command"`)
	tickOut, code := e.publisher("tick", "--fleet", e.fleet, "--config", e.config)
	if code != 0 {
		t.Fatalf("tick: %s", tickOut)
	}
	tickID := strings.TrimSpace(tickOut)
	eventually(t, "the worker sees the tick", func() bool { return strings.Contains(e.seen.String(), tickID) })
	if n := strings.Count(e.seen.String(), `"kind":"command"`); n != seenBefore+1 {
		t.Errorf("the worker saw %d commands since the bad file, want only the tick", n-seenBefore)
	}
	if after := e.record(); after.CommandID != before.CommandID {
		t.Errorf("the bad file started update %s", after.CommandID)
	}

	// The canary token: in no output, log line, message, metric or record.
	all := e.everything()
	// The corpus holds the run: the token parameter's name (in the stack parameters the worker
	// logs nothing of, but in the files and records), the commands and the update metrics.
	for _, want := range []string{e.tokenPar, `"type":"update"`, "runnerfleet_update_finished_total", "command accepted"} {
		if !strings.Contains(all, want) {
			t.Errorf("the grep corpus misses %q: it does not cover the run", want)
		}
	}
	if strings.Contains(all, canary) || strings.Contains(all, "CANARY") {
		t.Errorf("the token parameter's value leaked")
	}
}

// TestCommandSafety: a stale command, a command for an unknown fleet and a repeated command id
// are refused, each with its reason in the DLQ and a log line; an accepted one is audited with
// its SQS sender.
func TestCommandSafety(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	stale := messages.NewCommand(e.fleet, messages.CommandTick, now.Add(-time.Hour))
	ghost := messages.NewCommand("ghost-fleet", messages.CommandTick, now)
	repeated := messages.NewCommand(e.fleet, messages.CommandTick, now)
	e.publishRaw(stale, "stale")
	e.publishRaw(ghost, "ghost")
	e.publishRaw(repeated, "first")
	// SQS would drop the same deduplication id within five minutes; a repeat later carries another.
	e.publishRaw(repeated, "second")

	dead := e.deadLetters(3)
	reasons := map[string]string{}
	for body, reason := range dead {
		switch {
		case strings.Contains(body, stale.ID):
			reasons["stale"] = reason
		case strings.Contains(body, ghost.ID):
			reasons["ghost"] = reason
		case strings.Contains(body, repeated.ID):
			reasons["repeated"] = reason
		}
	}
	for name, want := range map[string]string{"stale": "is stale", "ghost": `unknown fleet "ghost-fleet"`, "repeated": "already accepted"} {
		if !strings.Contains(reasons[name], want) {
			t.Errorf("%s: DLQ reason %q, want %q (dead letters: %v)", name, reasons[name], want, dead)
		}
	}
	logs := e.logs.String()
	if n := strings.Count(logs, `"msg":"command refused"`); n != 3 {
		t.Errorf("%d refusal log lines, want 3", n)
	}
	audit := grepLines(logs, `"msg":"command accepted"`)
	if !regexp.MustCompile(`"sender_id":"[A-Z0-9]{12,}"`).MatchString(audit) || !strings.Contains(audit, repeated.ID) {
		t.Errorf("no audit line with the SQS sender for %s:\n%s", repeated.ID, audit)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAFailedUpdateIsReportedWithItsReason: an update the stack rolls back ends --wait with a
// non-zero exit and the failure's reason; the stack keeps its previous parameters.
func TestAFailedUpdateIsReportedWithItsReason(t *testing.T) {
	e := newEnv(t)
	e.override = "testdata/group.yaml"
	out, code := e.update([]string{"Desired=1"}, "--wait")
	if code != 0 || !strings.Contains(out, "succeeded (CREATE_COMPLETE") {
		t.Fatalf("create: exit %d\n%s", code, out)
	}
	out, code = e.update([]string{"Desired=2", "Subnet=subnet-00000000doesnotexist"}, "--wait")
	if code == 0 {
		t.Fatalf("a failing update exited 0:\n%s", out)
	}
	if !strings.Contains(out, "failed (UPDATE_ROLLBACK_COMPLETE)") || !strings.Contains(out, "subnet-00000000doesnotexist") {
		t.Errorf("no outcome line with the reason:\n%s", out)
	}
	if !strings.Contains(out, "UPDATE_ROLLBACK_IN_PROGRESS") {
		t.Errorf("--wait did not show the rollback as it happened:\n%s", out)
	}
	r := e.record()
	if r.Outcome != update.OutcomeFailed || r.Reason == "" || r.StackStatus != "UPDATE_ROLLBACK_COMPLETE" {
		t.Errorf("record = %+v", r)
	}
	if status, ps := e.stackParameters(); status != "UPDATE_ROLLBACK_COMPLETE" || ps["Desired"] != "1" {
		t.Errorf("after the rollback: %s %v", status, ps)
	}
}

// TestTicksFollowTheStack: without the stack's status events, each tick of the fleet takes one
// step; the update finishes on a tick.
func TestTicksFollowTheStack(t *testing.T) {
	e := newEnv(t, envOptions{noStackRule: true})
	out, code := e.update([]string{"TokenParameterName=" + e.tokenPar})
	if code != 0 {
		t.Fatalf("update: exit %d\n%s", code, out)
	}
	id := strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
	eventually(t, "the change set executes", func() bool {
		r, ok := e.tryRecord()
		return ok && r.CommandID == id && r.Phase == update.PhaseExecuting
	})
	if r := e.record(); r.Finished() {
		t.Fatalf("finished without a tick: %+v", r)
	}
	steps := e.record().Steps
	if out, code := e.publisher("tick", "--fleet", e.fleet, "--config", e.config); code != 0 {
		t.Fatalf("tick: %s", out)
	}
	eventually(t, "a tick finishes the update", func() bool { return e.record().Finished() })
	if r := e.record(); r.Outcome != update.OutcomeSucceeded || r.Steps != steps+1 {
		t.Errorf("after one tick: %+v (steps before %d)", r, steps)
	}
}
