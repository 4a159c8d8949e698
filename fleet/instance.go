package fleet

import (
	"strings"
	"time"
)

// LifecycleState is an Auto Scaling instance lifecycle state as the ASG API spells it
// ("Pending", "Pending:Wait", "InService", "Terminating:Wait", "Standby", ...).
type LifecycleState string

// The lifecycle states the scaling policy distinguishes; any other value is treated by its prefix
// (see Booting, InService and Leaving).
const (
	StatePending            LifecycleState = "Pending"
	StatePendingWait        LifecycleState = "Pending:Wait"
	StatePendingProceed     LifecycleState = "Pending:Proceed"
	StateInService          LifecycleState = "InService"
	StateTerminating        LifecycleState = "Terminating"
	StateTerminatingWait    LifecycleState = "Terminating:Wait"
	StateTerminatingProceed LifecycleState = "Terminating:Proceed"
	StateTerminated         LifecycleState = "Terminated"
	StateDetaching          LifecycleState = "Detaching"
	StateDetached           LifecycleState = "Detached"
	StateEnteringStandby    LifecycleState = "EnteringStandby"
	StateStandby            LifecycleState = "Standby"
)

// Booting reports whether the instance is on its way into service (Pending*): it counts as
// capacity that is coming, and reports no metrics yet.
func (s LifecycleState) Booting() bool { return strings.HasPrefix(string(s), "Pending") }

// InService reports whether the instance is in service: it is scraped and may take jobs.
func (s LifecycleState) InService() bool { return s == StateInService }

// Terminating reports whether the group is terminating the instance (Terminating,
// Terminating:Wait, Terminating:Proceed, Terminated).
func (s LifecycleState) Terminating() bool {
	return strings.HasPrefix(string(s), "Terminat")
}

// Leaving reports whether the instance is terminating, detaching, in standby or warmed: it is
// not part of the group's serving capacity and no scaling decision counts or touches it.
func (s LifecycleState) Leaving() bool { return !s.Booting() && !s.InService() }

// Instance is the scaling policy's view of one instance of a fleet: what the Auto Scaling group
// says about it plus what a scrape of its runner's metrics returned. handlers/scale builds it from
// DescribeAutoScalingGroups and infra/scrape; the simulator builds it from simulated runners.
// Fields from the scrape are meaningful only for an InService instance that is not Unknown.
type Instance struct {
	// ID is the EC2 instance ID.
	ID string `json:"id"`
	// State is the ASG lifecycle state.
	State LifecycleState `json:"state"`
	// LaunchedAt is when the instance was launched (EC2 LaunchTime).
	LaunchedAt time.Time `json:"launched_at"`
	// LaunchTemplateID is the launch template the instance was launched from (its id, as Auto
	// Scaling reports it; "" for an instance launched from a launch configuration), and
	// LaunchTemplateVersion that template's version. A version number alone does not name what an
	// instance runs: a replaced launch template starts again at version 1.
	LaunchTemplateID      string `json:"launch_template_id,omitempty"`
	LaunchTemplateVersion string `json:"launch_template_version,omitempty"`
	// Protected reports scale-in protection as the ASG has it now.
	Protected bool `json:"protected"`
	// IntakeStopped reports that the runner was told to take no new jobs (a drain began): it
	// offers no capacity, whatever its metrics say.
	IntakeStopped bool `json:"intake_stopped,omitempty"`

	// Unknown reports that the scrape failed (timeout, error status, garbled or oversized body):
	// nothing below is known, and it is never read as zero.
	Unknown bool `json:"unknown,omitempty"`
	// UnknownReason says why the scrape failed, in words (no secrets).
	UnknownReason string `json:"unknown_reason,omitempty"`
	// Healthy reports that the runner's job requests succeed (request_job statuses); an unhealthy
	// runner (e.g. a revoked token) offers no capacity.
	Healthy bool `json:"healthy"`
	// Capacity is the number of job slots the runner offers: gitlab_runner_concurrent bounded by
	// the per-runner limits.
	Capacity int `json:"capacity"`
	// RunningJobs is the number of jobs running on the instance.
	RunningJobs int `json:"running_jobs"`
	// QueueSize is the number of pending jobs the runner saw at its last job pickup
	// (gitlab_runner_job_queue_size).
	QueueSize int `json:"queue_size"`
	// QueueDepth is how deep in the queue the runner searched at its last pickup
	// (gitlab_runner_job_queue_depth).
	QueueDepth int `json:"queue_depth"`
	// QueueAge is how long ago, at the time of the scrape, QueueSize and QueueDepth were updated:
	// runners update them only when they pick up a job.
	QueueAge time.Duration `json:"queue_age"`
	// QueueStale reports that the queue signals are absent or known to be out of date; the policy
	// then ignores QueueSize and QueueDepth.
	QueueStale bool `json:"queue_stale"`
	// QueuingExceededRate is the per-second rate of jobs that waited longer than the runner's
	// acceptable queuing duration (gitlab_runner_acceptable_job_queuing_duration_exceeded_total).
	QueuingExceededRate float64 `json:"queuing_exceeded_rate"`

	// SpotInterrupted marks an instance with a spot interruption notice: it is going away.
	SpotInterrupted bool `json:"spot_interrupted,omitempty"`
	// RebalanceRecommended marks an instance with an EC2 rebalance recommendation.
	RebalanceRecommended bool `json:"rebalance_recommended,omitempty"`
}

// Serving reports whether the instance offers job slots now: in service, scraped, healthy, intake
// open and not about to be reclaimed.
func (i Instance) Serving() bool {
	return i.State.InService() && !i.Unknown && i.Healthy && !i.IntakeStopped && !i.SpotInterrupted
}

// Idle reports whether the instance is known to run no job (in service and scraped).
func (i Instance) Idle() bool {
	return i.State.InService() && !i.Unknown && i.RunningJobs == 0
}

// Busy reports whether the instance is known to run at least one job.
func (i Instance) Busy() bool {
	return i.State.InService() && !i.Unknown && i.RunningJobs > 0
}
