package launch

import (
	"context"
	"errors"
	"fmt"
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

// WorkerError is a look at a runner that the worker could not make: the failure is on the
// worker's side and says nothing about the runner. Adapters return it (Health, Jobs) for what
// they know to be theirs; the gate also takes any failure after its own step's context ended as
// the worker's.
type WorkerError struct {
	// Reason is one of the Worker* reasons (the reason label of look_failures_total; any other
	// value is counted as WorkerOther).
	Reason string
	// Err is what failed.
	Err error
}

func (e *WorkerError) Error() string {
	return fmt.Sprintf("the worker could not look (%s): %v", e.Reason, e.Err)
}

func (e *WorkerError) Unwrap() error { return e.Err }

// Reasons of a WorkerError.
const (
	// WorkerThrottled: an AWS call the look needs (DescribeInstances for the runner's address)
	// was throttled.
	WorkerThrottled = "throttled"
	// WorkerAccessDenied: such a call was refused for the worker's role or credentials.
	WorkerAccessDenied = "access-denied"
	// WorkerAWSError: such a call failed otherwise (5xx, AWS unreachable).
	WorkerAWSError = "aws-error"
	// WorkerDeadline: the worker's step ran out of time, or was cancelled (a shutdown).
	WorkerDeadline = "deadline"
	// WorkerURLTemplate: the fleet's metrics URL could not be made from its template.
	WorkerURLTemplate = "url-template"
	// WorkerNetwork: the worker's own network: its DNS resolver failed, its egress guard
	// (loopback only) refused the address, or its own sockets failed (out of file descriptors or
	// local ports, no route from its subnet).
	WorkerNetwork = "network"
	// WorkerOther: any other reason an adapter gave.
	WorkerOther = "other"
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
