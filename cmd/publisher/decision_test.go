package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"

	"github.com/runnerfleet/runnerfleet/handlers/scale"
	"github.com/runnerfleet/runnerfleet/infra/router"
)

// ledgerSays is a command ledger that always reads the same: refused (a reason) or not, seen or
// not.
func ledgerSays(refused string, seen bool) func(context.Context) (router.LedgerEntry, bool, error) {
	return func(context.Context) (router.LedgerEntry, bool, error) {
		return router.LedgerEntry{Refused: refused}, seen, nil
	}
}

// replay returns the items of seq in turn, repeating the last one; safe for concurrent use.
type replay[T any] struct {
	mu  sync.Mutex
	seq []T
	n   int
}

func (r *replay[T]) next() T {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.seq[min(r.n, len(r.seq)-1)]
	r.n++
	return v
}

type ledgerRead struct {
	entry router.LedgerEntry
	seen  bool
}

var (
	tAccepted = time.Date(2026, 11, 27, 3, 12, 5, 0, time.UTC)
	tDecided  = tAccepted.Add(time.Second)
)

// watch is a decisionWatch over replayed reads of the ledger, the scale record and (non-nil
// groups) the group, for command c1 of fleet blue.
func watch(ledger []ledgerRead, recs []scale.Record, groups []groupSight) decisionWatch {
	lr, rr := &replay[ledgerRead]{seq: ledger}, &replay[scale.Record]{seq: recs}
	now := tAccepted
	d := decisionWatch{
		taken: takeCheck{what: "scale c1 of fleet blue", deadline: now.Add(time.Hour), now: func() time.Time { return now },
			fate: func(context.Context) (router.LedgerEntry, bool, error) { l := lr.next(); return l.entry, l.seen, nil }},
		record:   func(context.Context) (scale.Record, error) { return rr.next(), nil },
		fleet:    "blue",
		id:       "c1",
		what:     "scale c1 of fleet blue",
		interval: time.Millisecond,
	}
	if groups != nil {
		gr := &replay[groupSight]{seq: groups}
		d.group = func(context.Context) (groupSight, error) { return gr.next(), nil }
	}
	return d
}

var (
	notYet   = ledgerRead{}
	accepted = ledgerRead{entry: router.LedgerEntry{AcceptedAt: tAccepted}, seen: true}
	before   = scale.Record{LastMessageID: "tick-0", LastDecision: tAccepted.Add(-time.Minute), LastReason: "steady: an earlier tick", LastDesired: new(2), LastAction: "steady"}
)

// bounded is a context that ends a follow a regression would keep waiting (a failure, not a hang).
func bounded(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func decision(desired int, action, reason string) scale.Record {
	return scale.Record{LastMessageID: "c1", LastDecision: tDecided, LastReason: reason, LastDesired: new(desired), LastAction: action}
}

// tick --wait: the worker takes the command, and the decision it recorded is printed.
func TestFollowDecisionPrintsTheTakenCommandsDecision(t *testing.T) {
	d := watch([]ledgerRead{notYet, accepted},
		[]scale.Record{before, before, decision(4, "scale_out", "scale out 2 → 4: want 8 slots")}, nil)
	var out bytes.Buffer
	if err := followDecision(bounded(t), &out, d); err != nil {
		t.Fatalf("follow: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{
		"waiting for the worker to take scale c1 of fleet blue",
		"the worker took the command at 03:12:05",
		"decided at 03:12:06: desired 4 (scale_out): scale out 2 → 4: want 8 slots",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "an earlier tick") || strings.Count(s, "the worker took") != 1 {
		t.Errorf("an earlier decision shown as this one's, or the take said twice:\n%s", s)
	}
}

// A refusal ends the wait at once with the worker's reason and exit status 1: by the command
// checks before the worker takes it, or by the handler after (the ledger first says accepted).
func TestFollowDecisionRefused(t *testing.T) {
	reason := "scale command c1: its pin for 5m0s, issued 6m0s ago, has already run out"
	for name, ledger := range map[string][]ledgerRead{
		"by the checks":  {notYet, {entry: router.LedgerEntry{Refused: "command c1 is stale"}, seen: true}},
		"by the handler": {accepted, {entry: router.LedgerEntry{AcceptedAt: tAccepted, Refused: reason}, seen: true}},
	} {
		d := watch(ledger, []scale.Record{before}, []groupSight{{Name: "blue-asg", Desired: 2, Max: 4}})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var out bytes.Buffer
		err := followDecision(ctx, &out, d)
		cancel()
		want := ledger[len(ledger)-1].entry.Refused
		if err == nil || exitStatus(err) != 1 || !strings.Contains(err.Error(), "the worker refused scale c1 of fleet blue: "+want) {
			t.Errorf("%s: %v (exit %d); want exit 1 with the worker's reason %q\n%s", name, err, exitStatus(err), want, out.String())
		}
	}
}

// What --wait does not see by its timeout is an unknown outcome (exit status 3), never a failure,
// and the error says what was still awaited.
func TestFollowDecisionTimeouts(t *testing.T) {
	group := groupSight{Name: "blue-asg", Desired: 2, Min: 1, Max: 8, InService: 2}
	for _, tc := range []struct {
		name   string
		ledger []ledgerRead
		recs   []scale.Record
		want   string
	}{
		{"never taken", []ledgerRead{notYet}, []scale.Record{before}, "waiting for the worker to take scale c1 of fleet blue: gave up waiting"},
		{"taken, no decision", []ledgerRead{accepted}, []scale.Record{before}, "the worker took it, and its decision did not show"},
		{"decided, group not there", []ledgerRead{accepted}, []scale.Record{decision(5, "scale_out", "pinned at 5")},
			"the worker decided desired 5 at 2026-11-27T03:12:06Z, and the group did not get there (group blue-asg: desired 2"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		var out bytes.Buffer
		err := followDecision(ctx, &out, watch(tc.ledger, tc.recs, []groupSight{group}))
		cancel()
		if err == nil || exitStatus(err) != exitUnknown || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v (exit %d); want exit 3 saying %q\n%s", tc.name, err, exitStatus(err), tc.want, out.String())
		}
	}

	// Past the deadline when the worker would refuse it as stale: exit 3 at once, no timeout.
	d := watch([]ledgerRead{notYet}, []scale.Record{before}, nil)
	d.taken.deadline = tAccepted.Add(-time.Second)
	var out bytes.Buffer
	if err := followDecision(bounded(t), &out, d); exitStatus(err) != exitUnknown || !strings.Contains(err.Error(), "has not taken scale c1") {
		t.Errorf("never taken by the deadline: %v (exit %d)", err, exitStatus(err))
	}
}

// scale --wait: after the decision, it waits until the group's desired capacity is what the
// worker applied, prints the group, and says why that is not the pin: here the group's MaxSize.
func TestFollowDecisionWaitsForTheGroupAndExplainsTheGap(t *testing.T) {
	pinned := decision(4, "scale_out", "pinned at 4: scale out 2 → 4: want 2 slots")
	pinned.Pin = &scale.Pin{Desired: 6, CommandID: "c1"}
	d := watch([]ledgerRead{accepted}, []scale.Record{pinned}, []groupSight{
		{Name: "blue-asg", Desired: 2, Min: 1, Max: 4, InService: 2},
		{Name: "blue-asg", Desired: 4, Min: 1, Max: 4, InService: 2, Launching: 2},
	})
	d.pin = new(6)
	var out bytes.Buffer
	if err := followDecision(bounded(t), &out, d); err != nil {
		t.Fatalf("follow: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{
		"decided at 03:12:06: desired 4 (scale_out): pinned at 4: scale out 2 → 4",
		"group blue-asg: desired 2 (min 1, max 4), 2 in service",
		"group blue-asg: desired 4 (min 1, max 4), 2 in service, 2 launching",
		"the pin asks for 6; the worker applied 4: the group's MaxSize is 4",
		"scale c1 of fleet blue: done: the group's desired capacity is 4, as the worker applied (2 in service, 2 launching: not waited for",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if lines := strings.Split(strings.TrimSpace(s), "\n"); !strings.Contains(lines[len(lines)-1], "done:") {
		t.Errorf("the last line is not the outcome:\n%s", s)
	}

	// Held by a cycle: the decision kept the capacity; nothing to wait for, and it says so.
	held := decision(3, scale.ActionHeld, "held: a cycle is in progress and owns the desired capacity; ...")
	held.Pin = &scale.Pin{Desired: 6, CommandID: "c1"}
	d = watch([]ledgerRead{accepted}, []scale.Record{held}, []groupSight{{Name: "blue-asg", Desired: 5, Max: 8, InService: 5}})
	d.pin = new(6)
	out.Reset()
	if err := followDecision(bounded(t), &out, d); err != nil || !strings.Contains(out.String(), "taken, and held: a cycle owns") ||
		!strings.Contains(out.String(), "the pin applies from the first tick after it") {
		t.Errorf("held: %v\n%s", err, out.String())
	}
}

// A later tick that decided before this command's decision was read shows as the latest, not as
// this command's, and ends tick --wait (the command was taken).
func TestFollowDecisionAfterALaterTick(t *testing.T) {
	later := scale.Record{LastMessageID: "tick-9", LastDecision: tAccepted.Add(30 * time.Second), LastReason: "steady: want 2 slots", LastDesired: new(2), LastAction: "steady"}
	d := watch([]ledgerRead{accepted}, []scale.Record{later}, nil)
	var out bytes.Buffer
	if err := followDecision(bounded(t), &out, d); err != nil {
		t.Fatalf("follow: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "a later tick decided before this command's decision was read") || !strings.Contains(out.String(), "steady: want 2 slots") {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestPinGap(t *testing.T) {
	g := groupSight{Min: 1, Max: 4}
	for _, tc := range []struct {
		asked, applied int
		action         string
		g              groupSight
		want           string
	}{
		{3, 3, "scale_out", g, ""},
		{6, 4, "scale_out", g, "the group's MaxSize is 4"},
		{0, 1, "scale_in", g, "the group's MinSize is 1"},
		{1, 3, "steady", g, "instances above the pin are busy"},
		{6, 2, scale.ActionHeld, g, "the tick was held"},
		{3, 0, "steady", groupSight{}, "the group's MaxSize is 0: the fleet is switched off"},
	} {
		got := pinGap(tc.asked, tc.applied, tc.action, tc.g)
		if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("pin %d, applied %d (%s, min %d max %d): %q, want %q", tc.asked, tc.applied, tc.action, tc.g.Min, tc.g.Max, got, tc.want)
		}
	}
}

// fakeGroups answers DescribeAutoScalingGroups with one group, or none.
type fakeGroups struct{ group *astypes.AutoScalingGroup }

func (f fakeGroups) DescribeAutoScalingGroups(context.Context, *autoscaling.DescribeAutoScalingGroupsInput, ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingGroupsOutput, error) {
	out := &autoscaling.DescribeAutoScalingGroupsOutput{}
	if f.group != nil {
		out.AutoScalingGroups = []astypes.AutoScalingGroup{*f.group}
	}
	return out, nil
}

func TestDescribeGroupCounts(t *testing.T) {
	inst := func(st astypes.LifecycleState) astypes.Instance { return astypes.Instance{LifecycleState: st} }
	g := &astypes.AutoScalingGroup{DesiredCapacity: aws.Int32(5), MinSize: aws.Int32(1), MaxSize: aws.Int32(8), Instances: []astypes.Instance{
		inst(astypes.LifecycleStateInService), inst(astypes.LifecycleStateInService), inst(astypes.LifecycleStatePending),
		inst(astypes.LifecycleStatePendingWait), inst(astypes.LifecycleStateTerminatingWait), inst(astypes.LifecycleStateStandby),
	}}
	got, err := describeGroup(context.Background(), fakeGroups{g}, "blue-asg")
	want := groupSight{Name: "blue-asg", Desired: 5, Min: 1, Max: 8, InService: 2, Launching: 2, Leaving: 1}
	if err != nil || got != want {
		t.Errorf("describe: %+v, %v; want %+v", got, err, want)
	}
	if _, err := describeGroup(context.Background(), fakeGroups{}, "gone"); !errors.Is(err, scale.ErrGroupNotFound) {
		t.Errorf("missing group: %v, want ErrGroupNotFound", err)
	}
}

// --wait is refused before anything is sent when it could not read what it waits for, or would
// end at once; --dry-run prints the message and waits for nothing.
func TestTickAndScaleWaitFlags(t *testing.T) {
	t.Setenv("RUNNERFLEET_CONFIG", "")
	t.Setenv("RUNNERFLEET_CONFIG_PARAMETER", "")
	t.Setenv(envStateTable, "")
	cfg := writeConfig(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"tick", "--fleet", "blue", "--config", cfg, "--wait", "--timeout", "0s"}, "--timeout 0s: want a positive duration"},
		{[]string{"scale", "--fleet", "blue", "--config", cfg, "--desired", "2", "--wait", "--timeout", "-1m"}, "--timeout -1m0s"},
		{[]string{"tick", "--fleet", "blue", "--queue", "q", "--wait"}, "--wait reads the worker's state table: pass --table or --config"},
		{[]string{"scale", "--fleet", "blue", "--queue", "q", "--desired", "2", "--wait", "--table", "t"}, "scale --wait needs the worker's configuration"},
		{[]string{"scale", "--fleet", "blue", "--config", cfg, "--wait"}, "pass --desired N"},
	} {
		out, err := execute(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
		if out != "" {
			t.Errorf("%v: printed %q although refused (nothing is sent)", tc.args, out)
		}
	}
	for _, cmd := range [][]string{{"tick"}, {"scale", "--desired", "2"}} {
		args := append(cmd, "--fleet", "blue", "--config", cfg, "--wait", "--dry-run")
		if out, err := execute(t, args...); err != nil || !strings.Contains(out, `"body"`) || strings.Contains(out, "waiting") {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
}

// scale --wait: a decision whose Auto Scaling call failed (written in the record after it) ends
// the wait with the refusal and exit status 1, not a timeout on a group that will not move.
func TestFollowDecisionReportsAFailedAutoScalingCall(t *testing.T) {
	decided := decision(6, "scale_out", "pinned at 6: scale out 2 → 6")
	refused := decided
	refused.LastApplyErrors = []string{"set_desired: ValidationError: New SetDesiredCapacity value 6 is above max value 5"}
	d := watch([]ledgerRead{accepted}, []scale.Record{decided, refused}, []groupSight{{Name: "blue-asg", Desired: 2, Min: 1, Max: 5, InService: 2}})
	var out bytes.Buffer
	err := followDecision(bounded(t), &out, d)
	if err == nil || exitStatus(err) != 1 || !strings.Contains(err.Error(), "the worker decided desired 6 and Auto Scaling refused it: set_desired: ValidationError") {
		t.Errorf("follow: %v (exit %d); want exit 1 naming the refused call\n%s", err, exitStatus(err), out.String())
	}

	// Another call failing (protecting an instance that just left) does not stop a decision whose
	// desired capacity the group reached.
	protectFailed := decided
	protectFailed.LastApplyErrors = []string{"protect: ValidationError: The instance i-9 is not in InService or EnteringStandby or Standby"}
	d = watch([]ledgerRead{accepted}, []scale.Record{protectFailed}, []groupSight{{Name: "blue-asg", Desired: 6, Min: 1, Max: 8, InService: 2, Launching: 4}})
	out.Reset()
	if err := followDecision(bounded(t), &out, d); err != nil || !strings.Contains(out.String(), "done: the group's desired capacity is 6") {
		t.Errorf("a failed protect with the group at 6: %v\n%s", err, out.String())
	}
}
