package messages

import "time"

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
	p.noTokens("messages", fieldValue{"fleet", s.Fleet}, fieldValue{"id", s.ID})
	return p.err()
}

// Marshal validates the follow-up and returns its wire body ("kind":"fleet.step"), with a fresh ID
// when s.ID is empty.
func (s FleetStep) Marshal() ([]byte, error) {
	s.ID = orNewID(s.ID)
	return marshalFollowUp("fleet step", s)
}

func parseFleetStep(body []byte) (*Message, error) {
	return parseFollowUp("fleet step", body, &fleetStepWire{})
}

func (s FleetStep) wire() any {
	return fleetStepWire{Kind: KindFleetStep, ID: s.ID, IssuedAt: wireTime(s.IssuedAt), Fleet: s.Fleet, Work: s.Work, Attempt: s.Attempt}
}

// message names a follow-up without id by its fleet.
func (s FleetStep) message() *Message {
	id := s.ID
	if id == "" {
		id = "fleet.step/" + s.Fleet
	}
	return &Message{Kind: KindFleetStep, ID: id, Time: s.IssuedAt, Payload: &s}
}

func (w *fleetStepWire) issuedAt() string { return w.IssuedAt }

func (w *fleetStepWire) followUp(issuedAt time.Time) followUp {
	return FleetStep{Fleet: w.Fleet, Work: w.Work, Attempt: w.Attempt, ID: w.ID, IssuedAt: issuedAt}
}
