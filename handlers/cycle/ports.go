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
	// Describe returns the group's capacity settings, the launch template a launch uses now (its
	// id, looked up when the group names it by name, and its version resolved to a number:
	// "$Latest" and "$Default" are looked up), and its members. A group that does not exist is
	// an error wrapping ErrGroupNotFound; any other error is the worker's failure to look (a
	// *WorkerError when the adapter knows why: throttled, access denied), never the group's.
	// Members' EC2 details the worker could not read do not fail it: GroupState.AddressErr.
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
	// CurrentTemplate and CurrentVersion are the launch template (its id) and version a launch
	// uses now: an instance launched from anything else is old (Current). Both "" when the group
	// has no launch template (a launch configuration); then only a cycle with All replaces
	// anything.
	CurrentTemplate string
	CurrentVersion  string
	Members         []Member
	// AddressErr, when set, says the worker could not read the members' EC2 details
	// (DescribeInstances throttled, refused or not answered): no member has its PrivateIP or
	// LaunchedAt. Its failure, not the instances': a runner whose metrics URL needs the address
	// is one the worker could not look at (Health). Nil when they were read (an instance EC2 no
	// longer lists then has neither, and that is the instance's).
	AddressErr *WorkerError
}

// Current reports whether m was launched from what a launch uses now: the same launch template
// and the same version. A version number alone is not enough: a launch template replaced by a
// stack update (or a group switched to another template) starts again at version 1, and an
// instance of the old template's version 1 would look current. But when a template id is not
// known — an instance whose launch template specification has a version and no id (some API
// shapes, a mixed instances override), or a group the adapter gave no id for — the version is
// all there is to compare: were it old for want of an id, every cycle would replace it, and its
// replacement the same way. An instance launched from a launch configuration (no template, no
// version) is old once the group has a template.
func (g GroupState) Current(m Member) bool {
	if m.Version != "" && (m.Template == "" || g.CurrentTemplate == "") {
		return m.Version == g.CurrentVersion
	}
	return m.Template == g.CurrentTemplate && m.Version == g.CurrentVersion
}

// hasTemplate reports whether the group launches from a launch template.
func (g GroupState) hasTemplate() bool { return g.CurrentTemplate != "" || g.CurrentVersion != "" }

// launchText names what a launch uses now, for messages: "launch template lt-0abc… version 7"
// (or "launch template version 7" when the adapter gave no id).
func (g GroupState) launchText() string {
	if g.CurrentTemplate == "" {
		return "launch template version " + g.CurrentVersion
	}
	return "launch template " + g.CurrentTemplate + " version " + g.CurrentVersion
}

// Member is one instance of the group.
type Member struct {
	ID    string
	State fleet.LifecycleState
	// Template and Version are the launch template (its id) and version the instance was
	// launched from; both "" for one launched from a launch configuration.
	Template   string
	Version    string
	LaunchedAt time.Time
	PrivateIP  string
	Protected  bool
}

// Target is one runner to check: the fields a fleet's metrics URL template may use.
type Target struct {
	InstanceID string
	PrivateIP  string
	// AddressErr is GroupState.AddressErr: the worker could not read the instance's address, so
	// a runner whose metrics URL needs it is one the worker could not look at.
	AddressErr *WorkerError
}

// Runner is what a health check found about one instance's runner.
type Runner struct {
	InstanceID string
	// Known is false when the metrics could not be read (timeout, error, garbled); Reason says why.
	Known  bool
	Reason string
	// Worker, when set, says the worker could not look at the runner: one of the Worker* reasons
	// (Reason has the detail). Its own failure, which says nothing about the runner: such a
	// runner is neither healthy nor unhealthy — the cycle counts it as neither serving nor
	// failing its health timeout, and its undo never takes it for one that never served.
	Worker string
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
	// (never healthy); one the worker could not look at says why in Runner.Worker (its
	// address not read, its own deadline or network, the URL template), any other failure is
	// the runner's. The error is for a URL template that does not parse only.
	Check(ctx context.Context, urlTemplate string, targets []Target) ([]Runner, error)
}

// WorkerError is a look the worker could not make (fleet.WorkerError: the launch gate and the
// cycle share it, and the adapters that classify failures).
type WorkerError = fleet.WorkerError

// Reasons of a WorkerError (fleet's).
const (
	WorkerThrottled    = fleet.WorkerThrottled
	WorkerAccessDenied = fleet.WorkerAccessDenied
	WorkerAWSError     = fleet.WorkerAWSError
	WorkerDeadline     = fleet.WorkerDeadline
	WorkerURLTemplate  = fleet.WorkerURLTemplate
	WorkerNetwork      = fleet.WorkerNetwork
	WorkerOther        = fleet.WorkerOther
)

// workerReason is the reason of err when it is a *WorkerError, else WorkerOther.
func workerReason(err error) string {
	var we *WorkerError
	if errors.As(err, &we) && we.Reason != "" {
		return we.Reason
	}
	return WorkerOther
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
