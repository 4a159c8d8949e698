package messages

import (
	"encoding/json"
	"fmt"
	"time"
)

// The follow-ups (DrainStep, FleetStep) share one codec: a strict JSON body of at most
// MaxCommandSize bytes carrying an optional id and issue time around their own fields. What sets
// one apart is only its wire struct, its checks (Validate) and its message id when it has none;
// the flow below is written once for both. Its pieces (decodeBody, problemList.time, include,
// noTokens) serve parseCommand and Command.Validate too.

// followUp is a follow-up as the shared codec sees it.
type followUp interface {
	// Validate returns an *InvalidError listing every problem, or nil.
	Validate() error
	// wire returns the follow-up's wire struct, ready for json.Marshal.
	wire() any
	// message returns the parsed follow-up as a Message (its Payload a pointer to a copy).
	message() *Message
}

// followUpWire is a pointer to a follow-up's wire struct, as the shared codec decodes it.
type followUpWire interface {
	// issuedAt returns the "issued_at" member as sent ("" when absent).
	issuedAt() string
	// followUp returns the follow-up the wire carries, issued at t (zero when absent or malformed).
	followUp(t time.Time) followUp
}

// marshalFollowUp validates s and encodes its wire body; what names it in errors ("drain step").
// The caller draws the id first (orNewID), so Validate sees the id the body carries.
func marshalFollowUp(what string, s followUp) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(s.wire())
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", what, err)
	}
	return b, nil
}

// parseFollowUp decodes body strictly into w (a pointer to a zero wire struct), and returns its
// follow-up as a Message, or an *InvalidError listing every problem (the issue time's first, then
// Validate's).
func parseFollowUp(what string, body []byte, w followUpWire) (*Message, error) {
	if err := decodeBody(what, body, w); err != nil {
		return nil, err
	}
	var p problemList
	s := w.followUp(p.time("issued_at", w.issuedAt()))
	p.include(s.Validate())
	if err := p.err(); err != nil {
		return nil, err
	}
	return s.message(), nil
}

// decodeBody refuses a body larger than MaxCommandSize and decodes it strictly (decodeStrict) into
// the wire struct w; what names the message in the reason ("command", "drain step").
func decodeBody(what string, body []byte, w any) error {
	if len(body) > MaxCommandSize {
		return invalidf("%s of %d bytes exceeds %d bytes (64 KiB)", what, len(body), MaxCommandSize)
	}
	return decodeStrict(body, w)
}

// wireTime is t as the wire carries an optional time: RFC 3339 with nanoseconds in UTC, or ""
// when t is zero.
func wireTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// orNewID returns id, or a fresh NewID when id is empty.
func orNewID(id string) string {
	if id == "" {
		return NewID()
	}
	return id
}

// time parses the RFC 3339 member field whose text is v, noting a malformed one; it returns the
// zero time when v is empty or malformed.
func (p *problemList) time(field, v string) time.Time {
	if v == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		p.add("field %q: %s is not an RFC 3339 time", field, quote(v))
		return time.Time{}
	}
	// RFC 3339 years are 0000-9999 in the time's own offset; in UTC, which is how times are
	// written back, 0000-01-01T00:00:00+01:00 is in year -1, which no RFC 3339 text can hold.
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		p.add("field %q: %s is out of range (years 0001-9999 in UTC)", field, quote(v))
		return time.Time{}
	}
	return t
}

// include adds the reason of err, an *InvalidError or nil as a Validate method returns, to the
// list.
func (p *problemList) include(err error) {
	if err != nil {
		*p = append(*p, err.(*InvalidError).Reason)
	}
}

// fieldValue is one free-text field of a message and its value, for noTokens.
type fieldValue struct{ field, v string }

// noTokens notes every field whose value looks like a GitLab token; travel names what tokens
// never travel in ("messages", "commands"). It never quotes the value.
func (p *problemList) noTokens(travel string, fields ...fieldValue) {
	for _, f := range fields {
		if prefix := tokenPrefixIn(f.v); prefix != "" {
			p.add("field %q looks like a GitLab token (contains %q); tokens never travel in %s", f.field, prefix, travel)
		}
	}
}
