// Package marks keeps RunnerFleet's per-instance marks in the state table and adapts the Auto
// Scaling, drain-record and runner-metrics sides that handlers/interrupt and handlers/launch
// declare:
//
//   - Store: instance marks (handlers/interrupt.Marks), pk "instance#<id>", sk "mark", the JSON
//     of interrupt.Mark; a mark is unfinished until its instance is gone, then kept a week (TTL).
//   - Group: a handlers/scale.Group that merges marks into the group's members, so a tick sees a
//     spot-interrupted or intake-stopped instance as offering no capacity.
//   - Groups: DescribeAutoScalingInstances and TerminateInstanceInAutoScalingGroup.
//   - Drains: finishes a handlers/drain record as "lost" (interrupt.Drains).
//   - Health: a runner's request_job statuses (handlers/launch.Health).
//   - LaunchFollowUps: delayed launch-gate follow-ups on the lifecycle queue.
package marks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/runnerfleet/runnerfleet/handlers/interrupt"
	"github.com/runnerfleet/runnerfleet/infra/aws/state"
)

// Table is the state table as marks use it (infra/aws/state.Table implements it).
type Table interface {
	state.Versioned
	Unfinished(ctx context.Context, prefix string) ([][]byte, error)
}

// Keys of a mark.
const (
	keyPrefix = "instance#"
	sortKey   = "mark"
)

// Retention keeps a gone instance's mark a week (TTL), to read what happened to it.
const Retention = 7 * 24 * time.Hour

// updateRetries bounds re-reads when a mark's conditional write loses a race: a handful of
// writers (one notice, one tick, one state change) ever touch one mark.
const updateRetries = 8

// Store implements interrupt.Marks over the state table. It is safe for concurrent use.
type Store struct {
	t   Table
	now func() time.Time
}

var _ interrupt.Marks = (*Store)(nil)

// NewStore returns a Store; it refuses a nil table.
func NewStore(t Table) (*Store, error) {
	if t == nil {
		return nil, errors.New("marks: nil state table")
	}
	return &Store{t: t, now: time.Now}, nil
}

// Get returns the instance's mark.
func (s *Store) Get(ctx context.Context, id string) (interrupt.Mark, bool, error) {
	m, _, found, err := s.load(ctx, id)
	return m, found, err
}

func (s *Store) load(ctx context.Context, id string) (interrupt.Mark, int64, bool, error) {
	body, version, found, err := s.t.Load(ctx, keyPrefix+id, sortKey)
	if err != nil || !found {
		return interrupt.Mark{InstanceID: id, JobsAtNotice: -1, Lost: -1}, 0, false, err
	}
	var m interrupt.Mark
	if err := json.Unmarshal(body, &m); err != nil {
		return interrupt.Mark{}, 0, false, fmt.Errorf("marks: mark of %s unreadable: %w", id, err)
	}
	return m, version, true, nil
}

// Update reads, changes and writes a mark with a conditional write, retrying lost races. A new
// mark starts with InstanceID set and JobsAtNotice and Lost at -1 (unknown). A mark whose
// instance is Gone is written with the table's TTL (finished).
func (s *Store) Update(ctx context.Context, id string, fn func(m *interrupt.Mark) bool) (interrupt.Mark, error) {
	for range updateRetries {
		m, version, _, err := s.load(ctx, id)
		if err != nil {
			return interrupt.Mark{}, err
		}
		if !fn(&m) {
			return m, nil
		}
		m.InstanceID = id
		body, err := json.Marshal(m)
		if err != nil {
			return interrupt.Mark{}, fmt.Errorf("marks: encoding mark of %s: %w", id, err)
		}
		var expires time.Time
		if m.Gone {
			expires = s.now().Add(Retention)
		}
		ok, err := s.t.Save(ctx, keyPrefix+id, sortKey, body, version, time.Time{}, expires)
		if err != nil {
			return interrupt.Mark{}, fmt.Errorf("marks: saving mark of %s: %w", id, err)
		}
		if ok {
			return m, nil
		}
	}
	return interrupt.Mark{}, fmt.Errorf("marks: saving mark of %s: lost %d conditional writes in a row", id, updateRetries)
}

// IntakeStopped names the group's instances whose intake a notice stopped, or that are being
// reclaimed, with why (handlers/cycle.Marks).
func (s *Store) IntakeStopped(ctx context.Context, group string) (map[string]string, error) {
	marks, err := s.List(ctx, group)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, m := range marks {
		switch {
		case m.SpotInterrupted:
			out[m.InstanceID] = "spot interruption warning: being reclaimed"
		case m.IntakeStopped:
			out[m.InstanceID] = "intake stopped after a rebalance recommendation"
		}
	}
	return out, nil
}

// List returns the unfinished marks of the group's instances (one query of the unfinished marks).
func (s *Store) List(ctx context.Context, group string) ([]interrupt.Mark, error) {
	bodies, err := s.t.Unfinished(ctx, keyPrefix)
	if err != nil {
		return nil, fmt.Errorf("marks: listing marks: %w", err)
	}
	var out []interrupt.Mark
	for _, b := range bodies {
		// Another group's mark is not this group's concern, even one this version cannot read
		// (a field another version wrote differently): only the group is read first. An
		// unreadable mark of this group fails the listing: a tick must not take a reclaimed
		// instance for capacity.
		var head struct {
			Group string `json:"group"`
		}
		if json.Unmarshal(b, &head) == nil && head.Group != group {
			continue
		}
		var m interrupt.Mark
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("marks: listing marks of group %s: unreadable mark: %w", group, err)
		}
		if m.Group == group && !m.Gone {
			out = append(out, m)
		}
	}
	return out, nil
}
