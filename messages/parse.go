package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"time"
)

// probe holds the raw top-level members every body may carry: the envelope of an EventBridge
// event, or the "kind" of a RunnerFleet message. Nothing is decoded until Parse knows which it is.
type probe struct {
	kind, version, id, detailType, source, account, time, region, resources, detail []byte
}

func (p *probe) read(body []byte) {
	_ = eachField(body, func(key, val []byte) error {
		switch string(key) {
		case "kind":
			p.kind = val
		case "version":
			p.version = val
		case "id":
			p.id = val
		case "detail-type":
			p.detailType = val
		case "source":
			p.source = val
		case "account":
			p.account = val
		case "time":
			p.time = val
		case "region":
			p.region = val
		case "resources":
			p.resources = val
		case "detail":
			p.detail = val
		}
		return nil
	})
}

// Parse reads one queue body and returns it typed.
//
//   - An EventBridge event (a body with "detail-type" and "source") of a registered kind gives
//     Message{Kind, ID: event id, Time: event time, Event, Payload: *Detail struct}.
//   - A well-formed event of a kind with no parser gives Message{Kind: KindUnknown, Event} and
//     ErrUnknownKind: ack it and count Event.Source and Event.DetailType.
//   - A body with "kind":"command" gives a *Command, "kind":"drain.step" a *DrainStep,
//     "kind":"fleet.step" a *FleetStep.
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
	if !json.Valid(body) {
		var v any
		err := json.Unmarshal(body, &v)
		if err == nil { // cannot happen: json.Valid and json.Unmarshal agree
			err = errors.New("not valid JSON")
		}
		return nil, &InvalidError{Reason: jsonReason("", err)}
	}
	start := skipSpace(body, 0)
	if body[start] != '{' {
		return nil, invalidf("want a JSON object, got %s", jsonType(body[start:]))
	}
	var p probe
	p.read(body)
	switch {
	case p.kind != nil && jsonType(p.kind) != "null":
		kind, err := stringValue("kind", p.kind)
		if err != nil {
			return nil, err
		}
		switch Kind(kind) {
		case KindCommand:
			return parseCommand(body)
		case KindDrainStep:
			return parseDrainStep(body)
		case KindFleetStep:
			return parseFleetStep(body)
		default:
			return nil, invalidf("field \"kind\": unknown kind %s (want %q, %q or %q)", quote(kind), KindCommand, KindDrainStep, KindFleetStep)
		}
	case p.detailType != nil || p.source != nil:
		return parseEvent(&p)
	default:
		return nil, invalidf("neither an EventBridge event (no \"detail-type\" and \"source\") nor a RunnerFleet message (no \"kind\")")
	}
}

// parseEvent checks the envelope and hands it to the parser registered for its
// (source, detail-type).
func parseEvent(p *probe) (*Message, error) {
	env, err := envelopeOf(p)
	if err != nil {
		return nil, err
	}
	ep, ok := eventIndex[eventKey{env.Source, env.DetailType}]
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
	env := &Envelope{}
	var problems problemList
	var timeText string
	for _, f := range []struct {
		name string
		raw  []byte
		dst  *string
	}{
		{"version", p.version, &env.Version}, {"id", p.id, &env.ID}, {"detail-type", p.detailType, &env.DetailType},
		{"source", p.source, &env.Source}, {"account", p.account, &env.Account}, {"time", p.time, &timeText},
		{"region", p.region, &env.Region},
	} {
		if f.raw == nil {
			continue
		}
		s, err := stringValue(f.name, f.raw)
		if err != nil {
			problems = append(problems, err.(*InvalidError).Reason)
			continue
		}
		*f.dst = s
	}
	if p.resources != nil {
		r, err := stringsValue("resources", p.resources)
		if err != nil {
			problems = append(problems, err.(*InvalidError).Reason)
		}
		env.Resources = r
	}
	problems.required("detail-type", env.DetailType)
	problems.required("source", env.Source)
	problems.required("id", env.ID)
	if p.time != nil && jsonType(p.time) == "string" {
		if timeText == "" {
			problems.add("field \"time\" is missing")
		} else if t, err := time.Parse(time.RFC3339, timeText); err != nil {
			problems.add("field \"time\": %s is not an RFC 3339 time", quote(timeText))
		} else {
			env.Time = t
		}
	} else if p.time == nil || jsonType(p.time) == "null" {
		problems.add("field \"time\" is missing")
	}
	switch t := jsonType(p.detail); t {
	case "object":
		env.Detail = append(json.RawMessage(nil), p.detail...)
	case "nothing":
		problems.add("field \"detail\" is missing")
	default:
		problems.add("field \"detail\": want a JSON object, got %s", t)
	}
	if err := problems.err(); err != nil {
		return nil, err
	}
	return env, nil
}
