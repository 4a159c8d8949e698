package scale

import (
	"context"
	"slices"
	"sync"

	"github.com/runnerfleet/runnerfleet/fleet"
)

// fakeGroup is a race-safe Auto Scaling group in memory.
type fakeGroup struct {
	mu          sync.Mutex
	state       GroupState
	describeErr error
	setErr      error // SetDesiredCapacity fails with it
	calls       []string
	terminated  []string
	protected   map[string]bool
}

func (g *fakeGroup) Describe(_ context.Context, name string) (GroupState, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, "describe")
	if g.describeErr != nil {
		return GroupState{}, g.describeErr
	}
	s := g.state
	s.Name = name
	s.Members = slices.Clone(g.state.Members)
	for i := range s.Members {
		s.Members[i].Instance.Protected = g.protected[s.Members[i].Instance.ID]
	}
	return s, nil
}

func (g *fakeGroup) SetDesiredCapacity(_ context.Context, _ string, desired int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, "set_desired")
	if g.setErr != nil {
		return g.setErr
	}
	g.state.Desired = desired
	return nil
}

func (g *fakeGroup) SetProtection(_ context.Context, _ string, ids []string, protected bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if protected {
		g.calls = append(g.calls, "protect")
	} else {
		g.calls = append(g.calls, "unprotect")
	}
	if g.protected == nil {
		g.protected = map[string]bool{}
	}
	for _, id := range ids {
		g.protected[id] = protected
	}
	return nil
}

func (g *fakeGroup) TerminateInstance(_ context.Context, id string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, "terminate")
	// Like AWS: scale-in protection guards against the group's own choices, not this call.
	g.terminated = append(g.terminated, id)
	g.state.Members = slices.DeleteFunc(g.state.Members, func(m Member) bool { return m.Instance.ID == id })
	g.state.Desired--
	return nil
}

// ReplaceInstance terminates id and, like an Auto Scaling group keeping its desired capacity,
// launches another in its place (Pending until the test says otherwise).
func (g *fakeGroup) ReplaceInstance(_ context.Context, id string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, "replace")
	g.terminated = append(g.terminated, id)
	g.state.Members = slices.DeleteFunc(g.state.Members, func(m Member) bool { return m.Instance.ID == id })
	g.state.Members = append(g.state.Members, Member{Instance: fleet.Instance{ID: id + "-new", State: fleet.StatePending}})
	return nil
}

func (g *fakeGroup) snapshot() (desired int, terminated []string, protected map[string]bool, calls []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := map[string]bool{}
	for k, v := range g.protected {
		p[k] = v
	}
	return g.state.Desired, slices.Clone(g.terminated), p, slices.Clone(g.calls)
}

// fakeScraper answers from a table of per-instance results; absent IDs are unknown.
type fakeScraper struct {
	mu      sync.Mutex
	results map[string]fleet.Instance
	calls   int
}

func (s *fakeScraper) set(id string, inst fleet.Instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.results == nil {
		s.results = map[string]fleet.Instance{}
	}
	inst.ID = id
	s.results[id] = inst
}

func (s *fakeScraper) ScrapeRunners(_ context.Context, _ string, targets []Target) ([]fleet.Instance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	out := make([]fleet.Instance, len(targets))
	for i, t := range targets {
		r, ok := s.results[t.InstanceID]
		if !ok {
			r = fleet.Instance{ID: t.InstanceID, Unknown: true, UnknownReason: "timeout"}
		}
		out[i] = r
	}
	return out, nil
}

// fakeSink records publishes; err makes them fail, block makes them wait for their deadline.
type fakeSink struct {
	mu        sync.Mutex
	err       error
	block     bool
	published []FleetMetrics
}

func (s *fakeSink) Publish(ctx context.Context, m FleetMetrics) error {
	s.mu.Lock()
	block, err := s.block, s.err
	s.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		return err
	}
	s.published = append(s.published, m)
	return nil
}

func (s *fakeSink) last() (FleetMetrics, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.published) == 0 {
		return FleetMetrics{}, 0
	}
	return s.published[len(s.published)-1], len(s.published)
}

// fakeStore is a versioned record store with the StateStore's conditional semantics.
type fakeStore struct {
	mu       sync.Mutex
	recs     map[string]Record
	versions map[string]int64
	// beforeSave, when set, runs (unlocked) before each Save: a test's way to let another
	// writer in between a Load and a Save.
	beforeSave func()
}

func newFakeStore() *fakeStore {
	return &fakeStore{recs: map[string]Record{}, versions: map[string]int64{}}
}

func (s *fakeStore) Load(_ context.Context, name string) (Record, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recs[name], s.versions[name], nil
}

func (s *fakeStore) Save(_ context.Context, name string, rec Record, version int64) (bool, error) {
	s.mu.Lock()
	hook := s.beforeSave
	s.beforeSave = nil
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.versions[name] != version {
		return false, nil
	}
	s.recs[name] = rec
	s.versions[name] = version + 1
	return true, nil
}

func (s *fakeStore) get(name string) Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recs[name]
}

// fakeHold says whether a cycle holds a fleet (why, or "a cycle is in progress" when only active
// is set); err makes it fail.
type fakeHold struct {
	mu     sync.Mutex
	active bool
	why    string
	err    error
	asked  []string
}

func (h *fakeHold) Holding(_ context.Context, fleetName string) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.asked = append(h.asked, fleetName)
	switch {
	case !h.active:
		return "", h.err
	case h.why != "":
		return h.why, h.err
	}
	return "a cycle is in progress and owns the desired capacity", h.err
}

func (h *fakeHold) set(active bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.active, h.err = active, err
}
