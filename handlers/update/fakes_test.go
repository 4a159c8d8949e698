package update

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// fakeStacks follows CloudFormation's documented behaviour where the emulator does not:
// a change set that changes nothing is created FAILED with "The submitted information didn't
// contain changes…"; a change set is CREATE_PENDING for a while; Modify changes carry
// Replacement; a failed update rolls back (UPDATE_ROLLBACK_COMPLETE) with the failing resource's
// event first and "cancelled" events after it; executing an executed change set fails.
type fakeStacks struct {
	mu     sync.Mutex
	now    func() time.Time
	stacks map[string]*fakeStack
	sets   map[string]*fakeSet

	// Behaviour of the next change set and execution.
	changes        []Change // what the next change set lists
	noChanges      bool     // the next change set changes nothing (AWS: FAILED)
	emulatorNoOp   bool     // CreateChangeSet throws "No updates are to be performed" (the emulator)
	pending        int      // DescribeChangeSet answers CREATE_PENDING this many times
	inProgress     int      // Describe answers *_IN_PROGRESS this many times after Execute
	staleDescribes int      // Describe answers the status from before Execute this many times after it
	failResource   string   // execution fails on this resource and rolls back
	failReason     string
	createCalls    []ChangeSetInput
	executeCalls   int
	executeErrors  int    // ExecuteChangeSet fails this many times, executing nothing (throttled)
	executeRefused string // ExecuteChangeSet is refused for good with this message (ErrRefused)
	describeErrors int
	eventErrors    int  // Events fails this many times (throttled)
	eventsRefused  bool // Events is refused for good (access denied: ErrRefused)
}

type fakeStack struct {
	id, status string
	params     map[string]string
	events     []Event
	left       int // describes left in progress
	stale      int // describes left answering before (a read behind the execution)
	before     string
	target     string
	fail       bool
}

type fakeSet struct {
	in        ChangeSetInput
	id        string
	status    string
	exec      string
	reason    string
	changes   []Change
	pending   int
	executed  bool
	failedRes string
	failedWhy string
}

func newFakeStacks(now func() time.Time) *fakeStacks {
	return &fakeStacks{now: now, stacks: map[string]*fakeStack{}, sets: map[string]*fakeSet{}}
}

func (f *fakeStacks) addStack(name string, params map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stacks[name] = &fakeStack{id: "arn:aws:cloudformation:eu-west-1:123456789012:stack/" + name + "/1", status: "CREATE_COMPLETE", params: params}
}

func (f *fakeStacks) Describe(_ context.Context, name string) (Stack, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.describeErrors > 0 {
		f.describeErrors--
		return Stack{}, false, errors.New("throttled")
	}
	s, ok := f.stacks[name]
	if !ok {
		return Stack{}, false, nil
	}
	if s.stale > 0 {
		s.stale--
		return Stack{ID: s.id, Name: name, Status: s.before, Parameters: map[string]string{}}, true, nil
	}
	if s.left > 0 {
		s.left--
	} else if s.target != "" {
		s.status, s.target = s.target, ""
	}
	params := map[string]string{}
	for k, v := range s.params {
		params[k] = v
	}
	return Stack{ID: s.id, Name: name, Status: s.status, Parameters: params}, true, nil
}

func (f *fakeStacks) CreateChangeSet(_ context.Context, in ChangeSetInput) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.createCalls = append(f.createCalls, in)
	if _, dup := f.sets[in.Name]; dup {
		return "", fmt.Errorf("AlreadyExistsException: %w", ErrChangeSetExists)
	}
	s, exists := f.stacks[in.Stack]
	if in.Type == "UPDATE" && !exists {
		return "", errors.New("ValidationError: Stack [" + in.Stack + "] does not exist")
	}
	if in.Type == "CREATE" && exists && s.status != "REVIEW_IN_PROGRESS" {
		return "", errors.New("ValidationError: Stack [" + in.Stack + "] already exists and cannot be created again with the changeSet")
	}
	if f.emulatorNoOp {
		return "", fmt.Errorf("ValidationError: No updates are to be performed.: %w", ErrNoChanges)
	}
	if in.Type == "CREATE" && !exists {
		f.stacks[in.Stack] = &fakeStack{id: "arn:aws:cloudformation:eu-west-1:123456789012:stack/" + in.Stack + "/2", status: "REVIEW_IN_PROGRESS", params: map[string]string{}}
	}
	cs := &fakeSet{in: in, id: "arn:aws:cloudformation:eu-west-1:123456789012:changeSet/" + in.Name + "/1",
		status: "CREATE_COMPLETE", exec: "AVAILABLE", changes: f.changes, pending: f.pending,
		failedRes: f.failResource, failedWhy: f.failReason}
	if f.noChanges {
		cs.status, cs.exec, cs.changes = "FAILED", "UNAVAILABLE", nil
		cs.reason = "The submitted information didn't contain changes. Submit different information to create a change set."
	}
	f.sets[in.Name] = cs
	f.sets[cs.id] = cs
	return cs.id, nil
}

func (f *fakeStacks) DescribeChangeSet(_ context.Context, stack, name string) (ChangeSet, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.stacks[stack]; !ok {
		// CloudFormation answers a ValidationError about the stack; the adapter maps it to
		// ErrChangeSetNotFound, as the port says (infra/aws/stacks tests that mapping).
		return ChangeSet{}, fmt.Errorf("ValidationError: Stack [%s] does not exist: %w", stack, ErrChangeSetNotFound)
	}
	cs, ok := f.sets[name]
	if !ok || cs.in.Stack != stack {
		return ChangeSet{}, fmt.Errorf("ChangeSetNotFound: %w", ErrChangeSetNotFound)
	}
	status := cs.status
	if cs.pending > 0 {
		cs.pending--
		status = "CREATE_PENDING"
	}
	exec := cs.exec
	if s := f.stacks[stack]; cs.executed && (s.stale > 0 || s.left > 0 || s.target != "") {
		exec = "EXECUTE_IN_PROGRESS" // its final status once the stack's execution ends
	}
	return ChangeSet{ID: cs.id, Name: cs.in.Name, Status: status, ExecutionStatus: exec, StatusReason: cs.reason, Changes: cs.changes}, nil
}

// deleteChangeSets forgets every change set (an operator deleted them).
func (f *fakeStacks) deleteChangeSets() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sets = map[string]*fakeSet{}
}

// deleteStack deletes a stack (and so its change sets) mid-update.
func (f *fakeStacks) deleteStack(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.stacks, name)
}

func (f *fakeStacks) ExecuteChangeSet(_ context.Context, stack, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.executeCalls++
	if f.executeErrors > 0 {
		f.executeErrors--
		return errors.New("ThrottlingException: Rate exceeded")
	}
	if f.executeRefused != "" {
		return fmt.Errorf("%w: AccessDenied: %s", ErrRefused, f.executeRefused)
	}
	cs, ok := f.sets[name]
	if !ok {
		return errors.New("ChangeSetNotFound")
	}
	if cs.executed || cs.status != "CREATE_COMPLETE" {
		return errors.New("InvalidChangeSetStatus: ChangeSet [" + name + "] cannot be executed in its current status of [" + cs.exec + "]")
	}
	cs.executed, cs.exec = true, "EXECUTE_IN_PROGRESS"
	s := f.stacks[stack]
	verb := "UPDATE"
	if s.status == "REVIEW_IN_PROGRESS" {
		verb = "CREATE"
	}
	s.stale, s.before = f.staleDescribes, s.status
	t := f.now()
	add := func(logical, typ, status, reason string) {
		t = t.Add(time.Second)
		s.events = append(s.events, Event{ID: fmt.Sprint(len(s.events) + 1), Time: t, LogicalID: logical, ResourceType: typ, Status: status, Reason: reason})
	}
	s.status, s.left = verb+"_IN_PROGRESS", f.inProgress
	add(stack, "AWS::CloudFormation::Stack", verb+"_IN_PROGRESS", "User Initiated")
	if cs.failedRes != "" {
		add(cs.failedRes, "AWS::EC2::LaunchTemplate", verb+"_FAILED", cs.failedWhy)
		add("Other", "AWS::SQS::Queue", verb+"_FAILED", "Resource update cancelled")
		if verb == "UPDATE" {
			add(stack, "AWS::CloudFormation::Stack", "UPDATE_ROLLBACK_IN_PROGRESS", "The following resource(s) failed to update: ["+cs.failedRes+"].")
			s.target = "UPDATE_ROLLBACK_COMPLETE"
		} else {
			s.target = "ROLLBACK_COMPLETE"
		}
		cs.exec = "EXECUTE_FAILED"
	} else {
		for k, v := range cs.in.Parameters {
			s.params[k] = v
		}
		s.target = verb + "_COMPLETE"
		cs.exec = "EXECUTE_COMPLETE"
	}
	if s.left == 0 {
		s.status, s.target = s.target, ""
	}
	return nil
}

func (f *fakeStacks) Events(_ context.Context, stack string, since time.Time) ([]Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.eventErrors > 0 {
		f.eventErrors--
		return nil, errors.New("ThrottlingException: Rate exceeded")
	}
	if f.eventsRefused {
		return nil, fmt.Errorf("%w: AccessDenied: not authorized to perform cloudformation:DescribeStackEvents", ErrRefused)
	}
	s, ok := f.stacks[stack]
	if !ok {
		return nil, errors.New("stack does not exist")
	}
	var out []Event
	for _, e := range s.events {
		if !e.Time.Before(since) {
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// memStore is a race-safe in-memory Store with the state table's conditional semantics.
type memStore struct {
	mu      sync.Mutex
	items   map[string]memItem
	failing bool
}

type memItem struct {
	body    []byte
	version int64
	expires time.Time
}

func newMemStore() *memStore { return &memStore{items: map[string]memItem{}} }

func (s *memStore) Load(_ context.Context, pk, sk string) ([]byte, int64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.items[pk+"/"+sk]
	if !ok {
		return nil, 0, false, nil
	}
	return append([]byte(nil), it.body...), it.version, true, nil
}

func (s *memStore) Save(_ context.Context, pk, sk string, body []byte, version int64, _, expires time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing {
		return false, errors.New("dynamodb unavailable")
	}
	it, ok := s.items[pk+"/"+sk]
	if (version == 0 && ok) || (version != 0 && (!ok || it.version != version)) {
		return false, nil
	}
	s.items[pk+"/"+sk] = memItem{body: append([]byte(nil), body...), version: version + 1, expires: expires}
	return true, nil
}

func (s *memStore) record(fleet string) (Record, memItem) {
	pk, sk := Key(fleet)
	s.mu.Lock()
	it := s.items[pk+"/"+sk]
	s.mu.Unlock()
	r, _ := DecodeRecord(it.body)
	return r, it
}

// paramsOf is TemplateParameters over a tiny "A,B,C" template format for tests.
func paramsOf(t []byte) ([]string, error) {
	s := strings.TrimSpace(string(t))
	if strings.HasPrefix(s, "bad") {
		return nil, errors.New("not a template")
	}
	return strings.Split(s, ","), nil
}
