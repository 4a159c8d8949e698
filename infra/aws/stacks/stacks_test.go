package stacks

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	smithy "github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/handlers/update"
)

// fakeAPI answers as CloudFormation does, with canned outputs per call.
type fakeAPI struct {
	mu          sync.Mutex
	describeErr error
	createErr   error
	csErr       error // DescribeChangeSet's error
	executeErr  error
	created     []*cloudformation.CreateChangeSetInput
	pages       []*cloudformation.DescribeChangeSetOutput
	events      []*cloudformation.DescribeStackEventsOutput
	eventCalls  int
}

func (f *fakeAPI) DescribeStacks(_ context.Context, in *cloudformation.DescribeStacksInput, _ ...func(*cloudformation.Options)) (*cloudformation.DescribeStacksOutput, error) {
	if f.describeErr != nil {
		return nil, f.describeErr
	}
	return &cloudformation.DescribeStacksOutput{Stacks: []types.Stack{{StackName: in.StackName, StackId: aws.String("id"),
		StackStatus: types.StackStatusUpdateRollbackComplete, StackStatusReason: aws.String("why"),
		Parameters: []types.Parameter{{ParameterKey: aws.String("A"), ParameterValue: aws.String("1")}}}}}, nil
}

func (f *fakeAPI) CreateChangeSet(_ context.Context, in *cloudformation.CreateChangeSetInput, _ ...func(*cloudformation.Options)) (*cloudformation.CreateChangeSetOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.created = append(f.created, in)
	if f.createErr != nil {
		return nil, f.createErr
	}
	return &cloudformation.CreateChangeSetOutput{Id: aws.String("arn:cs")}, nil
}

func (f *fakeAPI) DescribeChangeSet(_ context.Context, in *cloudformation.DescribeChangeSetInput, _ ...func(*cloudformation.Options)) (*cloudformation.DescribeChangeSetOutput, error) {
	if f.csErr != nil {
		return nil, f.csErr
	}
	i := 0
	if in.NextToken != nil {
		i = 1
	}
	return f.pages[i], nil
}

func (f *fakeAPI) ExecuteChangeSet(context.Context, *cloudformation.ExecuteChangeSetInput, ...func(*cloudformation.Options)) (*cloudformation.ExecuteChangeSetOutput, error) {
	if f.executeErr != nil {
		return nil, f.executeErr
	}
	return &cloudformation.ExecuteChangeSetOutput{}, nil
}

func (f *fakeAPI) DescribeStackEvents(_ context.Context, in *cloudformation.DescribeStackEventsInput, _ ...func(*cloudformation.Options)) (*cloudformation.DescribeStackEventsOutput, error) {
	f.eventCalls++
	i := 0
	if in.NextToken != nil {
		i = 1
	}
	return f.events[i], nil
}

func apiErr(code, msg string) error { return &smithy.GenericAPIError{Code: code, Message: msg} }

func TestDescribeMapsAMissingStack(t *testing.T) {
	f := &fakeAPI{describeErr: apiErr("ValidationError", "Stack with id nope does not exist")}
	s, _ := New(f)
	if _, found, err := s.Describe(context.Background(), "nope"); found || err != nil {
		t.Errorf("found %v, err %v", found, err)
	}
	f.describeErr = apiErr("ValidationError", "1 validation error detected")
	if _, _, err := s.Describe(context.Background(), "x"); err == nil {
		t.Error("another validation error is not 'missing'")
	}
	f.describeErr = nil
	st, found, err := s.Describe(context.Background(), "x")
	if !found || err != nil || st.Status != "UPDATE_ROLLBACK_COMPLETE" || st.StatusReason != "why" || st.Parameters["A"] != "1" {
		t.Errorf("stack %+v found %v err %v", st, found, err)
	}
}

func TestCreateChangeSetInputAndErrors(t *testing.T) {
	f := &fakeAPI{}
	s, _ := New(f)
	in := update.ChangeSetInput{Stack: "st", Name: "cs", Type: "UPDATE", TemplateBody: "T",
		Parameters: map[string]string{"B": "2", "A": "1"}, Previous: []string{"C"}, RoleARN: "arn:role"}
	if id, err := s.CreateChangeSet(context.Background(), in); err != nil || id != "arn:cs" {
		t.Fatalf("id %q err %v", id, err)
	}
	got := f.created[0]
	var keys []string
	for _, p := range got.Parameters {
		k := aws.ToString(p.ParameterKey)
		if aws.ToBool(p.UsePreviousValue) {
			k += "=previous"
		} else {
			k += "=" + aws.ToString(p.ParameterValue)
		}
		keys = append(keys, k)
	}
	if !reflect.DeepEqual(keys, []string{"A=1", "B=2", "C=previous"}) || aws.ToString(got.RoleARN) != "arn:role" ||
		got.ChangeSetType != types.ChangeSetTypeUpdate || len(got.Capabilities) == 0 {
		t.Errorf("input: %v role %v type %v", keys, aws.ToString(got.RoleARN), got.ChangeSetType)
	}
	in.RoleARN = ""
	_, _ = s.CreateChangeSet(context.Background(), in)
	if f.created[1].RoleARN != nil {
		t.Error("a role was passed without one configured")
	}
	for err, want := range map[error]error{
		apiErr("ValidationError", "No updates are to be performed."):              update.ErrNoChanges,
		apiErr("AlreadyExistsException", "ChangeSet cs already exists"):           update.ErrChangeSetExists,
		apiErr("ValidationError", "Parameters: [X] do not exist in the template"): update.ErrRefused,
	} {
		f.createErr = err
		if _, got := s.CreateChangeSet(context.Background(), in); !errors.Is(got, want) {
			t.Errorf("%v: got %v, want %v", err, got, want)
		}
	}
	f.createErr = apiErr("Throttling", "Rate exceeded")
	if _, got := s.CreateChangeSet(context.Background(), in); errors.Is(got, update.ErrRefused) || got == nil {
		t.Errorf("throttling: %v", got)
	}
}

func TestDescribeChangeSetReadsEveryPage(t *testing.T) {
	rc := func(action types.ChangeAction, id string, repl types.Replacement) types.Change {
		return types.Change{Type: types.ChangeTypeResource, ResourceChange: &types.ResourceChange{Action: action,
			LogicalResourceId: aws.String(id), ResourceType: aws.String("AWS::X::Y"), Replacement: repl}}
	}
	f := &fakeAPI{pages: []*cloudformation.DescribeChangeSetOutput{
		{ChangeSetId: aws.String("arn:cs"), ChangeSetName: aws.String("cs"), Status: types.ChangeSetStatusCreateComplete,
			ExecutionStatus: types.ExecutionStatusAvailable, Changes: []types.Change{rc(types.ChangeActionModify, "LT", types.ReplacementTrue)},
			NextToken: aws.String("p2")},
		{Changes: []types.Change{rc(types.ChangeActionAdd, "Q", "")}},
	}}
	s, _ := New(f)
	cs, err := s.DescribeChangeSet(context.Background(), "st", "cs")
	if err != nil || cs.Status != "CREATE_COMPLETE" || len(cs.Changes) != 2 || cs.Changes[0].Replacement != "True" || cs.Changes[1].Action != "Add" {
		t.Errorf("cs %+v err %v", cs, err)
	}
}

// A stack deleted mid-update: DescribeChangeSet (called with the stack's name) answers a
// ValidationError about the stack, which must read as "not found" or the update retries forever.
func TestDescribeChangeSetMapsAMissingChangeSetOrStack(t *testing.T) {
	f := &fakeAPI{}
	s, _ := New(f)
	for err, want := range map[error]bool{
		apiErr("ValidationError", "Stack [runner-docker] does not exist"):       true,
		apiErr("ChangeSetNotFound", "ChangeSet [cs] does not exist"):            true,
		apiErr("ValidationError", "1 validation error detected: ChangeSetName"): false,
		apiErr("Throttling", "Rate exceeded"):                                   false,
	} {
		f.csErr = err
		_, got := s.DescribeChangeSet(context.Background(), "runner-docker", "cs")
		if got == nil || errors.Is(got, update.ErrChangeSetNotFound) != want {
			t.Errorf("%v: got %v, want not-found %v", err, got, want)
		}
	}
}

// A permanent refusal of ExecuteChangeSet is ErrRefused (the update fails with the reason); a
// throttled one is not (the next tick retries).
func TestExecuteChangeSetClassifiesRefusals(t *testing.T) {
	f := &fakeAPI{}
	s, _ := New(f)
	if err := s.ExecuteChangeSet(context.Background(), "st", "cs"); err != nil {
		t.Fatal(err)
	}
	for err, want := range map[error]bool{
		apiErr("AccessDenied", "not authorized to perform: cloudformation:ExecuteChangeSet"): true,
		apiErr("InvalidChangeSetStatus", "ChangeSet [cs] cannot be executed"):                true,
		apiErr("Throttling", "Rate exceeded"):                                                false,
	} {
		f.executeErr = err
		got := s.ExecuteChangeSet(context.Background(), "st", "cs")
		if got == nil || errors.Is(got, update.ErrRefused) != want {
			t.Errorf("%v: got %v, want refused %v", err, got, want)
		}
		if want && !strings.Contains(got.Error(), err.(smithy.APIError).ErrorMessage()) {
			t.Errorf("%v: the refusal %q does not carry the service's message", err, got)
		}
	}
}

func TestEventsOldestFirstAndNoFurtherThanSince(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 18, 0, 0, 0, time.UTC)
	ev := func(id string, s int) types.StackEvent {
		return types.StackEvent{EventId: aws.String(id), Timestamp: aws.Time(t0.Add(time.Duration(s) * time.Second)), LogicalResourceId: aws.String(id)}
	}
	f := &fakeAPI{events: []*cloudformation.DescribeStackEventsOutput{
		{StackEvents: []types.StackEvent{ev("e4", 4), ev("e3", 3)}, NextToken: aws.String("p2")},
		{StackEvents: []types.StackEvent{ev("e2", 2), ev("e1", -10)}, NextToken: aws.String("p3")},
	}}
	s, _ := New(f)
	got, err := s.Events(context.Background(), "st", t0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range got {
		ids = append(ids, e.ID)
	}
	if !reflect.DeepEqual(ids, []string{"e2", "e3", "e4"}) || f.eventCalls != 2 {
		t.Errorf("ids %v after %d calls", ids, f.eventCalls)
	}
}

func TestNewRefusesNil(t *testing.T) {
	if _, err := New(nil); err == nil {
		t.Error("nil client accepted")
	}
}

type nopStore struct{}

func (nopStore) Load(context.Context, string, string) ([]byte, int64, bool, error) {
	return nil, 0, false, nil
}
func (nopStore) Save(context.Context, string, string, []byte, int64, time.Time, time.Time) (bool, error) {
	return true, nil
}

func TestNewUpdaterAcceptsTheRunnerTemplate(t *testing.T) {
	h, err := NewUpdater(aws.Config{Region: "us-east-1"}, []fleet.Settings{{Name: "docker", StackName: "runner-docker"}, {Name: "bare"}},
		"arn:aws:iam::123456789012:role/x", nopStore{}, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if h.FleetOfStack("runner-docker") != "docker" || h.FleetOfStack("") != "" {
		t.Error("fleets not mapped to their stacks")
	}
}
