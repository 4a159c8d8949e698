package drain

import (
	"context"
	"time"

	"github.com/runnerfleet/runnerfleet/messages"
)

// Store keeps versioned drain records (infra/aws/state.Table satisfies it).
type Store interface {
	// Load returns a record's body and version; found is false when it does not exist.
	Load(ctx context.Context, pk, sk string) (body []byte, version int64, found bool, err error)
	// Save writes body as version+1 if the stored version is still version (0: create only if
	// absent). It returns false and no error when that condition failed. due, when not zero, is
	// when the next step is due; expires, when not zero, marks the record finished (its TTL).
	Save(ctx context.Context, pk, sk string, body []byte, version int64, due, expires time.Time) (bool, error)
	// Unfinished returns the bodies of every unfinished record whose pk starts with prefix.
	Unfinished(ctx context.Context, prefix string) ([][]byte, error)
}

// SSM command statuses as Commands.Status reports them (SSM's CommandInvocationStatus values).
const (
	CommandPending    = "Pending"
	CommandInProgress = "InProgress"
	CommandDelayed    = "Delayed"
	CommandSuccess    = "Success"
)

// Commands runs the drain SSM documents on an instance (infra/aws/runcmd satisfies it).
type Commands interface {
	// Managed reports whether the instance is managed by SSM (registered in
	// DescribeInstanceInformation and not Inactive); false means no command can reach it. An
	// agent that lost its connection is still managed: its failing commands are retried.
	Managed(ctx context.Context, instanceID string) (bool, error)
	// Send starts the named document on the instance and returns the command id.
	Send(ctx context.Context, document, instanceID string) (commandID string, err error)
	// Find returns the newest command of document sent to the instance at or after after: it
	// settles a Send that failed after SSM may have taken the command (a lost answer).
	Find(ctx context.Context, document, instanceID string, after time.Time) (commandID string, found bool, err error)
	// Status returns the invocation's status (CommandPending right after Send, while SSM does
	// not know the invocation yet; then SSM's statuses) and its standard output.
	Status(ctx context.Context, commandID, instanceID string) (status, stdout string, err error)
	// DocumentExists reports whether the SSM document exists (checked at start-up: a drain
	// whose document is missing could never stop its runner).
	DocumentExists(ctx context.Context, name string) (bool, error)
}

// Lifecycle is the Auto Scaling side of a drain (infra/aws/lifecycle satisfies it).
type Lifecycle interface {
	// HookTimeouts returns a hook's heartbeat timeout and global timeout (zero global: the
	// caller uses AWS's rule, min(48h, 100 × heartbeat timeout)).
	HookTimeouts(ctx context.Context, group, hook string) (heartbeat, global time.Duration, err error)
	// GroupExists reports whether the Auto Scaling group exists.
	GroupExists(ctx context.Context, group string) (bool, error)
	// TerminateHooks names the group's hooks on autoscaling:EC2_INSTANCE_TERMINATING.
	TerminateHooks(ctx context.Context, group string) ([]string, error)
	// LaunchHooks names the group's hooks on autoscaling:EC2_INSTANCE_LAUNCHING (the start-up
	// check says which are left to another tool).
	LaunchHooks(ctx context.Context, group string) ([]string, error)
	// InstanceState returns the instance's lifecycle state in its group (e.g.
	// "Terminating:Wait"); found is false when the group no longer knows it.
	InstanceState(ctx context.Context, instanceID string) (state string, found bool, err error)
	// Heartbeat records a lifecycle action heartbeat; active is false when the action is no
	// longer pending (completed, timed out, unknown token).
	Heartbeat(ctx context.Context, group, hook, token, instanceID string) (active bool, err error)
	// Complete completes the lifecycle action with result (CONTINUE or ABANDON); active is false
	// when the action was no longer pending.
	Complete(ctx context.Context, group, hook, token, instanceID, result string) (active bool, err error)
}

// Jobs counts the jobs running on an instance from its runner's metrics (the scraper of
// infra/scrape behind a small adapter). An error means the metrics did not answer usefully.
type Jobs interface {
	RunningJobs(ctx context.Context, fleet, instanceID string) (int, error)
}

// FollowUps schedules a drain's next step: a DrainStep message on the lifecycle queue, delayed
// by delay (0 ≤ delay ≤ MaxDelay).
type FollowUps interface {
	Schedule(ctx context.Context, step messages.DrainStep, delay time.Duration) error
}

// FollowUpsFunc adapts a function to FollowUps.
type FollowUpsFunc func(ctx context.Context, step messages.DrainStep, delay time.Duration) error

// Schedule calls f.
func (f FollowUpsFunc) Schedule(ctx context.Context, step messages.DrainStep, delay time.Duration) error {
	return f(ctx, step, delay)
}

// MaxDelay is the longest delay SQS gives a single message (DelaySeconds 900).
const MaxDelay = 900 * time.Second

// Clock tells the time; tests give a fake one.
type Clock interface{ Now() time.Time }

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// Figures are one fleet's drain figures as of a Sweep, for CloudWatch (dimension Fleet), where
// the worker stack's alarms (oldest drain past its limit) and dashboard read them.
type Figures struct {
	Fleet string
	At    time.Time
	// InProgress and OldestAge are read from the state table (the same for every replica).
	InProgress int
	OldestAge  time.Duration
	// LeastTimeLeft is the time left before the nearest maximum-drain deadline of the unfinished
	// drains (0 when none is in progress): past it a drain stops heartbeating, and a job still
	// running is killed when the hook times out. It is the fleet's own limit (max_drain, the hook's
	// global timeout, AWS's 48 h), which a fixed age threshold cannot know.
	LeastTimeLeft time.Duration
	// Finished counts the drains this replica finished since its last publish, by outcome;
	// Heartbeats the heartbeats it sent. CloudWatch sums them across replicas.
	Finished   map[string]int
	Heartbeats int
}

// MetricsSink publishes drain figures (an adapter over CloudWatch PutMetricData). A failed
// publish is logged and retried with the next Sweep's figures; it never fails a drain.
type MetricsSink interface {
	PublishDrains(ctx context.Context, f Figures) error
}
