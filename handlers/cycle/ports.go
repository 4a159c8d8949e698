package cycle

import (
	"context"
	"errors"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
)

// ErrGroupNotFound is wrapped by Group.Describe's error when the group does not exist: the
// command or tick is dead-lettered rather than retried.
var ErrGroupNotFound = errors.New("auto scaling group not found")

// Group is the fleet's Auto Scaling group as a cycle drives it: directly, not through the
// group's instance refresh (see the package doc). infra/aws/cyclestate implements it.
type Group interface {
	// Describe returns the group's capacity settings, the launch template version a launch uses
	// now (resolved to a number: "$Latest" and "$Default" are looked up), and its members.
	// A group that does not exist is an error wrapping ErrGroupNotFound.
	Describe(ctx context.Context, groupName string) (GroupState, error)
	// SetCapacity sets the desired capacity at once (HonorCooldown false), first raising the
	// group's MaxSize to max when max is above it (a surge may need room). max ≤ 0 leaves MaxSize.
	SetCapacity(ctx context.Context, groupName string, desired, max int) error
	// RestoreMax lowers MaxSize back to max (after a cycle raised it); never below desired.
	RestoreMax(ctx context.Context, groupName string, max int) error
	// TerminateInstance terminates one instance through its group, decrementing the desired
	// capacity, so the group's terminate lifecycle hook — the drain — runs before it goes.
	TerminateInstance(ctx context.Context, instanceID string) error
	// ReplaceInstance terminates one instance through its group without decrementing the
	// desired capacity: the group launches its replacement at once, and the terminate hook
	// drains it. For a group at its MinSize, where a decrement is refused.
	ReplaceInstance(ctx context.Context, instanceID string) error
}

// GroupState is what Group.Describe returns.
type GroupState struct {
	Name              string
	Desired, Min, Max int
	// CurrentVersion is the launch template version a launch uses now ("" when the group has no
	// launch template; then only a cycle with All replaces anything).
	CurrentVersion string
	Members        []Member
}

// Member is one instance of the group.
type Member struct {
	ID    string
	State fleet.LifecycleState
	// Version is the launch template version the instance was launched from.
	Version    string
	LaunchedAt time.Time
	PrivateIP  string
	Protected  bool
}

// Target is one runner to check: the fields a fleet's metrics URL template may use.
type Target struct {
	InstanceID string
	PrivateIP  string
}

// Runner is what a health check found about one instance's runner.
type Runner struct {
	InstanceID string
	// Known is false when the metrics could not be read (timeout, error, garbled); Reason says why.
	Known  bool
	Reason string
	// Rejected is true when GitLab refuses the runner's job requests (a revoked or rotated
	// token): the instance serves nothing and counts as intake-closed.
	Rejected bool
	// Healthy is true when the runner's job requests succeed (DESIGN.md): known, not rejected,
	// offering job slots. Metrics that merely answer are not enough.
	Healthy     bool
	RunningJobs int
	Capacity    int
	// Stopped says why the runner's intake was stopped outside the cycle (a spot or rebalance
	// notice, from Marks); such a runner is not Healthy.
	Stopped string
}

// Marks names a group's instances whose intake was stopped by a spot interruption warning or a
// rebalance recommendation, with why. infra/aws/marks implements it.
type Marks interface {
	IntakeStopped(ctx context.Context, group string) (map[string]string, error)
}

// Health reads the runners of a fleet. infra/aws/cyclestate implements it over infra/scrape.
type Health interface {
	// Check returns one Runner per target, in the targets' order. A failed target is not Known
	// (never healthy). The error is for a bad URL template only.
	Check(ctx context.Context, urlTemplate string, targets []Target) ([]Runner, error)
}

// StateStore keeps each fleet's cycle Record with optimistic concurrency. infra/aws/cyclestate
// implements it over the DynamoDB state table (pk "fleet#<name>", sk "cycle").
type StateStore interface {
	// Load returns the fleet's record and its version; a fleet that never cycled returns the zero
	// Record and version 0.
	Load(ctx context.Context, fleetName string) (Record, int64, error)
	// Save writes rec as version+1 if the stored version is still version (0: not yet stored). It
	// returns false, nil when another writer got there first.
	Save(ctx context.Context, fleetName string, rec Record, version int64) (bool, error)
}
