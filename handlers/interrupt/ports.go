package interrupt

import (
	"context"
	"errors"
	"time"
)

// ErrRefused is wrapped by Groups.Terminate's error when Auto Scaling refuses the call for good
// (e.g. the group would fall below its minimum size): the command is dead-lettered with the
// reason rather than retried.
var ErrRefused = errors.New("refused by auto scaling")

// Groups is the Auto Scaling side (infra/aws/marks.Groups implements it).
type Groups interface {
	// GroupOf returns the instance's Auto Scaling group and lifecycle state
	// (DescribeAutoScalingInstances); found is false when no group knows the instance.
	GroupOf(ctx context.Context, instanceID string) (group, state string, found bool, err error)
	// GroupsOf returns the Auto Scaling group of each instance a group knows, in as few
	// DescribeAutoScalingInstances calls as it takes (50 instances each); instances no group
	// knows are absent.
	GroupsOf(ctx context.Context, instanceIDs []string) (map[string]string, error)
	// Terminate terminates the instance through its group (TerminateInstanceInAutoScalingGroup),
	// so the group's terminate hook drains it; decrement lowers the desired capacity, otherwise
	// the group launches a replacement. Permanent refusals wrap ErrRefused.
	Terminate(ctx context.Context, instanceID string, decrement bool) error
}

// ErrUnreachable is wrapped by Commands.Send's error when SSM does not manage the instance (it is
// shutting down or terminated, or its agent never registered): nothing can be sent to it, now or
// on a retry.
var ErrUnreachable = errors.New("ssm cannot reach the instance")

// Commands sends an SSM document to an instance (infra/aws/marks.Commands implements it over
// infra/aws/runcmd). An instance SSM does not manage is an error wrapping ErrUnreachable.
type Commands interface {
	Send(ctx context.Context, document, instanceID string) (commandID string, err error)
}

// Owners tells an instance's Auto Scaling group from its aws:autoscaling:groupName tag
// (infra/aws/marks.Owners implements it with DescribeInstances). EC2 keeps the tag while the
// instance stops and for a while after it terminates, when the group no longer lists it.
type Owners interface {
	// GroupTag returns the group the instance was launched by; found is false when EC2 does not
	// know the instance or it has no such tag.
	GroupTag(ctx context.Context, instanceID string) (group string, found bool, err error)
}

// Jobs counts the jobs running on an instance from its runner's metrics; an error means the
// metrics did not answer usefully (the caller falls back to what it saw before).
type Jobs interface {
	RunningJobs(ctx context.Context, fleet, instanceID string) (int, error)
}

// Marks keeps instance marks with conditional writes (infra/aws/marks.Store implements it).
type Marks interface {
	// Get returns the instance's mark; found is false when it has none.
	Get(ctx context.Context, instanceID string) (m Mark, found bool, err error)
	// Update reads the mark (zero Mark with InstanceID set when absent), calls fn, and writes the
	// result when fn returns true, conditioned on the version read; on a lost race it re-reads
	// and calls fn again. It returns the mark as stored (or as read, when fn changed nothing).
	Update(ctx context.Context, instanceID string, fn func(m *Mark) bool) (Mark, error)
	// List returns the unfinished marks of the instances of an Auto Scaling group.
	List(ctx context.Context, group string) ([]Mark, error)
}

// Drains finishes a drain in progress whose instance went away under it (infra/aws/marks.Drains
// implements it over the drain records of handlers/drain).
type Drains interface {
	// FinishLost finishes the unfinished drain of the instance, if any, with outcome "lost" and
	// jobs as the jobs that were running (-1: use the drain's last count). It returns found
	// false when no drain of the instance is in progress, and the fleet and job count recorded.
	// It returns an error wrapping ErrDrainBusy while a step of the drain is running (retry).
	FinishLost(ctx context.Context, instanceID, state string, jobs int) (found bool, fleet string, lost int, err error)
}

// ErrDrainBusy: a drain step holds the record's lease; the state change is retried after it.
var ErrDrainBusy = errors.New("a drain step is in progress")

// Clock tells the time; tests give a fake one.
type Clock interface{ Now() time.Time }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Mark is what RunnerFleet knows about one instance beyond its group: notices it received and
// what was done about them. It is stored as JSON under pk "instance#<id>", sk "mark".
type Mark struct {
	InstanceID string `json:"instance_id"`
	Fleet      string `json:"fleet,omitempty"`
	Group      string `json:"group,omitempty"`

	// SpotInterrupted: a Spot Instance Interruption Warning arrived at SpotAt.
	SpotInterrupted bool      `json:"spot_interrupted,omitempty"`
	SpotAt          time.Time `json:"spot_at,omitzero"`
	// RebalanceRecommended: a Rebalance Recommendation arrived at RebalanceAt.
	RebalanceRecommended bool      `json:"rebalance_recommended,omitempty"`
	RebalanceAt          time.Time `json:"rebalance_at,omitzero"`

	// IntakeStopped: the stop-intake document was sent (StopCommandID) at StoppedAt.
	IntakeStopped bool      `json:"intake_stopped,omitempty"`
	StopCommandID string    `json:"stop_command_id,omitempty"`
	StoppedAt     time.Time `json:"stopped_at,omitzero"`
	// JobsAtNotice is the running-job count scraped when the notice arrived; -1 unknown.
	JobsAtNotice int `json:"jobs_at_notice"`

	// Replaced: a tick retired the instance through its group with a replacement.
	Replaced   bool      `json:"replaced,omitempty"`
	ReplacedAt time.Time `json:"replaced_at,omitzero"`

	// LeftAt: a tick first found the instance out of its group with the mark still open (its
	// state change not handled yet); CloseStale closes the mark StaleMarkAge later.
	LeftAt time.Time `json:"left_at,omitzero"`

	// Gone: the instance shut down (State), at GoneAt; Lost jobs were running then (-1 unknown).
	Gone   bool      `json:"gone,omitempty"`
	State  string    `json:"state,omitempty"`
	GoneAt time.Time `json:"gone_at,omitzero"`
	Lost   int       `json:"lost"`
}
