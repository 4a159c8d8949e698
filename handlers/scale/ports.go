package scale

import (
	"context"
	"errors"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/scaling"
)

// ErrGroupNotFound is wrapped by Group.Describe's error when the group does not exist: the tick
// is dead-lettered rather than retried.
var ErrGroupNotFound = errors.New("auto scaling group not found")

// Group is the fleet's Auto Scaling group, as the handler uses it. infra/aws/asg implements it.
type Group interface {
	// Describe returns the group's capacity settings and its instances (with private IPs).
	// A group that does not exist is an error wrapping ErrGroupNotFound.
	Describe(ctx context.Context, groupName string) (GroupState, error)
	// SetDesiredCapacity raises or lowers the desired capacity at once (HonorCooldown false).
	SetDesiredCapacity(ctx context.Context, groupName string, desired int) error
	// SetProtection sets or clears scale-in protection of the instances (all of the group).
	SetProtection(ctx context.Context, groupName string, instanceIDs []string, protected bool) error
	// TerminateInstance terminates one instance through the group, decrementing the desired
	// capacity, so the group's terminate lifecycle hook (the drain) still runs.
	TerminateInstance(ctx context.Context, instanceID string) error
	// ReplaceInstance terminates one instance through the group without decrementing the desired
	// capacity: the group launches another, and its terminate hook (the drain) still runs first.
	ReplaceInstance(ctx context.Context, instanceID string) error
}

// GroupState is what Describe returns.
type GroupState struct {
	Name              string
	Desired, Min, Max int
	Members           []Member
}

// Member is one instance of the group: the policy's view (the ASG fields of fleet.Instance) and
// the address its runner's metrics are read from.
type Member struct {
	Instance  fleet.Instance
	PrivateIP string
}

// Target is one runner to scrape: the fields a fleet's metrics URL template may use.
type Target struct {
	InstanceID string
	PrivateIP  string
}

// Scraper reads runner metrics. infra/scrape implements it.
type Scraper interface {
	// ScrapeRunners returns one fleet.Instance per target, in the targets' order, with ID and the
	// scrape fields set (Unknown and UnknownReason, Healthy, Capacity, RunningJobs, the queue
	// signals); the ASG fields are left zero. A failed target is Unknown, never idle. The error is
	// for a bad URL template only.
	ScrapeRunners(ctx context.Context, urlTemplate string, targets []Target) ([]fleet.Instance, error)
}

// Hold tells whether a fleet-level operation in progress owns a fleet's desired capacity (a
// cycle surges on purpose and its replacements start idle). handlers/cycle's
// (*Handler).Holding implements it.
type Hold interface {
	// Holding says in words why an operation holds the fleet's capacity now (for the held
	// decision's reason), "" when none does. An error means it could not tell; the tick then
	// holds too.
	Holding(ctx context.Context, fleet string) (string, error)
}

// FleetMetrics is one tick's figures of a fleet, published to CloudWatch (dimension Fleet) and
// served on /metrics.
type FleetMetrics struct {
	Fleet string
	At    time.Time
	// ActiveJobs counts jobs occupying slots on scraped in-service instances.
	ActiveJobs int
	// Capacity is the job slots offered or coming (booting and unknown instances count as one
	// typical instance each).
	Capacity int
	// DesiredCapacity is the group's desired capacity after the decision.
	DesiredCapacity int
	// InServiceInstances counts InService instances.
	InServiceInstances int
	// UnknownInstances counts InService instances whose scrape failed.
	UnknownInstances int
	// QueuedJobs is the freshest queue signal; -1 when no fresh one exists (not published then).
	QueuedJobs int
}

// MetricsSink publishes a fleet's figures. infra/aws/cwmetrics implements it. A failed publish is
// logged and counted; it never blocks or fails a decision.
type MetricsSink interface {
	Publish(ctx context.Context, m FleetMetrics) error
}

// Record is what the handler keeps per fleet between ticks (and across restarts and replicas).
type Record struct {
	// Scaling is the policy's state: stabilization window start, idle-since marks.
	Scaling scaling.State `json:"scaling"`
	// Pin, when set, is an operator's fixed desired capacity.
	Pin *Pin `json:"pin,omitempty"`
	// LastMessageID is the ID of the last tick or command decided; a redelivered message with the
	// same ID is acked without a second decision.
	LastMessageID string `json:"last_message_id,omitempty"`
	// LastDecision is when the last decision was taken, and LastReason its reason.
	LastDecision time.Time `json:"last_decision,omitzero"`
	LastReason   string    `json:"last_reason,omitempty"`
	// LastDesired is the desired capacity the last decision set (or, held or steady, kept), and
	// LastAction what it did (scale_out, scale_in, steady or held, as decisions_total counts it):
	// publisher scale --wait compares the group with them. LastDesired is nil in records written
	// before it was kept.
	LastDesired *int   `json:"last_desired,omitempty"`
	LastAction  string `json:"last_action,omitempty"`
	// LastApplyErrors are the Auto Scaling calls of the last decision that failed ("op: error"),
	// written after the decision was applied (best effort: a later tick's write wins); publisher
	// scale --wait reports them instead of waiting for a group that will not move.
	LastApplyErrors []string `json:"last_apply_errors,omitempty"`
}

// Pin is an operator's fixed desired capacity (publisher scale --desired N [--for D]).
type Pin struct {
	Desired int `json:"desired"`
	// Until ends the pin; zero pins until resumed.
	Until time.Time `json:"until,omitzero"`
	// CommandID and Issuer name the command that set it.
	CommandID string `json:"command_id,omitempty"`
	Issuer    string `json:"issuer,omitempty"`
}

// ActiveAt reports whether the pin is in force at now.
func (p *Pin) ActiveAt(now time.Time) bool {
	return p != nil && (p.Until.IsZero() || now.Before(p.Until))
}

// StateStore keeps each fleet's Record with optimistic concurrency. infra/aws/scalestate
// implements it over the DynamoDB state table.
type StateStore interface {
	// Load returns the fleet's record and its version; a fleet never seen returns the zero Record
	// and version 0.
	Load(ctx context.Context, fleetName string) (Record, int64, error)
	// Save writes rec if the stored version is still version (0: not yet stored). It returns
	// false, nil when another writer got there first.
	Save(ctx context.Context, fleetName string, rec Record, version int64) (bool, error)
}
