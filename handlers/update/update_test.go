package update

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnerfleet/runnerfleet/messages"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	h      *Handler
	clock  *clock
	stacks *fakeStacks
	store  *memStore
	reg    *prometheus.Registry
	logs   *bytes.Buffer
}

const role = "arn:aws:iam::123456789012:role/runnerfleet-prod-stack"

func newEnv(t *testing.T) *env {
	t.Helper()
	c := &clock{t: time.Date(2026, 11, 27, 18, 0, 0, 0, time.UTC)}
	e := &env{clock: c, stacks: newFakeStacks(c.now), store: newMemStore(), reg: prometheus.NewRegistry(), logs: &bytes.Buffer{}}
	logger := slog.New(slog.NewJSONHandler(&lockedWriter{w: e.logs}, nil))
	h, err := New(Config{
		Template:           []byte("InstanceType,VolumeSize,ImageId"),
		TemplateParameters: paramsOf,
		Fleets: []Fleet{{Name: "docker", Stack: "runner-docker", RoleARN: role, AllowTemplateBody: true},
			{Name: "plain", Stack: "runner-plain"}, {Name: "stackless"}},
		Now:   c.now,
		Sleep: func(context.Context, time.Duration) error { return nil },
	}, e.stacks, e.store, e.reg, logger)
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	return e
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func updateCmd(fleet string, params map[string]string, plan bool) *messages.Command {
	c := messages.NewCommand(fleet, messages.CommandUpdate, time.Date(2026, 11, 27, 18, 0, 0, 0, time.UTC))
	c.Issuer = "alice"
	c.Update.Parameters = params
	c.Update.Plan = plan
	return &c
}

// tickUntilDone advances the fleet until its update finishes (bounded).
func (e *env) tickUntilDone(t *testing.T, fleet string) Record {
	t.Helper()
	for i := 0; i < 20; i++ {
		if r, _ := e.store.record(fleet); r.Finished() {
			return r
		}
		if err := e.h.Advance(context.Background(), fleet); err != nil {
			t.Fatalf("advance: %v", err)
		}
	}
	r, _ := e.store.record(fleet)
	t.Fatalf("update not finished after 20 ticks: %+v", r)
	return r
}

func TestUpdateKeepsAbsentParametersAndUsesTheServiceRole(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stacks.addStack("runner-docker", map[string]string{"InstanceType": "t3.medium", "VolumeSize": "100", "ImageId": "ami-1"})
	e.stacks.changes = []Change{{Action: "Modify", LogicalID: "LaunchTemplate", ResourceType: "AWS::EC2::LaunchTemplate", Replacement: "False"},
		{Action: "Modify", LogicalID: "Group", ResourceType: "AWS::AutoScaling::AutoScalingGroup", Replacement: "Conditional"}}
	e.stacks.inProgress = 2

	if err := e.h.HandleCommand(context.Background(), updateCmd("docker", map[string]string{"VolumeSize": "200", "ImageId": "ami-1"}, false)); err != nil {
		t.Fatal(err)
	}
	if len(e.stacks.createCalls) != 1 {
		t.Fatalf("%d change sets created", len(e.stacks.createCalls))
	}
	in := e.stacks.createCalls[0]
	if in.Type != "UPDATE" || in.RoleARN != role || !reflect.DeepEqual(in.Previous, []string{"ImageId", "InstanceType"}) ||
		!reflect.DeepEqual(in.Parameters, map[string]string{"VolumeSize": "200"}) {
		t.Errorf("change set input = %+v", in)
	}
	r := e.tickUntilDone(t, "docker")
	if r.Outcome != OutcomeSucceeded || r.StackStatus != "UPDATE_COMPLETE" || len(r.Changes) != 2 || r.Changes[1].Replacement != "Conditional" {
		t.Errorf("record = %+v", r)
	}
	st, _, _ := e.stacks.Describe(context.Background(), "runner-docker")
	if st.Parameters["VolumeSize"] != "200" || st.Parameters["InstanceType"] != "t3.medium" {
		t.Errorf("stack parameters = %v", st.Parameters)
	}
	if _, it := e.store.record("docker"); it.expires.IsZero() {
		t.Error("a finished record has no TTL")
	}
	if got := counter(t, e.reg, "runnerfleet_update_finished_total", "outcome", OutcomeSucceeded); got != 1 {
		t.Errorf("succeeded counter = %v", got)
	}
}

func TestNoRoleWhenTheFleetHasNone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stacks.addStack("runner-plain", map[string]string{"VolumeSize": "100"})
	if err := e.h.HandleCommand(context.Background(), updateCmd("plain", map[string]string{"VolumeSize": "120"}, false)); err != nil {
		t.Fatal(err)
	}
	if e.stacks.createCalls[0].RoleARN != "" {
		t.Errorf("role %q passed", e.stacks.createCalls[0].RoleARN)
	}
	// Only parameters the stack has keep their previous value; new ones take the template default.
	if !reflect.DeepEqual(e.stacks.createCalls[0].Previous, []string(nil)) {
		t.Errorf("previous = %v", e.stacks.createCalls[0].Previous)
	}
}

func TestParameterOnlyUpdateWithEmptyChangesStillExecutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stacks.addStack("runner-docker", map[string]string{"VolumeSize": "100"})
	e.stacks.changes = nil // the emulator lists no changes on a parameter-only update
	if err := e.h.HandleCommand(context.Background(), updateCmd("docker", map[string]string{"VolumeSize": "150"}, false)); err != nil {
		t.Fatal(err)
	}
	r := e.tickUntilDone(t, "docker")
	if r.Outcome != OutcomeSucceeded || e.stacks.executeCalls != 1 {
		t.Errorf("outcome %s, %d executions", r.Outcome, e.stacks.executeCalls)
	}
}

func TestNoChangesIsACleanSuccess(t *testing.T) {
	t.Parallel()
	for name, emulator := range map[string]bool{"aws FAILED change set": false, "emulator error": true} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.stacks.addStack("runner-docker", map[string]string{"VolumeSize": "100"})
			e.stacks.noChanges, e.stacks.emulatorNoOp = !emulator, emulator
			if err := e.h.HandleCommand(context.Background(), updateCmd("docker", map[string]string{"VolumeSize": "100"}, false)); err != nil {
				t.Fatal(err)
			}
			r, _ := e.store.record("docker")
			if r.Outcome != OutcomeNoChanges || r.Reason != "" || e.stacks.executeCalls != 0 {
				t.Errorf("record %+v, %d executions", r, e.stacks.executeCalls)
			}
		})
	}
}

func TestPlanRecordsTheChangesAndExecutesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stacks.addStack("runner-docker", map[string]string{"ImageId": "ami-1"})
	e.stacks.changes = []Change{{Action: "Modify", LogicalID: "LaunchTemplate", ResourceType: "AWS::EC2::LaunchTemplate", Replacement: "True"},
		{Action: "Add", LogicalID: "Queue", ResourceType: "AWS::SQS::Queue"}, {Action: "Remove", LogicalID: "Old", ResourceType: "AWS::SNS::Topic"}}
	e.stacks.pending = 3 // CREATE_PENDING for three looks
	if err := e.h.HandleCommand(context.Background(), updateCmd("docker", map[string]string{"ImageId": "ami-2"}, true)); err != nil {
		t.Fatal(err)
	}
	r, _ := e.store.record("docker")
	if r.Outcome != OutcomePlanned || len(r.Changes) != 3 || e.stacks.executeCalls != 0 {
		t.Fatalf("record %+v, %d executions", r, e.stacks.executeCalls)
	}
	if s := Summary(r.Changes); !strings.Contains(s, "Modify LaunchTemplate (AWS::EC2::LaunchTemplate, replacement True)") || !strings.Contains(s, "Remove Old") {
		t.Errorf("summary %q", s)
	}
	st, _, _ := e.stacks.Describe(context.Background(), "runner-docker")
	if st.Parameters["ImageId"] != "ami-1" {
		t.Error("a plan changed the stack")
	}
	// Ticks after a plan do nothing.
	if err := e.h.Advance(context.Background(), "docker"); err != nil || e.stacks.executeCalls != 0 {
		t.Errorf("advance after plan: %v, %d executions", err, e.stacks.executeCalls)
	}
}

func TestRollbackFailsWithTheFirstFailingResource(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stacks.addStack("runner-docker", map[string]string{"InstanceType": "t3.medium"})
	e.stacks.failResource, e.stacks.failReason = "LaunchTemplate", "The instance type 'x9.huge' does not exist"
	e.stacks.inProgress = 1
	if err := e.h.HandleCommand(context.Background(), updateCmd("docker", map[string]string{"InstanceType": "x9.huge"}, false)); err != nil {
		t.Fatal(err)
	}
	r := e.tickUntilDone(t, "docker")
	if r.Outcome != OutcomeFailed || r.FailedResource != "LaunchTemplate" || r.Reason != "The instance type 'x9.huge' does not exist" ||
		r.StackStatus != "UPDATE_ROLLBACK_COMPLETE" {
		t.Errorf("record = %+v", r)
	}
	if !strings.Contains(e.logs.String(), `"failed_resource":"LaunchTemplate"`) {
		t.Errorf("no failure line in the log:\n%s", e.logs)
	}
}

func TestCreateWhenTheStackDoesNotExist(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if err := e.h.HandleCommand(context.Background(), updateCmd("docker", map[string]string{"ImageId": "ami-1"}, false)); err != nil {
		t.Fatal(err)
	}
	in := e.stacks.createCalls[0]
	if in.Type != "CREATE" || len(in.Previous) != 0 || in.TemplateBody != "InstanceType,VolumeSize,ImageId" {
		t.Errorf("input = %+v", in)
	}
	if r := e.tickUntilDone(t, "docker"); r.Outcome != OutcomeSucceeded || r.Type != "CREATE" || r.StackStatus != "CREATE_COMPLETE" {
		t.Errorf("record = %+v", r)
	}
}

func TestACommandsOwnTemplateIsApplied(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stacks.addStack("runner-docker", map[string]string{"Size": "1"})
	c := updateCmd("docker", map[string]string{"Size": "2"}, false)
	c.Update.TemplateBody = "Size,Colour"
	if err := e.h.HandleCommand(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if got := e.stacks.createCalls[0].TemplateBody; got != "Size,Colour" {
		t.Errorf("template %q", got)
	}
}

func TestRedeliveryContinuesAndAConcurrentUpdateIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stacks.addStack("runner-docker", map[string]string{"VolumeSize": "100"})
	e.stacks.inProgress = 5
	c := updateCmd("docker", map[string]string{"VolumeSize": "300"}, false)
	for i := 0; i < 2; i++ {
		if err := e.h.HandleCommand(context.Background(), c); err != nil {
			t.Fatalf("delivery %d: %v", i+1, err)
		}
	}
	if len(e.stacks.createCalls) != 1 || e.stacks.executeCalls != 1 {
		t.Errorf("%d creates, %d executions for one command delivered twice", len(e.stacks.createCalls), e.stacks.executeCalls)
	}
	err := e.h.HandleCommand(context.Background(), updateCmd("docker", map[string]string{"VolumeSize": "400"}, false))
	if !messages.IsPermanent(err) || !strings.Contains(messages.Reason(err), "still in progress") {
		t.Errorf("second update: %v", err)
	}
	e.tickUntilDone(t, "docker")
	// Once finished, a new update starts.
	if err := e.h.HandleCommand(context.Background(), updateCmd("docker", map[string]string{"VolumeSize": "400"}, false)); err != nil {
		t.Errorf("update after the first finished: %v", err)
	}
}

func TestACrashAfterCreateReusesTheChangeSet(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stacks.addStack("runner-docker", map[string]string{"VolumeSize": "100"})
	c := updateCmd("docker", map[string]string{"VolumeSize": "300"}, false)
	e.store.failing = true // the record cannot be saved after the change set is created
	if err := e.h.HandleCommand(context.Background(), c); err == nil || messages.IsPermanent(err) {
		t.Fatalf("want a transient error, got %v", err)
	}
	e.store.failing = false
	if err := e.h.HandleCommand(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if r := e.tickUntilDone(t, "docker"); r.Outcome != OutcomeSucceeded || e.stacks.executeCalls != 1 {
		t.Errorf("record %+v, %d executions", r, e.stacks.executeCalls)
	}
}

// ExecuteChangeSet failing after the intent was saved: the stack still reads UPDATE_COMPLETE
// from an earlier update, which must not pass for this one's success. The change set, still
// AVAILABLE, is executed at the next step.
func TestAFailedExecuteIsExecutedAgainNotReadAsSuccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stacks.addStack("runner-docker", map[string]string{"VolumeSize": "100"})
	e.stacks.stacks["runner-docker"].status = "UPDATE_COMPLETE"
	e.stacks.executeErrors = 1
	c := updateCmd("docker", map[string]string{"VolumeSize": "300"}, false)
	if err := e.h.HandleCommand(context.Background(), c); err == nil || messages.IsPermanent(err) {
		t.Fatalf("want a transient error from the failed execute, got %v", err)
	}
	r := e.tickUntilDone(t, "docker")
	executed := 0
	for key, cs := range e.stacks.sets {
		if cs.executed && key == cs.id { // each set is kept under its name and its id
			executed++
		}
	}
	if r.Outcome != OutcomeSucceeded || executed != 1 || e.stacks.executeCalls != 2 {
		t.Errorf("outcome %q, %d change sets executed, %d execute calls; want succeeded, 1, 2", r.Outcome, executed, e.stacks.executeCalls)
	}
}

// A stack read just after ExecuteChangeSet can still show the status an earlier update left
// (UPDATE_COMPLETE, or UPDATE_ROLLBACK_COMPLETE of a failed one). While the change set says it is
// executing, that status is not this update's result: the handler waits for the stack to move.
func TestAStackReadBehindTheExecutionIsNotItsResult(t *testing.T) {
	t.Parallel()
	for before, fail := range map[string]bool{"UPDATE_COMPLETE": true, "UPDATE_ROLLBACK_COMPLETE": false} {
		t.Run(before, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.stacks.addStack("runner-docker", map[string]string{"VolumeSize": "100"})
			e.stacks.stacks["runner-docker"].status = before
			e.stacks.staleDescribes = 3
			if fail {
				e.stacks.failResource, e.stacks.failReason = "LaunchTemplate", "Invalid AMI"
			}
			if err := e.h.HandleCommand(context.Background(), updateCmd("docker", map[string]string{"VolumeSize": "300"}, false)); err != nil {
				t.Fatal(err)
			}
			r := e.tickUntilDone(t, "docker")
			want := OutcomeSucceeded
			if fail {
				want = OutcomeFailed
			}
			if r.Outcome != want || e.stacks.stacks["runner-docker"].stale != 0 {
				t.Errorf("outcome %q (%s), %d stale reads left; want %q once the stack was read after the execution",
					r.Outcome, r.Reason, e.stacks.stacks["runner-docker"].stale, want)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stacks.addStack("runner-docker", nil)
	for name, c := range map[string]*messages.Command{
		"unknown fleet":         updateCmd("nope", nil, false),
		"fleet without a stack": updateCmd("stackless", nil, false),
		"unknown parameter":     updateCmd("docker", map[string]string{"Colour": "blue"}, false),
		"bad template": func() *messages.Command {
			c := updateCmd("docker", nil, false)
			c.Update.TemplateBody = "bad"
			return c
		}(),
		// Without the fleet's allow_custom_template, a control-queue sender could deploy any
		// template with the worker's stack role.
		"own template, fleet does not accept one": func() *messages.Command {
			c := updateCmd("plain", nil, false)
			c.Update.TemplateBody = "Size,Colour"
			return c
		}(),
	} {
		err := e.h.HandleCommand(context.Background(), c)
		if !messages.IsPermanent(err) {
			t.Errorf("%s: %v, want a rejection", name, err)
		}
		if strings.HasPrefix(name, "own template") && (err == nil || !strings.Contains(err.Error(), "allow_custom_template")) {
			t.Errorf("%s: %v, want it to name allow_custom_template", name, err)
		}
	}
	if len(e.stacks.createCalls) != 0 {
		t.Errorf("%d change sets created for refused commands", len(e.stacks.createCalls))
	}
}

func TestAStackStatusEventAdvancesTheUpdate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stacks.addStack("runner-docker", map[string]string{"VolumeSize": "100"})
	if err := e.h.HandleCommand(context.Background(), updateCmd("docker", map[string]string{"VolumeSize": "101"}, false)); err != nil {
		t.Fatal(err)
	}
	m := &messages.Message{Kind: messages.KindStackStatus, Payload: &messages.StackStatus{StackName: "runner-docker", Status: "UPDATE_COMPLETE"}}
	if err := e.h.HandleStackStatus(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if r, _ := e.store.record("docker"); r.Outcome != OutcomeSucceeded {
		t.Errorf("record = %+v", r)
	}
	other := &messages.Message{Kind: messages.KindStackStatus, Payload: &messages.StackStatus{StackName: "someone-else"}}
	if err := e.h.HandleStackStatus(context.Background(), other); err != nil {
		t.Errorf("foreign stack: %v", err)
	}
}

func TestNoParameterValueInTheLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stacks.addStack("runner-docker", map[string]string{"ImageId": "ami-1"})
	if err := e.h.HandleCommand(context.Background(), updateCmd("docker", map[string]string{"ImageId": "ami-canary0123"}, false)); err != nil {
		t.Fatal(err)
	}
	e.tickUntilDone(t, "docker")
	if strings.Contains(e.logs.String(), "ami-canary0123") {
		t.Errorf("a parameter value is in the log:\n%s", e.logs)
	}
}

func TestNoChangesReason(t *testing.T) {
	for reason, want := range map[string]bool{
		"The submitted information didn't contain changes. Submit different information to create a change set.": true,
		"No updates are to be performed.": true,
		"Template format error: Unresolved resource dependencies [X] in the Resources block of the template": false,
		"": false,
	} {
		if NoChangesReason(reason) != want {
			t.Errorf("NoChangesReason(%q) = %v", reason, !want)
		}
	}
}

func TestChangeSetName(t *testing.T) {
	if got := changeSetName("01J9ZX_abc.def-1"); got != "runnerfleet-01J9ZXabcdef-1" {
		t.Errorf("got %q", got)
	}
}

// counter reads one series of a counter from reg.
func counter(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

type refusingStacks struct{ *fakeStacks }

func (r refusingStacks) CreateChangeSet(context.Context, ChangeSetInput) (string, error) {
	return "", fmt.Errorf("ValidationError: Parameter 'VolumeSize' must be a number: %w", ErrRefused)
}

func TestARefusedChangeSetFailsTheUpdate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stacks.addStack("runner-docker", map[string]string{"VolumeSize": "100"})
	h, err := New(e.h.cfg, refusingStacks{e.stacks}, e.store, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.HandleCommand(context.Background(), updateCmd("docker", map[string]string{"VolumeSize": "x"}, false)); err != nil {
		t.Fatal(err)
	}
	if r, _ := e.store.record("docker"); r.Outcome != OutcomeFailed || !strings.Contains(r.Reason, "must be a number") {
		t.Errorf("record = %+v", r)
	}
}

func TestADeletedChangeSetFailsTheUpdateInsteadOfRetrying(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stacks.addStack("runner-docker", map[string]string{"VolumeSize": "100"})
	e.stacks.pending = 100 // stays CREATE_PENDING past the command's wait
	if err := e.h.HandleCommand(context.Background(), updateCmd("docker", map[string]string{"VolumeSize": "101"}, false)); err != nil {
		t.Fatal(err)
	}
	if r, _ := e.store.record("docker"); r.Phase != PhaseChangeSet {
		t.Fatalf("record = %+v", r)
	}
	e.stacks.deleteChangeSets()
	if err := e.h.Advance(context.Background(), "docker"); err != nil {
		t.Fatalf("advance: %v", err)
	}
	if r, _ := e.store.record("docker"); r.Outcome != OutcomeFailed || !strings.Contains(r.Reason, "change set is gone") {
		t.Errorf("record = %+v", r)
	}
}

// A stack deleted mid-update: DescribeChangeSet answers a ValidationError about the stack (not
// "change set not found"); the update must end failed, not error at every tick.
func TestAStackDeletedMidUpdateFailsTheUpdate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stacks.addStack("runner-docker", map[string]string{"VolumeSize": "100"})
	e.stacks.inProgress = 5
	if err := e.h.HandleCommand(context.Background(), updateCmd("docker", map[string]string{"VolumeSize": "101"}, false)); err != nil {
		t.Fatal(err)
	}
	e.stacks.deleteStack("runner-docker")
	if err := e.h.Advance(context.Background(), "docker"); err != nil {
		t.Fatalf("advance: %v", err)
	}
	if r, _ := e.store.record("docker"); r.Outcome != OutcomeFailed || !strings.Contains(r.Reason, "stack is gone") {
		t.Errorf("record = %+v", r)
	}
}

// ExecuteChangeSet refused for good (access denied) while the change set stays AVAILABLE: the
// update ends failed with the service's reason instead of executing again at every tick, and the
// fleet can be updated again.
func TestARefusedExecutionFailsTheUpdate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stacks.addStack("runner-docker", map[string]string{"VolumeSize": "100"})
	e.stacks.executeRefused = "User: arn:aws:sts::123456789012:assumed-role/w is not authorized to perform: cloudformation:ExecuteChangeSet"
	if err := e.h.HandleCommand(context.Background(), updateCmd("docker", map[string]string{"VolumeSize": "101"}, false)); err != nil {
		t.Fatalf("command: %v", err)
	}
	r, _ := e.store.record("docker")
	if r.Outcome != OutcomeFailed || !strings.Contains(r.Reason, "not authorized to perform: cloudformation:ExecuteChangeSet") {
		t.Fatalf("record = %+v", r)
	}
	if err := e.h.Advance(context.Background(), "docker"); err != nil || e.stacks.executeCalls != 1 {
		t.Errorf("advance after the refusal: %v, %d execute calls", err, e.stacks.executeCalls)
	}
	e.stacks.executeRefused = ""
	if err := e.h.HandleCommand(context.Background(), updateCmd("docker", map[string]string{"VolumeSize": "102"}, false)); err != nil {
		t.Errorf("the next update: %v", err)
	}
}

// An update unfinished DefaultDeadline after its command ends failed, pointing at the stack, so
// the fleet's next update is not refused for ever; it is never executed late.
func TestAnUpdatePastItsDeadlineEndsFailed(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		setup  func(e *env)
		after  func(e *env) // once the command has taken its step
		phase  string
		reason string
	}{
		"stack in progress for ever": {setup: func(e *env) { e.stacks.inProgress = 1 << 20 }, phase: PhaseExecuting, reason: "last seen UPDATE_IN_PROGRESS"},
		"change set never created":   {setup: func(e *env) { e.stacks.pending = 1 << 20 }, phase: PhaseChangeSet, reason: "phase change_set"},
		"stack unreadable": {setup: func(e *env) { e.stacks.inProgress = 1 << 20 },
			after: func(e *env) { e.stacks.describeErrors = 1 << 20 }, phase: PhaseExecuting, reason: "last error: describing stack runner-docker: throttled"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.stacks.addStack("runner-docker", map[string]string{"VolumeSize": "100"})
			tc.setup(e)
			if err := e.h.HandleCommand(context.Background(), updateCmd("docker", map[string]string{"VolumeSize": "101"}, false)); err != nil {
				t.Fatal(err)
			}
			if tc.after != nil {
				tc.after(e)
			}
			executed := e.stacks.executeCalls
			for i := 0; i < 3; i++ {
				_ = e.h.Advance(context.Background(), "docker")
			}
			if r, _ := e.store.record("docker"); r.Finished() || r.Phase != tc.phase {
				t.Fatalf("before the deadline: %+v", r)
			}
			e.clock.advance(DefaultDeadline)
			if err := e.h.Advance(context.Background(), "docker"); err != nil {
				t.Fatalf("advance past the deadline: %v", err)
			}
			r, it := e.store.record("docker")
			if r.Outcome != OutcomeFailed || !strings.Contains(r.Reason, "did not finish within 6h0m0s") ||
				!strings.Contains(r.Reason, "Look at stack runner-docker") || !strings.Contains(r.Reason, tc.reason) || it.expires.IsZero() {
				t.Errorf("record = %+v", r)
			}
			if e.stacks.executeCalls != executed {
				t.Errorf("executed past the deadline")
			}
			e.stacks.describeErrors = 0
			err := e.h.HandleCommand(context.Background(), updateCmd("docker", map[string]string{"VolumeSize": "102"}, false))
			if err != nil && strings.Contains(err.Error(), "still in progress") {
				t.Errorf("the next update is still refused: %v", err)
			}
		})
	}
}

// A failed update whose stack events cannot be read (throttled) is not finished without its
// failing resource: the next tick reads them again. Only past the deadline does the record settle
// for the stack's status.
func TestUnreadableEventsAreReadAgain(t *testing.T) {
	t.Parallel()
	start := func(t *testing.T, eventErrors int) *env {
		e := newEnv(t)
		e.stacks.addStack("runner-docker", map[string]string{"InstanceType": "t3.medium"})
		e.stacks.failResource, e.stacks.failReason = "LaunchTemplate", "The instance type 'x9.huge' does not exist"
		e.stacks.inProgress = 1
		e.stacks.eventErrors = eventErrors
		if err := e.h.HandleCommand(context.Background(), updateCmd("docker", map[string]string{"InstanceType": "x9.huge"}, false)); err != nil {
			t.Fatal(err)
		}
		return e
	}
	t.Run("throttled once", func(t *testing.T) {
		t.Parallel()
		e := start(t, 1)
		failures := 0
		for i := 0; i < 10; i++ {
			if r, _ := e.store.record("docker"); r.Finished() {
				break
			}
			if err := e.h.Advance(context.Background(), "docker"); err != nil {
				failures++
			}
		}
		if r, _ := e.store.record("docker"); failures != 1 || r.FailedResource != "LaunchTemplate" || !strings.Contains(r.Reason, "x9.huge") {
			t.Errorf("%d failed steps; record = %+v", failures, r)
		}
	})
	t.Run("refused for good", func(t *testing.T) {
		t.Parallel()
		e := start(t, 0)
		e.stacks.eventsRefused = true // a permission missing: reading again cannot help
		for i := 0; i < 10; i++ {
			if r, _ := e.store.record("docker"); r.Finished() {
				break
			}
			_ = e.h.Advance(context.Background(), "docker")
		}
		if r, _ := e.store.record("docker"); r.Outcome != OutcomeFailed || !strings.Contains(r.Reason, "UPDATE_ROLLBACK_COMPLETE") {
			t.Errorf("record = %+v: want failed at once with the stack's status, not held to the deadline", r)
		}
	})
	t.Run("unreadable up to the deadline", func(t *testing.T) {
		t.Parallel()
		e := start(t, 1<<20)
		for i := 0; i < 3; i++ {
			if err := e.h.Advance(context.Background(), "docker"); err == nil {
				if r, _ := e.store.record("docker"); r.Finished() {
					t.Fatalf("finished without its events: %+v", r)
				}
			}
		}
		e.clock.advance(DefaultDeadline)
		if err := e.h.Advance(context.Background(), "docker"); err != nil {
			t.Fatalf("advance past the deadline: %v", err)
		}
		if r, _ := e.store.record("docker"); r.Outcome != OutcomeFailed || !strings.Contains(r.Reason, "UPDATE_ROLLBACK_COMPLETE") {
			t.Errorf("record = %+v", r)
		}
	})
}

// A failing step on a stack event is logged and the event acked: a retried event would hold up
// the fleet's FIFO group. The next tick takes the step.
func TestAFailingStepOnAStackEventIsAcked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.stacks.addStack("runner-docker", map[string]string{"VolumeSize": "100"})
	e.stacks.inProgress = 1
	if err := e.h.HandleCommand(context.Background(), updateCmd("docker", map[string]string{"VolumeSize": "101"}, false)); err != nil {
		t.Fatal(err)
	}
	e.stacks.describeErrors = 1
	m := &messages.Message{Kind: messages.KindStackStatus, Payload: &messages.StackStatus{StackName: "runner-docker", Status: "UPDATE_IN_PROGRESS"}}
	if err := e.h.HandleStackStatus(context.Background(), m); err != nil {
		t.Fatalf("stack event: %v, want it acked", err)
	}
	if !strings.Contains(e.logs.String(), "step on a stack event failed") || !strings.Contains(e.logs.String(), "throttled") {
		t.Errorf("the failure is not logged:\n%s", e.logs)
	}
	if r := e.tickUntilDone(t, "docker"); r.Outcome != OutcomeSucceeded {
		t.Errorf("record = %+v", r)
	}
}

func TestConfigRefusesTwoFleetsOnOneStack(t *testing.T) {
	t.Parallel()
	err := Config{Template: []byte("A"), TemplateParameters: paramsOf, ChangeSetWait: 1, PollInterval: 1, Retention: 1, Deadline: 1,
		Fleets: []Fleet{{Name: "a", Stack: "s"}, {Name: "b", Stack: "s"}, {Name: "c"}, {Name: "d"}}}.Validate()
	if err == nil || !strings.Contains(err.Error(), `fleet "b" has stack "s", as fleet "a" does`) {
		t.Errorf("err = %v", err)
	}
}
