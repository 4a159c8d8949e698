package update

import (
	"encoding/json"
	"fmt"
	"time"
)

// Phases of an update.
const (
	// PhaseChangeSet: the change set is being created (or its creation is awaited).
	PhaseChangeSet = "change_set"
	// PhaseExecuting: the change set executes; the stack is followed until a final status.
	PhaseExecuting = "executing"
	// PhaseDone: finished; Outcome says how.
	PhaseDone = "done"
)

// Outcomes of a finished update.
const (
	// OutcomeSucceeded: the stack reached CREATE_COMPLETE or UPDATE_COMPLETE.
	OutcomeSucceeded = "succeeded"
	// OutcomeNoChanges: the template and parameters change nothing (a clean success).
	OutcomeNoChanges = "no_changes"
	// OutcomePlanned: a plan (--plan): the change set was created and reported, not executed.
	OutcomePlanned = "planned"
	// OutcomeFailed: the change set failed, or the stack ended failed or rolled back.
	OutcomeFailed = "failed"
)

// SortKey is the sort key of a fleet's update record in the state table.
const SortKey = "update"

// Key returns the state table key of fleet's update record: pk "fleet#<name>", sk "update".
func Key(fleet string) (pk, sk string) { return "fleet#" + fleet, SortKey }

// Record is a fleet's update, as kept in the state table (the latest one; a new update replaces a
// finished one). The publisher reads it to show a plan and the outcome.
type Record struct {
	CommandID string `json:"command_id"`
	// Issuer is who the command claims sent it (the router audits the SQS SenderId).
	Issuer string `json:"issuer,omitempty"`
	Fleet  string `json:"fleet"`
	Stack  string `json:"stack"`
	// Type is CREATE or UPDATE.
	Type string `json:"type"`
	Plan bool   `json:"plan,omitempty"`
	// Set lists the parameters the command set; Previous those that kept their previous value.
	Set      []string `json:"set,omitempty"`
	Previous []string `json:"previous,omitempty"`

	ChangeSetName string   `json:"change_set_name"`
	ChangeSetID   string   `json:"change_set_id,omitempty"`
	Phase         string   `json:"phase"`
	Changes       []Change `json:"changes,omitempty"`
	StackStatus   string   `json:"stack_status,omitempty"`

	Outcome string `json:"outcome,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// FailedResource is the logical id of the first resource that failed.
	FailedResource string `json:"failed_resource,omitempty"`

	StartedAt  time.Time `json:"started_at"`
	ExecutedAt time.Time `json:"executed_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Steps counts the steps taken (command, ticks, stack events).
	Steps int `json:"steps"`
}

// Finished reports whether the update reached an outcome.
func (r Record) Finished() bool { return r.Phase == PhaseDone }

// DecodeRecord reads a record body written by the handler.
func DecodeRecord(body []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(body, &r); err != nil {
		return Record{}, fmt.Errorf("decoding update record: %w", err)
	}
	return r, nil
}

func encode(r Record) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encoding update record: %w", err)
	}
	return b, nil
}
