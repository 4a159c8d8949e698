package messages

import (
	"strconv"
	"time"
)

// DrainStep is the follow-up of a drain: a delayed message on the lifecycle queue asking the
// drain handler to take the next step of the drain of one instance, whose state lives in
// DynamoDB keyed by ActionToken. Fleet, InstanceID, ActionToken and GroupName are required;
// Attempt counts follow-ups (≥ 0).
//
// Wire body (Marshal writes it, Parse reads it strictly: unknown fields are refused):
//
//	{"kind":"drain.step","id":"…","issued_at":"2026-11-27T17:00:00Z","fleet":"docker",
//	 "instance_id":"i-1234567890abcdef0","action_token":"87654321-…","group_name":"my-asg",
//	 "attempt":3,"step":"watch"}
type DrainStep struct {
	Fleet       string
	InstanceID  string
	ActionToken string
	GroupName   string
	Attempt     int
	// Step optionally names the step the sender expects next (e.g. "watch", "finish"); a hint
	// for logs only — the state in DynamoDB decides. At most 64 bytes.
	Step string
	// ID identifies this follow-up; Marshal draws one (NewID) when empty. Message.ID is it.
	ID string
	// IssuedAt is when the follow-up was sent (optional); Message.Time is it.
	IssuedAt time.Time
}

type drainStepWire struct {
	Kind        Kind   `json:"kind"`
	ID          string `json:"id,omitempty"`
	IssuedAt    string `json:"issued_at,omitempty"`
	Fleet       string `json:"fleet"`
	InstanceID  string `json:"instance_id"`
	ActionToken string `json:"action_token"`
	GroupName   string `json:"group_name"`
	Attempt     int    `json:"attempt"`
	Step        string `json:"step,omitempty"`
}

// Validate checks the follow-up as Parse will and returns an *InvalidError listing every problem,
// or nil.
func (s DrainStep) Validate() error {
	var p problemList
	p.text("fleet", s.Fleet, true, 128)
	p.text("instance_id", s.InstanceID, true, 64)
	p.text("action_token", s.ActionToken, true, 256)
	p.text("group_name", s.GroupName, true, 1600)
	p.text("step", s.Step, false, 64)
	p.text("id", s.ID, false, 128)
	if s.Attempt < 0 {
		p.add("field \"attempt\": %d is negative", s.Attempt)
	}
	p.noTokens("messages", fieldValue{"fleet", s.Fleet}, fieldValue{"instance_id", s.InstanceID},
		fieldValue{"action_token", s.ActionToken}, fieldValue{"group_name", s.GroupName}, fieldValue{"step", s.Step},
		fieldValue{"id", s.ID})
	return p.err()
}

// Marshal validates the follow-up and returns its wire body ("kind":"drain.step"), with a fresh
// ID when s.ID is empty.
func (s DrainStep) Marshal() ([]byte, error) {
	s.ID = orNewID(s.ID)
	return marshalFollowUp("drain step", s)
}

func parseDrainStep(body []byte) (*Message, error) {
	return parseFollowUp("drain step", body, &drainStepWire{})
}

func (s DrainStep) wire() any {
	return drainStepWire{
		Kind: KindDrainStep, ID: s.ID, IssuedAt: wireTime(s.IssuedAt), Fleet: s.Fleet, InstanceID: s.InstanceID,
		ActionToken: s.ActionToken, GroupName: s.GroupName, Attempt: s.Attempt, Step: s.Step,
	}
}

// message names a follow-up without id by its instance and attempt.
func (s DrainStep) message() *Message {
	id := s.ID
	if id == "" {
		id = "drain.step/" + s.InstanceID + "/" + strconv.Itoa(s.Attempt)
	}
	return &Message{Kind: KindDrainStep, ID: id, Time: s.IssuedAt, Payload: &s}
}

func (w *drainStepWire) issuedAt() string { return w.IssuedAt }

func (w *drainStepWire) followUp(issuedAt time.Time) followUp {
	return DrainStep{
		Fleet: w.Fleet, InstanceID: w.InstanceID, ActionToken: w.ActionToken, GroupName: w.GroupName,
		Attempt: w.Attempt, Step: w.Step, ID: w.ID, IssuedAt: issuedAt,
	}
}
