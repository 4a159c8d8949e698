package messages

import (
	"encoding/json"
	"fmt"
	"time"
)

// Fleet-level work a FleetStep may name.
const (
	FleetWorkCycle  = "cycle"
	FleetWorkUpdate = "update"
)

// FleetStep is the follow-up of fleet-level work (a cycle or an update): a message on the FIFO
// control queue (MessageGroupId = Fleet) asking the fleet's handlers to advance the work in
// progress by one step now rather than at the next tick — after a command recorded its intent, or
// when a handler knows the next step is due. FIFO queues cannot delay single messages, so ticks
// stay the clock; a FleetStep only nudges. Fleet is required; Work ("cycle", "update", or empty
// for whatever is in progress) and Attempt (≥ 0) are optional; the state in DynamoDB decides.
//
// Wire body (Marshal writes it, Parse reads it strictly):
//
//	{"kind":"fleet.step","id":"…","issued_at":"2026-11-27T17:00:00Z","fleet":"docker","work":"cycle","attempt":2}
type FleetStep struct {
	Fleet   string
	Work    string
	Attempt int
	// ID identifies this follow-up; Marshal draws one (NewID) when empty. Use it as the FIFO
	// deduplication id. Message.ID is it.
	ID string
	// IssuedAt is when the follow-up was sent (optional); Message.Time is it.
	IssuedAt time.Time
}

type fleetStepWire struct {
	Kind     Kind   `json:"kind"`
	ID       string `json:"id,omitempty"`
	IssuedAt string `json:"issued_at,omitempty"`
	Fleet    string `json:"fleet"`
	Work     string `json:"work,omitempty"`
	Attempt  int    `json:"attempt,omitempty"`
}

// Validate checks the follow-up as Parse will and returns an *InvalidError listing every problem,
// or nil.
func (s FleetStep) Validate() error {
	var p problemList
	p.text("fleet", s.Fleet, true, 128)
	p.text("id", s.ID, false, 128)
	switch s.Work {
	case "", FleetWorkCycle, FleetWorkUpdate:
	default:
		p.add("field \"work\": unknown work %s (want %q or %q)", quote(s.Work), FleetWorkCycle, FleetWorkUpdate)
	}
	if s.Attempt < 0 {
		p.add("field \"attempt\": %d is negative", s.Attempt)
	}
	for _, f := range []struct{ field, v string }{{"fleet", s.Fleet}, {"id", s.ID}} {
		if prefix := tokenPrefixIn(f.v); prefix != "" {
			p.add("field %q looks like a GitLab token (contains %q); tokens never travel in messages", f.field, prefix)
		}
	}
	return p.err()
}

// Marshal validates the follow-up and returns its wire body ("kind":"fleet.step"), with a fresh ID
// when s.ID is empty.
func (s FleetStep) Marshal() ([]byte, error) {
	if s.ID == "" {
		s.ID = NewID()
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	w := fleetStepWire{Kind: KindFleetStep, ID: s.ID, Fleet: s.Fleet, Work: s.Work, Attempt: s.Attempt}
	if !s.IssuedAt.IsZero() {
		w.IssuedAt = s.IssuedAt.UTC().Format(time.RFC3339Nano)
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encoding fleet step: %w", err)
	}
	return b, nil
}

func parseFleetStep(body []byte) (*Message, error) {
	if len(body) > MaxCommandSize {
		return nil, invalidf("fleet step of %d bytes exceeds %d bytes (64 KiB)", len(body), MaxCommandSize)
	}
	var w fleetStepWire
	if err := decodeStrict(body, &w); err != nil {
		return nil, err
	}
	s := FleetStep{Fleet: w.Fleet, Work: w.Work, Attempt: w.Attempt, ID: w.ID}
	var p problemList
	if w.IssuedAt != "" {
		t, err := time.Parse(time.RFC3339Nano, w.IssuedAt)
		if err != nil {
			p.add("field \"issued_at\": %s is not an RFC 3339 time", quote(w.IssuedAt))
		} else {
			s.IssuedAt = t
		}
	}
	if err := s.Validate(); err != nil {
		p = append(p, err.(*InvalidError).Reason)
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	id := s.ID
	if id == "" {
		id = "fleet.step/" + s.Fleet
	}
	return &Message{Kind: KindFleetStep, ID: id, Time: s.IssuedAt, Payload: &s}, nil
}
