package drain

import (
	"encoding/json"
	"time"

	"github.com/runnerfleet/runnerfleet/messages"
)

// Table keys of a drain record (see the package doc).
const (
	keyPrefix = "drain#"
	sortKey   = "drain"
)

func partitionKey(token string) string { return keyPrefix + token }

// phase is where a drain stands; each names the step that runs next.
type phase string

const (
	phaseStopIntake     phase = "stop-intake"
	phaseStopIntakeWait phase = "stop-intake-wait"
	phaseWatch          phase = "watch"
	phaseStatus         phase = "status"
	phaseStatusWait     phase = "status-wait"
	phaseUnregister     phase = "unregister"
	phaseUnregisterWait phase = "unregister-wait"
	phaseComplete       phase = "complete"
	phaseDone           phase = "done"
)

// Outcomes of a finished drain (the label of drains_finished_total).
const (
	// OutcomeCompleted: jobs ended, runner unregistered, action completed.
	OutcomeCompleted = "completed"
	// OutcomeInstanceGone: the group no longer knew the instance; completed at once.
	OutcomeInstanceGone = "instance-gone"
	// OutcomeNotManaged: SSM does not manage the instance; completed at once.
	OutcomeNotManaged = "not-managed"
	// OutcomeStopFailed: the stop-intake command kept failing; completed once the metrics
	// showed no job running.
	OutcomeStopFailed = "stop-failed"
	// OutcomeUnregisterFailed: jobs ended but the unregister command kept failing; completed.
	OutcomeUnregisterFailed = "unregister-failed"
	// OutcomeActionGone: the lifecycle action ended without us (hook timeout, someone else).
	OutcomeActionGone = "action-gone"
	// OutcomeMaxDrain: the maximum drain passed with jobs still running; left to the hook's
	// timeout, never completed by us.
	OutcomeMaxDrain = "max-drain"
)

// record is a drain as stored in the state table (JSON body). Only this package reads it.
type record struct {
	Schema     int    `json:"schema"`
	Token      string `json:"token"`
	Fleet      string `json:"fleet"`
	Group      string `json:"group"`
	Hook       string `json:"hook"`
	InstanceID string `json:"instance_id"`

	Phase     phase     `json:"phase"`
	StartedAt time.Time `json:"started_at"`
	// Deadline is StartedAt + the maximum drain.
	Deadline time.Time `json:"deadline"`
	Due      time.Time `json:"due"`

	HeartbeatEvery time.Duration `json:"heartbeat_every"`
	LastHeartbeat  time.Time     `json:"last_heartbeat"`
	Heartbeats     int           `json:"heartbeats"`

	// Command is the SSM command in flight (stop-intake, status or unregister).
	Command *command `json:"command,omitempty"`
	// Unsure is a Send that failed after SSM may have taken the command (a timeout, a lost
	// answer): the next attempt of that document first looks for it (Commands.Find) and adopts
	// it, so an instance never gets a document twice for one lost answer.
	Unsure *unsure `json:"unsure,omitempty"`
	// Failures counts consecutive failures of the current phase's command.
	Failures int `json:"failures,omitempty"`
	// CallFailures counts consecutive failed AWS calls of the current phase (backoff).
	CallFailures int `json:"call_failures,omitempty"`
	// StopFailed: stop intake gave up after its retries; the drain watches metrics only.
	StopFailed bool `json:"stop_failed,omitempty"`
	// UnregisterFailed: unregister gave up after its retries.
	UnregisterFailed bool `json:"unregister_failed,omitempty"`
	// Jobs is the last running-job count seen; -1 while unknown.
	Jobs int `json:"jobs"`

	Lease *lease `json:"lease,omitempty"`
	Steps int    `json:"steps"`
	// CompletingSince is set by the leased write of the complete phase (leasedBody): a step that
	// then finds the action no longer pending knows an earlier attempt may have completed it and
	// lost its own write, and reports the drain completed, not "action-gone". Advisory only: an
	// older worker that drops it misreports the outcome and nothing else, so the schema stays.
	CompletingSince time.Time `json:"completing_since,omitzero"`

	Outcome    string    `json:"outcome,omitempty"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Note is the last thing that went wrong, for people reading the table.
	Note string `json:"note,omitempty"`
}

type unsure struct {
	Document string    `json:"document"` // the role: stop-intake, status or unregister
	At       time.Time `json:"at"`       // when the failed Send began
}

type command struct {
	Document string    `json:"document"`
	ID       string    `json:"id"`
	SentAt   time.Time `json:"sent_at"`
}

// leased reports whether a step of this phase must hold the drain's lease: it makes a call
// that changes something outside the table (SendCommand, CompleteLifecycleAction), which a
// second replica taking the same step would repeat. The other phases only read — a command's
// status, the runner's metrics — besides the heartbeat any phase may send, which a replica can
// repeat harmlessly; they run without a lease, and the write of their result, conditioned on
// the version read, keeps exactly one of two racing replicas' results. One write per polling
// step instead of two: most of a long drain's steps are polls.
func (p phase) leased() bool {
	switch p {
	case phaseStopIntake, phaseStatus, phaseUnregister, phaseComplete:
		return true
	}
	return false
}

// sends names the document role a phase sends ("" for phases that send none).
func (p phase) sends() string {
	switch p {
	case phaseStopIntake:
		return roleStopIntake
	case phaseStatus:
		return roleStatus
	case phaseUnregister:
		return roleUnregister
	}
	return ""
}

// leasedBody encodes rec as written with a lease: when its phase sends a document, the stored
// record is marked unsure of that document from now. If the step's own write never lands (the
// worker dies, the save fails) after the command went out, whoever takes the step next looks
// for the command (adopt) instead of sending it again. The step's own write clears the mark; the
// replica holding the lease does not look (rec, in memory, is unchanged). A complete phase gets
// CompletingSince, which lease also keeps in memory (see actionGone).
func leasedBody(rec record, now time.Time) ([]byte, error) {
	// Not the status document: its answer is only worth having fresh (commandFailed), and one
	// adopted minutes later would read jobs from the past.
	if role := rec.Phase.sends(); role != "" && role != roleStatus && rec.Unsure == nil {
		rec.Unsure = &unsure{Document: role, At: now}
	}
	if rec.Phase == phaseComplete && rec.CompletingSince.IsZero() {
		rec.CompletingSince = now
	}
	return json.Marshal(rec)
}

// lease marks a step in progress: until Until, only Owner may advance the record.
type lease struct {
	Owner string    `json:"owner"`
	Until time.Time `json:"until"`
}

// recordSchema is the layout of the record this code writes. Raise it with any change an older
// worker would misread or lose on saving (a new field that matters, a changed meaning); a worker
// leaves records of a newer schema to newer replicas (Handler.passOn).
const recordSchema = 1

// tokenHash is what logs and metrics carry instead of the lifecycle action token.
func tokenHash(token string) string { return messages.TokenHash(token) }
