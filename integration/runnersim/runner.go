package runnersim

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Process states of a simulated gitlab-runner.
const (
	// ProcessRunning: the service runs and takes jobs.
	ProcessRunning = "running"
	// ProcessStopping: SIGQUIT received; running jobs finish, no new job starts.
	ProcessStopping = "stopping"
	// ProcessExited: the process ended after its last job (its metrics no longer answer).
	ProcessExited = "exited"
	// ProcessTerminated: the instance was terminated (DELETE /instances/{id}).
	ProcessTerminated = "terminated"
)

// Fault modes of POST /instances/{id}/fault.
const (
	FaultNone        = "none"
	FaultHang        = "hang"         // metrics requests never answer
	Fault500         = "500"          // metrics answer 500
	FaultGarbage     = "garbage"      // metrics answer 200 with a body that is not the text format
	FaultHuge        = "huge"         // metrics answer a body of Config.HugeBodyBytes
	FaultSlow        = "slow"         // metrics answer a few bytes at a time
	FaultRejectToken = "reject-token" // GitLab rejects the runner token: job requests get 403
	// FaultHangActions makes the drain actions (the SSM documents' shell) never answer, so SSM
	// commands time out; metrics stay normal. An extension beyond the contract's modes.
	FaultHangActions = "hang-actions"
)

var faultModes = map[string]bool{
	FaultNone: true, FaultHang: true, Fault500: true, FaultGarbage: true,
	FaultHuge: true, FaultSlow: true, FaultRejectToken: true, FaultHangActions: true,
}

// Drain actions of POST /instances/{id}/actions/{action}.
const (
	ActionStopIntake = "stop-intake"
	ActionStatus     = "status"
	ActionUnregister = "unregister"
)

// Job states in State.Jobs.
const (
	JobScheduled = "scheduled" // not arrived yet (Job.ArriveAfterMS)
	JobQueued    = "queued"
	JobRunning   = "running"
	JobFinished  = "finished"
	JobKilled    = "killed"
)

// Registration is the body of POST /instances, sent by the emulator on each EC2 launch.
type Registration struct {
	InstanceID string `json:"instance_id"`
	Group      string `json:"group"`
	PrivateIP  string `json:"private_ip"`
	// LaunchTemplateVersion may arrive as a JSON string or number.
	LaunchTemplateVersion flexString `json:"launch_template_version"`
	// Concurrent overrides Config.Concurrent for this instance when positive.
	Concurrent int `json:"concurrent,omitempty"`
}

// Job is one entry of POST /jobs.
type Job struct {
	// ID names the job; empty gets a generated one.
	ID string `json:"id"`
	// DurationMS is how long the job runs once a runner picks it up.
	DurationMS int64 `json:"duration_ms"`
	// ArriveAfterMS delays the job's arrival in the queue (a trace fed at once); 0: now.
	ArriveAfterMS int64 `json:"arrive_after_ms,omitempty"`
}

// ActionResult is the answer of a drain action: what the SSM document's shell would have
// produced. A non-zero ExitCode fails the SSM command.
type ActionResult struct {
	ExitCode int    `json:"exit_code"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
}

// StatusReport is the stdout (JSON) of the status action: what the status document reports.
type StatusReport struct {
	InstanceID string `json:"instance_id"`
	// Process is running, stopping (SIGQUIT received, jobs finishing) or exited.
	Process string `json:"process"`
	// IntakeOpen tells whether the runner still takes new jobs.
	IntakeOpen bool `json:"intake_open"`
	// RunningJobs counts the jobs still running.
	RunningJobs int `json:"running_jobs"`
	// JobIDs lists them, oldest first.
	JobIDs []string `json:"job_ids"`
	// Unregistered tells whether the runner was unregistered from GitLab.
	Unregistered bool `json:"unregistered"`
}

// flexString accepts a JSON string or number.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*f = flexString(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("launch_template_version: want a string or a number, got %s", b)
	}
	*f = flexString(n.String())
	return nil
}

// instance is one simulated gitlab-runner. All fields are guarded by Sim.mu.
type instance struct {
	reg        Registration
	concurrent int
	// Identity as gitlab-runner labels its metrics (no token is held: the label is derived).
	runner, runnerName, systemID string

	process      string
	intakeOpen   bool
	fault        string
	unregistered bool

	running  map[string]*runningJob
	started  int
	finished int
	killed   int

	// Metric state.
	requestStatuses map[int]float64
	pickedUp        bool // queue gauges exist only once a job was picked up, as in gitlab-runner
	queueSize       float64
	queueDepth      float64
	queuingExceeded float64

	stop chan struct{} // closed when the poll loop must end
}

type runningJob struct {
	id        string
	startedAt time.Time
	timer     *time.Timer
}

type queuedJob struct {
	id       string
	duration time.Duration
	queuedAt time.Time
}

func newInstance(reg Registration, concurrent int) *instance {
	if reg.Concurrent > 0 {
		concurrent = reg.Concurrent
	}
	sum := sha256.Sum256([]byte(reg.InstanceID))
	h := hex.EncodeToString(sum[:])
	return &instance{
		reg:        reg,
		concurrent: concurrent,
		// gitlab-runner labels `runner` with the token's short form; the simulator has no token,
		// so a stable hash of the instance stands in for it.
		runner:          h[:8],
		runnerName:      reg.InstanceID,
		systemID:        "s_" + h[8:20],
		process:         ProcessRunning,
		intakeOpen:      true,
		fault:           FaultNone,
		running:         map[string]*runningJob{},
		requestStatuses: map[int]float64{},
		stop:            make(chan struct{}),
	}
}

func (in *instance) runningIDs() []string {
	jobs := make([]*runningJob, 0, len(in.running))
	for _, j := range in.running {
		jobs = append(jobs, j)
	}
	sort.Slice(jobs, func(a, b int) bool {
		if jobs[a].startedAt.Equal(jobs[b].startedAt) {
			return jobs[a].id < jobs[b].id
		}
		return jobs[a].startedAt.Before(jobs[b].startedAt)
	})
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.id
	}
	return ids
}

func (in *instance) alive() bool {
	return in.process == ProcessRunning || in.process == ProcessStopping
}

// statusReport is what the status action prints.
func (in *instance) statusReport() StatusReport {
	return StatusReport{
		InstanceID:   in.reg.InstanceID,
		Process:      in.process,
		IntakeOpen:   in.intakeOpen,
		RunningJobs:  len(in.running),
		JobIDs:       in.runningIDs(),
		Unregistered: in.unregistered,
	}
}

// errNotFound is returned for unknown instances.
var errNotFound = errors.New("no such instance")

// validAction reports whether name is one of the drain actions.
func validAction(name string) bool {
	switch strings.TrimSpace(name) {
	case ActionStopIntake, ActionStatus, ActionUnregister:
		return true
	}
	return false
}
