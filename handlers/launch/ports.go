package launch

import (
	"context"
	"time"

	"github.com/runnerfleet/runnerfleet/messages"
)

// Store keeps versioned records (infra/aws/state.Table implements it); see handlers/drain.Store
// for the contract.
type Store interface {
	Load(ctx context.Context, pk, sk string) (body []byte, version int64, found bool, err error)
	Save(ctx context.Context, pk, sk string, body []byte, version int64, due, expires time.Time) (bool, error)
	Unfinished(ctx context.Context, prefix string) ([][]byte, error)
}

// Lifecycle completes and heartbeats lifecycle actions (infra/aws/lifecycle implements it).
type Lifecycle interface {
	// HookTimeouts returns the hook's heartbeat and global timeouts (DescribeLifecycleHooks).
	HookTimeouts(ctx context.Context, group, hook string) (heartbeat, global time.Duration, err error)
	// Heartbeat records a heartbeat; active is false when the action is no longer pending.
	Heartbeat(ctx context.Context, group, hook, token, instanceID string) (active bool, err error)
	// Complete completes the action with CONTINUE or ABANDON; active is false when it was no
	// longer pending.
	Complete(ctx context.Context, group, hook, token, instanceID, result string) (active bool, err error)
}

// Health reads a runner's request_job counters (infra/aws/marks.Runners implements it): ok sums
// the success statuses, rejected the token refusals. An error means the metrics did not answer.
type Health interface {
	RequestJobs(ctx context.Context, fleet, instanceID string) (ok, rejected float64, err error)
}

// Jobs counts a runner's running jobs (infra/aws/marks.Runners implements it): the gate asks it
// before it would ABANDON, and never abandons a runner that is running jobs. An error means the
// metrics did not answer.
type Jobs interface {
	RunningJobs(ctx context.Context, fleet, instanceID string) (int, error)
}

// FollowUps re-publishes a launch event to the lifecycle queue after delay (≤ MaxDelay)
// (infra/aws/marks.LaunchFollowUps implements it).
type FollowUps interface {
	Schedule(ctx context.Context, event messages.Envelope, delay time.Duration) error
}

// MaxDelay is SQS's largest message delay.
const MaxDelay = 900 * time.Second

// Clock tells the time.
type Clock interface{ Now() time.Time }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }
