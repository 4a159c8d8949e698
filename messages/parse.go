package messages

import (
	"bytes"
	"encoding/json"
	"time"
)

// probe reads what every body may carry at its top level: the envelope of an EventBridge event,
// or the "kind" of a RunnerFleet message. Events are read leniently (AWS adds envelope fields).
type probe struct {
	Kind       string          `json:"kind"`
	Version    string          `json:"version"`
	ID         string          `json:"id"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Account    string          `json:"account"`
	Time       string          `json:"time"`
	Region     string          `json:"region"`
	Resources  []string        `json:"resources"`
	Detail     json.RawMessage `json:"detail"`
}

// Parse reads one queue body and returns it typed.
//
//   - An EventBridge event (a body with "detail-type" and "source") of a registered kind gives
//     Message{Kind, ID: event id, Time: event time, Event, Payload: *Detail struct}.
//   - A well-formed event of a kind with no parser gives Message{Kind: KindUnknown, Event} and
//     ErrUnknownKind: ack it and count Event.Source and Event.DetailType.
//   - A body with "kind":"command" gives a *Command, "kind":"drain.step" a *DrainStep.
//   - Anything else — not JSON, not an object, a missing or mistyped field, an unknown command
//     field or type, an event over MaxEventSize or a command over MaxCommandSize, a runner
//     token in a command — gives a nil Message and an *InvalidError naming the problem.
//
// Parse never panics and keeps no reference to body.
func Parse(body []byte) (*Message, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, invalidf("empty body")
	}
	if len(body) > MaxEventSize {
		return nil, invalidf("body of %d bytes exceeds %d bytes (256 KiB, EventBridge's event size limit)", len(body), MaxEventSize)
	}
	var p probe
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, &InvalidError{Reason: jsonReason("", err)}
	}
	switch {
	case p.Kind != "":
		switch Kind(p.Kind) {
		case KindCommand:
			return parseCommand(body)
		case KindDrainStep:
			return parseDrainStep(body)
		default:
			return nil, invalidf("field \"kind\": unknown kind %s (want %q or %q)", quote(p.Kind), KindCommand, KindDrainStep)
		}
	case p.DetailType != "" || p.Source != "":
		return parseEvent(&p)
	default:
		return nil, invalidf("neither an EventBridge event (no \"detail-type\" and \"source\") nor a RunnerFleet message (no \"kind\")")
	}
}

// parseEvent checks the envelope and hands the detail to the parser registered for its
// (source, detail-type).
func parseEvent(p *probe) (*Message, error) {
	env, err := envelopeOf(p)
	if err != nil {
		return nil, err
	}
	ep, ok := eventIndex[eventKey{p.Source, p.DetailType}]
	if !ok {
		return &Message{Kind: KindUnknown, ID: env.ID, Time: env.Time, Event: env}, ErrUnknownKind
	}
	payload, err := ep.parse(env)
	if err != nil {
		return nil, err
	}
	return &Message{Kind: ep.kind, ID: env.ID, Time: env.Time, Event: env, Payload: payload}, nil
}

func envelopeOf(p *probe) (*Envelope, error) {
	var problems problemList
	problems.required("detail-type", p.DetailType)
	problems.required("source", p.Source)
	problems.required("id", p.ID)
	var t time.Time
	if p.Time == "" {
		problems.add("field \"time\" is missing")
	} else if parsed, err := time.Parse(time.RFC3339, p.Time); err != nil {
		problems.add("field \"time\": %s is not an RFC 3339 time", quote(p.Time))
	} else {
		t = parsed
	}
	if len(p.Detail) == 0 {
		problems.add("field \"detail\" is missing")
	} else if p.Detail[0] != '{' {
		problems.add("field \"detail\": want a JSON object, got %s", jsonKind(p.Detail))
	}
	if err := problems.err(); err != nil {
		return nil, err
	}
	return &Envelope{
		Version:    p.Version,
		ID:         p.ID,
		DetailType: p.DetailType,
		Source:     p.Source,
		Account:    p.Account,
		Time:       t,
		Region:     p.Region,
		Resources:  p.Resources,
		Detail:     p.Detail,
	}, nil
}

// decodeDetail decodes an event's detail object into v, leniently: fields AWS may add are
// ignored, fields we model must have the right type.
func decodeDetail(env *Envelope, v any) error {
	if err := json.Unmarshal(env.Detail, v); err != nil {
		return &InvalidError{Reason: jsonReason("detail", err)}
	}
	return nil
}
