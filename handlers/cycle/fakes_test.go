package cycle

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
)

// fakeGroup is a race-safe Auto Scaling group in memory that behaves enough like one: raising
// desired launches members (InService at the next Describe), TerminateInstance moves a member to
// Terminating:Wait and decrements desired, and a "drain" removes it drainSteps Describes later.
// Its MaxSize starts at the desired capacity (no room: a surge raises it); a test sets
// state.Max for a group with room. A call on a context that has ended fails with the context's
// error and changes nothing, as an SDK call does.
type fakeGroup struct {
	mu         sync.Mutex
	state      GroupState
	next       int
	drainSteps int
	leaving    map[string]int // id → Describes left before it is gone
	terminated []string
	inPlace    []string // terminated without decrement
	setCalls   int
	restored   int
	describes  int
	// minServing is the least number of serving instances any Describe saw (health decides).
	health       *fakeHealth
	minServing   int
	terminateErr error
	// pendingSteps keeps each launch Pending for that many more Describes.
	pendingSteps int
	pending      map[string]int
	// launchFails makes the group launch nothing (capacity or launch template errors).
	launchFails bool
	// terminateIgnored accepts every terminate and carries out none (a suspended process).
	terminateIgnored bool
	// loseUnhealthyAfter, when set, removes an InService member whose runner is not healthy once
	// that many Describes saw it so (the launch gate abandoning it, EC2's health check replacing
	// it): the group launches another in its place.
	loseUnhealthyAfter int
	unhealthyFor       map[string]int
	lost               []string
	// describeErr, when set, fails every Describe (the worker's own failure to look: throttled,
	// denied).
	describeErr error
}

func newFakeGroup(version string, ids ...string) *fakeGroup {
	g := &fakeGroup{state: GroupState{Name: "grp", Desired: len(ids), Max: len(ids), CurrentVersion: version}, leaving: map[string]int{}, minServing: 1 << 30, drainSteps: 2}
	for _, id := range ids {
		g.state.Members = append(g.state.Members, Member{ID: id, State: fleet.StateInService, Version: "1", PrivateIP: "10.0.0.1"})
	}
	return g
}

func (g *fakeGroup) Describe(ctx context.Context, name string) (GroupState, error) {
	if err := ctx.Err(); err != nil {
		return GroupState{}, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.describeErr != nil {
		return GroupState{}, g.describeErr
	}
	g.describes++
	// Drains progress; launches come into service.
	var members []Member
	for _, m := range g.state.Members {
		if m.State == fleet.StateTerminatingWait {
			g.leaving[m.ID]--
			if g.leaving[m.ID] <= 0 {
				continue
			}
		}
		if m.State == fleet.StatePending {
			if g.pending[m.ID] > 0 {
				g.pending[m.ID]--
			} else {
				m.State = fleet.StateInService
			}
		}
		if g.losesUnhealthy(m) {
			g.lost = append(g.lost, m.ID)
			continue
		}
		members = append(members, m)
	}
	live := 0
	for _, m := range members {
		if !m.State.Leaving() {
			live++
		}
	}
	for ; live < g.state.Desired && !g.launchFails; live++ {
		g.next++
		id := fmt.Sprintf("i-new%02d", g.next)
		members = append(members, Member{ID: id, State: fleet.StatePending, Template: g.state.CurrentTemplate, Version: g.state.CurrentVersion,
			LaunchedAt: time.Unix(int64(1000+g.next), 0)})
		if g.pendingSteps > 0 {
			if g.pending == nil {
				g.pending = map[string]int{}
			}
			g.pending[id] = g.pendingSteps
		}
	}
	g.state.Members = members
	if g.health != nil {
		serving := 0
		for _, m := range members {
			if m.State.InService() && g.health.healthy(m.ID) {
				serving++
			}
		}
		g.minServing = min(g.minServing, serving)
	}
	s := g.state
	s.Name = name
	s.Members = slices.Clone(members)
	return s, nil
}

// losesUnhealthy counts one more Describe of m and reports whether the group now loses it
// (loseUnhealthyAfter). Called with g.mu held.
func (g *fakeGroup) losesUnhealthy(m Member) bool {
	if g.loseUnhealthyAfter == 0 || g.health == nil || !m.State.InService() || g.health.healthy(m.ID) {
		return false
	}
	if g.unhealthyFor == nil {
		g.unhealthyFor = map[string]int{}
	}
	g.unhealthyFor[m.ID]++
	return g.unhealthyFor[m.ID] >= g.loseUnhealthyAfter
}

func (g *fakeGroup) SetCapacity(ctx context.Context, _ string, desired, max int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.setCalls++
	if max > g.state.Max {
		g.state.Max = max
	}
	if desired > g.state.Max {
		return fmt.Errorf("desired %d above max %d", desired, g.state.Max)
	}
	g.state.Desired = desired
	return nil
}

func (g *fakeGroup) maxSize() int { g.mu.Lock(); defer g.mu.Unlock(); return g.state.Max }

// RestoreMax never goes below the desired capacity, as the real adapter (cyclestate.Group).
func (g *fakeGroup) RestoreMax(ctx context.Context, _ string, to int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.restored++
	g.state.Max = max(to, g.state.Desired)
	return nil
}

// setLaunchFails makes the group launch nothing (true) or launch again (false).
func (g *fakeGroup) setLaunchFails(fails bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.launchFails = fails
}

// TerminateInstance refuses to decrement below MinSize, as Auto Scaling does.
func (g *fakeGroup) TerminateInstance(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return g.terminate(id, true)
}

func (g *fakeGroup) ReplaceInstance(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return g.terminate(id, false)
}

// setDescribeErr makes every Describe fail with err (nil: answer again).
func (g *fakeGroup) setDescribeErr(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.describeErr = err
}

// setTerminateErr makes every terminate fail with err (nil: succeed again).
func (g *fakeGroup) setTerminateErr(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.terminateErr = err
}

// describeCount returns how many Describes were made.
func (g *fakeGroup) describeCount() int { g.mu.Lock(); defer g.mu.Unlock(); return g.describes }

// capacity returns how many SetCapacity calls were made and the desired capacity.
func (g *fakeGroup) capacity() (setCalls, desired int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.setCalls, g.state.Desired
}

func (g *fakeGroup) terminate(id string, decrement bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.terminateErr != nil {
		return g.terminateErr
	}
	if g.terminateIgnored {
		return nil
	}
	if decrement && g.state.Desired-1 < g.state.Min {
		return fmt.Errorf("ValidationError: Currently, desiredSize equals minSize (%d). Terminating instance without replacement will violate group's min size constraint", g.state.Min)
	}
	for i, m := range g.state.Members {
		// Auto Scaling terminates a booting instance too (only a warm pool's are refused).
		if m.ID == id && (m.State.InService() || m.State == fleet.StatePending) {
			g.state.Members[i].State = fleet.StateTerminatingWait
			g.leaving[id] = g.drainSteps
			if decrement {
				g.state.Desired--
			} else {
				g.inPlace = append(g.inPlace, id)
			}
			g.terminated = append(g.terminated, id)
			return nil
		}
	}
	return fmt.Errorf("%s is neither InService nor Pending", id)
}

// fakeAPIError is an AWS API error as the SDK's smithy.APIError shows it.
type fakeAPIError struct{ code, message string }

func (e fakeAPIError) Error() string {
	return "operation error Auto Scaling: TerminateInstanceInAutoScalingGroup, https response error StatusCode: 403, RequestID: 1a2b, api error " +
		e.code + ": " + e.message
}
func (e fakeAPIError) ErrorCode() string    { return e.code }
func (e fakeAPIError) ErrorMessage() string { return e.message }

// setState moves a member to a lifecycle state (an operator's Standby).
func (g *fakeGroup) setState(id string, st fleet.LifecycleState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, m := range g.state.Members {
		if m.ID == id {
			g.state.Members[i].State = st
		}
	}
}

func (g *fakeGroup) snapshot() (GroupState, []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.state
	s.Members = slices.Clone(s.Members)
	return s, slices.Clone(g.terminated)
}

// fakeHealth answers per instance: healthy unless listed as unknown or rejected, or as one the
// worker cannot look at.
type fakeHealth struct {
	mu       sync.Mutex
	unknown  map[string]bool
	rejected map[string]bool
	// unknownNew makes every instance whose ID starts with "i-new" unknown.
	unknownNew bool
	// blindNew, when set, is the reason the worker cannot look at any instance whose ID starts
	// with "i-new" (Runner.Worker); blind names others.
	blindNew string
	blind    map[string]string
}

// setBlindNew makes the worker unable to look at the replacements (reason), or able ("").
func (h *fakeHealth) setBlindNew(reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.blindNew = reason
}

func (h *fakeHealth) runner(id string) Runner {
	isNew := len(id) > 5 && id[:5] == "i-new"
	switch {
	case h.blind[id] != "":
		return Runner{InstanceID: id, Reason: "could not look", Worker: h.blind[id]}
	case h.blindNew != "" && isNew:
		return Runner{InstanceID: id, Reason: "the instance's address could not be read: RequestLimitExceeded", Worker: h.blindNew}
	case h.unknown[id] || (h.unknownNew && isNew):
		return Runner{InstanceID: id, Reason: "timeout"}
	case h.rejected[id]:
		return Runner{InstanceID: id, Known: true, Rejected: true, Capacity: 0}
	}
	return Runner{InstanceID: id, Known: true, Healthy: true, Capacity: 4}
}

func (h *fakeHealth) healthy(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.runner(id).Healthy
}

func (h *fakeHealth) Check(_ context.Context, _ string, targets []Target) ([]Runner, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Runner, len(targets))
	for i, t := range targets {
		out[i] = h.runner(t.InstanceID)
	}
	return out, nil
}

// fakeStore is a versioned record store; loseNext makes the next Save lose its race. A Save on a
// context that has ended fails, as a DynamoDB call does. afterSave, when set, is called after
// each write that landed, outside the lock, with the writer's context and what it wrote: a test
// pauses the writer there (a replica stopped between its claim and its calls).
type fakeStore struct {
	mu        sync.Mutex
	rec       map[string]Record
	ver       map[string]int64
	loseNext  bool
	saves     int
	afterSave func(ctx context.Context, rec Record)
}

func newFakeStore() *fakeStore {
	return &fakeStore{rec: map[string]Record{}, ver: map[string]int64{}}
}

func (s *fakeStore) Load(_ context.Context, f string) (Record, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return clone(s.rec[f]), s.ver[f], nil
}

func (s *fakeStore) Save(ctx context.Context, f string, rec Record, version int64) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	if s.loseNext {
		s.loseNext = false
		s.ver[f]++ // another writer
		s.mu.Unlock()
		return false, nil
	}
	if s.ver[f] != version {
		s.mu.Unlock()
		return false, nil
	}
	s.saves++
	s.rec[f] = clone(rec)
	s.ver[f] = version + 1
	after := s.afterSave
	s.mu.Unlock()
	if after != nil {
		after(ctx, clone(rec))
	}
	return true, nil
}

// saveCount returns how many writes landed.
func (s *fakeStore) saveCount() int { s.mu.Lock(); defer s.mu.Unlock(); return s.saves }

func (s *fakeStore) get(f string) Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return clone(s.rec[f])
}

// clone deep-copies a record the way a JSON round trip would.
func clone(r Record) Record {
	r.Old, r.Kept, r.Retired, r.Healthy, r.Events = slices.Clone(r.Old), slices.Clone(r.Kept), slices.Clone(r.Retired), slices.Clone(r.Healthy), slices.Clone(r.Events)
	r.Aside, r.Unlooked = slices.Clone(r.Aside), slices.Clone(r.Unlooked)
	if r.Claim != nil {
		c := *r.Claim
		r.Claim = &c
	}
	if r.Stuck != nil {
		m := make(map[string]Stuck, len(r.Stuck))
		for k, v := range r.Stuck {
			m[k] = v
		}
		r.Stuck = m
	}
	if r.Seen != nil {
		m := make(map[string]time.Time, len(r.Seen))
		for k, v := range r.Seen {
			m[k] = v
		}
		r.Seen = m
	}
	if r.RetiredAt != nil {
		m := make(map[string]time.Time, len(r.RetiredAt))
		for k, v := range r.RetiredAt {
			m[k] = v
		}
		r.RetiredAt = m
	}
	return r
}
