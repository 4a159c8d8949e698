package launch

import (
	"context"
	"errors"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
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
// the success statuses, rejected the token refusals. An error is a look that failed, and whose
// failure it was matters:
//   - a *WorkerError (wrapped or not): the worker could not look (an AWS call to find the runner
//     throttled or refused, the worker's own deadline, its metrics URL template, its own network).
//     It says nothing about the runner: the gate does not count it as a look and looks again.
//   - any other error: the runner did not answer, or answered badly (connection refused, no
//     answer in time, an HTTP error, a garbled page, an instance EC2 no longer knows). It is a
//     look, and counts toward "no answer".
type Health interface {
	RequestJobs(ctx context.Context, fleet, instanceID string) (ok, rejected float64, err error)
}

// Jobs counts a runner's running jobs (infra/aws/marks.Runners implements it): the gate asks it
// before it would ABANDON, and never abandons a runner that is running jobs. Its errors are
// told apart as Health's are: a *WorkerError means the worker could not count them, which never
// leads to an ABANDON; any other means the runner's metrics did not answer.
type Jobs interface {
	RunningJobs(ctx context.Context, fleet, instanceID string) (int, error)
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

// workerReasons are the Reasons counted under their own label.
var workerReasons = map[string]bool{WorkerThrottled: true, WorkerAccessDenied: true, WorkerAWSError: true,
	WorkerDeadline: true, WorkerURLTemplate: true, WorkerNetwork: true}

// workerSide returns err as a look the worker could not make, its Reason normalized, or nil when
// err is nil or the runner's (a look that reached it, or tried to). A failure after ctx ended is
// the worker's whatever the adapter said: the step ran out of time, the runner was not given its.
func workerSide(ctx context.Context, err error) *WorkerError {
	if err == nil {
		return nil
	}
	var we *WorkerError
	if errors.As(err, &we) {
		out := *we
		if !workerReasons[out.Reason] {
			out.Reason = WorkerOther
		}
		if out.Err == nil {
			out.Err = err
		}
		return &out
	}
	if ctx.Err() != nil {
		return &WorkerError{Reason: WorkerDeadline, Err: err}
	}
	return nil
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
