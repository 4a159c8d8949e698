package messages

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// CommandSchema is the command wire schema this build writes and the newest it reads.
// Bump it only with a change older workers cannot read; adding optional fields is not one.
const CommandSchema = 1

// MaxTemplateBody is CloudFormation's limit on an inline TemplateBody: 51,200 bytes.
const MaxTemplateBody = 51200

// CommandType says what a Command asks for.
type CommandType string

// The publisher's commands.
const (
	// CommandTick asks for one tick of the fleet now (as its schedule rule would).
	CommandTick CommandType = "tick"
	// CommandScale pins the fleet's desired capacity, or resumes policy-driven scaling.
	CommandScale CommandType = "scale"
	// CommandDrain retires one instance through the ASG so its terminate hook drains it.
	CommandDrain CommandType = "drain"
	// CommandCycle starts (or aborts) a drain-aware rolling replacement of the fleet.
	CommandCycle CommandType = "cycle"
	// CommandUpdate applies a CloudFormation change set to the fleet's stack.
	CommandUpdate CommandType = "update"
)

// CommandTypes lists every command type, in a stable order.
func CommandTypes() []CommandType {
	return []CommandType{CommandTick, CommandScale, CommandDrain, CommandCycle, CommandUpdate}
}

// Command is one publisher command for one fleet, sent on the FIFO control queue with
// MessageGroupId = Fleet. Exactly the args field matching Type is set (Tick may be nil).
//
// Wire body (Marshal writes it, Parse reads it strictly: unknown fields are refused):
//
//	{"kind":"command","schema":1,"id":"…","issued_at":"2026-11-27T17:00:00Z","issuer":"alice",
//	 "fleet":"docker","type":"scale","scale":{"desired":3,"for":"2h0m0s"}}
//
// A command never carries a runner token (see Validate).
type Command struct {
	// Schema is the wire schema version (CommandSchema).
	Schema int
	// ID is random (NewID); the worker dedupes commands by it.
	ID string
	// IssuedAt is when the publisher made the command; the worker refuses stale commands.
	IssuedAt time.Time
	// Issuer is who the publisher says sent it: a claim only. The worker audits the SQS SenderId.
	Issuer string
	// Fleet names the fleet (the worker's config); it is also the FIFO message group.
	Fleet string
	// Type says which of the args below is set.
	Type   CommandType
	Tick   *TickArgs
	Scale  *ScaleArgs
	Drain  *DrainArgs
	Cycle  *CycleArgs
	Update *UpdateArgs
}

// TickArgs are the arguments of a tick; there are none yet.
type TickArgs struct{}

// ScaleArgs pin or unpin a fleet's capacity: exactly one of Desired and Resume.
type ScaleArgs struct {
	// Desired pins the desired capacity (≥ 0). Busy instances above it go as they become idle.
	Desired *int
	// For bounds the pin (0: until resumed). Wire: a Go duration string ("2h0m0s").
	For time.Duration
	// Resume unpins: the policy decides again.
	Resume bool
}

// DrainArgs retire one instance of the fleet.
type DrainArgs struct {
	// InstanceID is the EC2 instance (i-…); it must belong to the fleet's group.
	InstanceID string
	// Replace keeps the group's desired capacity, so a replacement is launched.
	Replace bool
}

// CycleArgs start or abort a rolling replacement. Zero MaxUnavailable and Surge mean the fleet's
// configured defaults. With Abort the other fields are ignored (All is refused).
type CycleArgs struct {
	// MaxUnavailable bounds instances out of service at once (≥ 0).
	MaxUnavailable int
	// Surge is how many replacements may run above desired capacity (≥ 0).
	Surge int
	// All replaces every instance, not only those off the current launch template version.
	All bool
	// Abort stops the cycle in progress after its step in flight.
	Abort bool
}

// UpdateArgs apply the fleet's CloudFormation template.
type UpdateArgs struct {
	// Parameters are CloudFormation parameter values by name; parameters absent keep their
	// previous values. Never a token: keys naming a token are refused unless they name the
	// parameter holding it (ending in "Parameter", "ParameterName" or "ParameterArn"), and values
	// that look like a GitLab token are refused.
	Parameters map[string]string
	// TemplateBody replaces the template the worker embeds (≤ MaxTemplateBody bytes); empty means
	// the embedded one.
	TemplateBody string
	// Plan creates and reports the change set without executing it.
	Plan bool
}

// NewCommand returns a command of type t for fleet, issued at now, with a fresh ID, the current
// schema, and the args struct of t allocated (zero) so the caller fills it:
//
//	c := messages.NewCommand("docker", messages.CommandScale, time.Now())
//	c.Scale.Desired = &n
func NewCommand(fleet string, t CommandType, now time.Time) Command {
	c := Command{Schema: CommandSchema, ID: NewID(), IssuedAt: now.UTC(), Fleet: fleet, Type: t}
	switch t {
	case CommandTick:
		c.Tick = &TickArgs{}
	case CommandScale:
		c.Scale = &ScaleArgs{}
	case CommandDrain:
		c.Drain = &DrainArgs{}
	case CommandCycle:
		c.Cycle = &CycleArgs{}
	case CommandUpdate:
		c.Update = &UpdateArgs{}
	}
	return c
}

// Marshal validates the command and returns its wire body ("kind":"command"). It refuses, with an
// *InvalidError, what Parse would refuse: so a published command always parses.
func (c Command) Marshal() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(c.wire())
	if err != nil {
		return nil, fmt.Errorf("encoding command: %w", err)
	}
	if len(b) > MaxCommandSize {
		return nil, invalidf("command of %d bytes exceeds %d bytes (64 KiB)", len(b), MaxCommandSize)
	}
	return b, nil
}

var instanceIDPattern = regexp.MustCompile(`^i-[0-9a-f]{8}(?:[0-9a-f]{9})?$`)

var parameterKeyPattern = regexp.MustCompile(`^[A-Za-z0-9]{1,255}$`)

// Validate checks the command as the worker will: schema, id, issue time, fleet, type, the args
// matching the type and their values, and that nothing in it looks like a runner token. It
// returns an *InvalidError listing every problem, or nil.
func (c Command) Validate() error {
	var p problemList
	switch {
	case c.Schema < 1:
		p.add("field \"schema\" is missing")
	case c.Schema > CommandSchema:
		p.add("field \"schema\": %d is newer than this build reads (%d)", c.Schema, CommandSchema)
	}
	p.text("id", c.ID, true, 128)
	if c.IssuedAt.IsZero() {
		p.add("field \"issued_at\" is missing")
	}
	p.text("issuer", c.Issuer, false, 256)
	p.text("fleet", c.Fleet, true, 128)

	args := map[CommandType]bool{
		CommandTick: c.Tick != nil, CommandScale: c.Scale != nil, CommandDrain: c.Drain != nil,
		CommandCycle: c.Cycle != nil, CommandUpdate: c.Update != nil,
	}
	known := false
	for _, t := range CommandTypes() {
		if t == c.Type {
			known = true
			if !args[t] && t != CommandTick {
				p.add("field %q is missing: type %q needs its arguments", string(t), string(t))
			}
		} else if args[t] {
			p.add("field %q does not belong to a command of type %s", string(t), quote(string(c.Type)))
		}
	}
	switch {
	case c.Type == "":
		p.add("field \"type\" is missing")
	case !known:
		p.add("field \"type\": unknown command type %s (want tick, scale, drain, cycle or update)", quote(string(c.Type)))
	}

	if a := c.Scale; a != nil && c.Type == CommandScale {
		switch {
		case a.Resume && a.Desired != nil:
			p.add("fields \"scale.resume\" and \"scale.desired\" exclude each other")
		case !a.Resume && a.Desired == nil:
			p.add("field \"scale.desired\" is missing (or set \"scale.resume\")")
		}
		if a.Desired != nil && *a.Desired < 0 {
			p.add("field \"scale.desired\": %d is negative", *a.Desired)
		}
		if a.For < 0 {
			p.add("field \"scale.for\": %s is negative", a.For)
		}
		if a.For != 0 && a.Resume {
			p.add("field \"scale.for\" makes no sense with \"scale.resume\"")
		}
	}
	if a := c.Drain; a != nil && c.Type == CommandDrain {
		if a.InstanceID == "" {
			p.add("field \"drain.instance_id\" is missing")
		} else if !instanceIDPattern.MatchString(a.InstanceID) {
			p.add("field \"drain.instance_id\": %s is not an EC2 instance id (i- and 8 or 17 hex digits)", quote(a.InstanceID))
		}
	}
	if a := c.Cycle; a != nil && c.Type == CommandCycle {
		if a.MaxUnavailable < 0 {
			p.add("field \"cycle.max_unavailable\": %d is negative", a.MaxUnavailable)
		}
		if a.Surge < 0 {
			p.add("field \"cycle.surge\": %d is negative", a.Surge)
		}
		if a.Abort && a.All {
			p.add("fields \"cycle.abort\" and \"cycle.all\" exclude each other")
		}
	}
	if a := c.Update; a != nil && c.Type == CommandUpdate {
		for _, k := range sortedKeys(a.Parameters) {
			v := a.Parameters[k]
			field := "update.parameters." + k
			if tokenPrefixIn(k) != "" {
				p.add("field \"update.parameters\": a key looks like a GitLab token; tokens never travel in commands")
				continue
			}
			if !parameterKeyPattern.MatchString(k) {
				p.add("field \"update.parameters\": key %s is not a CloudFormation parameter name (1-255 letters and digits)", quote(k))
				continue
			}
			if keyNamesToken(k) {
				p.add("field %q: parameters naming a runner token are refused; the token lives in the SSM SecureString parameter the fleet stack names, never in a command", field)
				continue
			}
			if prefix := tokenPrefixIn(v); prefix != "" {
				p.add("field %q: the value looks like a GitLab token (contains %q); tokens never travel in commands", field, prefix)
			}
		}
		if len(a.TemplateBody) > MaxTemplateBody {
			p.add("field \"update.template_body\": %d bytes exceed CloudFormation's %d-byte limit", len(a.TemplateBody), MaxTemplateBody)
		}
		if prefix := tokenIn(a.TemplateBody); prefix != "" {
			p.add("field \"update.template_body\": the template contains what looks like a GitLab token (%q); tokens never travel in commands", prefix)
		}
	}
	p.noTokens("commands", fieldValue{"id", c.ID}, fieldValue{"issuer", c.Issuer}, fieldValue{"fleet", c.Fleet})
	if c.Drain != nil {
		if prefix := tokenPrefixIn(c.Drain.InstanceID); prefix != "" {
			p.add("field \"drain.instance_id\" looks like a GitLab token (contains %q)", prefix)
		}
	}
	return p.err()
}

// text checks a free-text field: present when required, bounded, no control characters. It never
// quotes the value.
func (p *problemList) text(field, v string, required bool, max int) {
	switch {
	case v == "" && required:
		p.add("field %q is missing", field)
	case len(v) > max:
		p.add("field %q: %d bytes exceed %d", field, len(v), max)
	case hasControl(v):
		p.add("field %q contains control characters", field)
	}
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

// commandWire is a Command on the wire.
type commandWire struct {
	Kind     Kind        `json:"kind"`
	Schema   int         `json:"schema"`
	ID       string      `json:"id"`
	IssuedAt string      `json:"issued_at"`
	Issuer   string      `json:"issuer,omitempty"`
	Fleet    string      `json:"fleet"`
	Type     CommandType `json:"type"`
	Tick     *tickWire   `json:"tick,omitempty"`
	Scale    *scaleWire  `json:"scale,omitempty"`
	Drain    *drainWire  `json:"drain,omitempty"`
	Cycle    *cycleWire  `json:"cycle,omitempty"`
	Update   *updateWire `json:"update,omitempty"`
}

type tickWire struct{}

type scaleWire struct {
	Desired *int   `json:"desired,omitempty"`
	For     string `json:"for,omitempty"`
	Resume  bool   `json:"resume,omitempty"`
}

type drainWire struct {
	InstanceID string `json:"instance_id"`
	Replace    bool   `json:"replace,omitempty"`
}

type cycleWire struct {
	MaxUnavailable int  `json:"max_unavailable,omitempty"`
	Surge          int  `json:"surge,omitempty"`
	All            bool `json:"all,omitempty"`
	Abort          bool `json:"abort,omitempty"`
}

type updateWire struct {
	Parameters   map[string]string `json:"parameters,omitempty"`
	TemplateBody string            `json:"template_body,omitempty"`
	Plan         bool              `json:"plan,omitempty"`
}

func (c Command) wire() commandWire {
	w := commandWire{
		Kind: KindCommand, Schema: c.Schema, ID: c.ID, Issuer: c.Issuer, Fleet: c.Fleet, Type: c.Type,
		IssuedAt: c.IssuedAt.UTC().Format(time.RFC3339Nano),
	}
	if c.Tick != nil {
		w.Tick = &tickWire{}
	}
	if a := c.Scale; a != nil {
		w.Scale = &scaleWire{Desired: a.Desired, Resume: a.Resume}
		if a.For != 0 {
			w.Scale.For = a.For.String()
		}
	}
	if a := c.Drain; a != nil {
		w.Drain = &drainWire{InstanceID: a.InstanceID, Replace: a.Replace}
	}
	if a := c.Cycle; a != nil {
		w.Cycle = &cycleWire{MaxUnavailable: a.MaxUnavailable, Surge: a.Surge, All: a.All, Abort: a.Abort}
	}
	if a := c.Update; a != nil {
		w.Update = &updateWire{Parameters: a.Parameters, TemplateBody: a.TemplateBody, Plan: a.Plan}
	}
	return w
}

// decodeStrict decodes one JSON object into v, refusing unknown fields and trailing data.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		reason := jsonReason("", err)
		if name, ok := strings.CutPrefix(reason, "unknown field "); ok {
			reason = "unknown field " + strconv.Quote(unknownFieldPath(body, strings.Trim(name, `"`)))
		}
		return &InvalidError{Reason: reason}
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalidf("not valid JSON: data after the top-level object")
	}
	return exactKeys("", body, reflect.TypeOf(v))
}

// unknownFieldPath finds where an unknown field sits (encoding/json names it without its path):
// at the top level, or inside one of the objects of the top level ("scale.min").
func unknownFieldPath(body []byte, name string) string {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return name
	}
	if _, ok := top[name]; ok {
		return name
	}
	keys := make([]string, 0, len(top))
	for k := range top {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var inner map[string]json.RawMessage
		if json.Unmarshal(top[k], &inner) != nil {
			continue
		}
		if _, ok := inner[name]; ok {
			return k + "." + name
		}
	}
	return name
}

func parseCommand(body []byte) (*Message, error) {
	var w commandWire
	if err := decodeBody("command", body, &w); err != nil {
		return nil, err
	}
	var p problemList
	c := Command{Schema: w.Schema, ID: w.ID, IssuedAt: p.time("issued_at", w.IssuedAt), Issuer: w.Issuer, Fleet: w.Fleet, Type: w.Type}
	if w.Tick != nil {
		c.Tick = &TickArgs{}
	}
	if a := w.Scale; a != nil {
		c.Scale = &ScaleArgs{Desired: a.Desired, Resume: a.Resume}
		if a.For != "" {
			d, err := time.ParseDuration(a.For)
			if err != nil {
				p.add("field \"scale.for\": %s is not a duration (like \"90m\" or \"2h\")", quote(a.For))
			} else {
				c.Scale.For = d
			}
		}
	}
	if a := w.Drain; a != nil {
		c.Drain = &DrainArgs{InstanceID: a.InstanceID, Replace: a.Replace}
	}
	if a := w.Cycle; a != nil {
		c.Cycle = &CycleArgs{MaxUnavailable: a.MaxUnavailable, Surge: a.Surge, All: a.All, Abort: a.Abort}
	}
	if a := w.Update; a != nil {
		c.Update = &UpdateArgs{Parameters: a.Parameters, TemplateBody: a.TemplateBody, Plan: a.Plan}
	}
	p.include(c.Validate())
	if err := p.err(); err != nil {
		return nil, err
	}
	return &Message{Kind: KindCommand, ID: c.ID, Time: c.IssuedAt, Payload: &c}, nil
}
