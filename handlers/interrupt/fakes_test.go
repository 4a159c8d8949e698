package interrupt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
)

type member struct{ group, state string }

// fakeWorld is a race-safe fake of every port: groups, SSM, runner metrics, marks and drains.
type fakeWorld struct {
	mu         sync.Mutex
	members    map[string]member
	jobs       map[string]int // absent: metrics do not answer
	sent       []string       // "document instance"
	sendErr    error
	terminated map[string]bool // instance → decrement
	termErr    error
	marks      map[string]Mark
	drains     map[string]int // instance → jobs seen by its drain (in progress)
	lostDrains map[string]int
	busy       bool
	groupsOf   int // GroupsOf calls
}

func newFakeWorld() *fakeWorld {
	return &fakeWorld{members: map[string]member{}, jobs: map[string]int{}, terminated: map[string]bool{},
		marks: map[string]Mark{}, drains: map[string]int{}, lostDrains: map[string]int{}}
}

func (w *fakeWorld) GroupOf(_ context.Context, id string) (string, string, bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m, ok := w.members[id]
	return m.group, m.state, ok, nil
}

func (w *fakeWorld) GroupsOf(_ context.Context, ids []string) (map[string]string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.groupsOf++
	out := map[string]string{}
	for _, id := range ids {
		if m, ok := w.members[id]; ok {
			out[id] = m.group
		}
	}
	return out, nil
}

func (w *fakeWorld) Terminate(_ context.Context, id string, decrement bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.termErr != nil {
		return w.termErr
	}
	w.terminated[id] = decrement
	m := w.members[id]
	m.state = "Terminating:Wait"
	w.members[id] = m
	return nil
}

func (w *fakeWorld) Send(_ context.Context, doc, id string) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sendErr != nil {
		return "", w.sendErr
	}
	w.sent = append(w.sent, doc+" "+id)
	return fmt.Sprintf("cmd-%d", len(w.sent)), nil
}

func (w *fakeWorld) RunningJobs(_ context.Context, _, id string) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, ok := w.jobs[id]
	if !ok {
		return 0, errors.New("metrics do not answer")
	}
	return n, nil
}

func (w *fakeWorld) Get(_ context.Context, id string) (Mark, bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m, ok := w.marks[id]
	return m, ok, nil
}

func (w *fakeWorld) Update(_ context.Context, id string, fn func(*Mark) bool) (Mark, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m, ok := w.marks[id]
	if !ok {
		m = Mark{InstanceID: id}
	}
	if fn(&m) {
		w.marks[id] = m
	}
	return m, nil
}

func (w *fakeWorld) List(_ context.Context, group string) ([]Mark, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Mark
	for _, m := range w.marks {
		if m.Group == group && !m.Gone {
			out = append(out, m)
		}
	}
	return out, nil
}

func (w *fakeWorld) FinishLost(_ context.Context, id, _ string, jobs int) (bool, string, int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.busy {
		return false, "", 0, ErrDrainBusy
	}
	seen, ok := w.drains[id]
	if !ok {
		return false, "", 0, nil
	}
	if jobs < 0 {
		jobs = seen
	}
	delete(w.drains, id)
	w.lostDrains[id] = jobs
	return true, "blue", jobs, nil
}

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

var t0 = time.Date(2026, 11, 27, 17, 0, 0, 0, time.UTC)

func newTestHandler(t *testing.T, w *fakeWorld, modes map[string]RebalanceMode) *Handler {
	t.Helper()
	h, err := New(Config{
		Fleets: []fleet.Settings{
			{Name: "blue", GroupName: "blue-asg", TickRule: "arn:aws:events:us-east-1:1:rule/runnerfleet-blue-tick"},
			{Name: "green", GroupName: "green-asg", Documents: fleet.Documents{StopIntake: "green-stop"}},
		},
		Rebalance: modes,
	}, Deps{Groups: w, Commands: w, Jobs: w, Marks: w, Drains: w, Clock: fixedClock{t0},
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return h
}
