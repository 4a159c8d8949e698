package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/runnerfleet/runnerfleet/infra/observe"
	"github.com/runnerfleet/runnerfleet/infra/sqs"
	"github.com/runnerfleet/runnerfleet/messages"
)

// Defaults of command safety, with why.
const (
	// DefaultCommandMaxAge: an operator's command that waited longer than this (a worker outage, a
	// redrive from the DLQ) is about a fleet that has moved on; the operator sends it again.
	DefaultCommandMaxAge = 15 * time.Minute
	// DefaultCommandRetention keeps a command id in the ledger well past any age a command may
	// have (SQS keeps messages 14 days at most).
	DefaultCommandRetention = 15 * 24 * time.Hour
	// commandClockSkew tolerates a publisher's clock ahead of the worker's.
	commandClockSkew = 2 * time.Minute
	// commandSortKey is the sort key of a command's ledger record (pk "command#<id>").
	commandSortKey = "command"
)

// Ledger remembers command ids with conditional writes. *infra/aws/state.Table implements it.
type Ledger interface {
	Load(ctx context.Context, pk, sk string) (body []byte, version int64, found bool, err error)
	Save(ctx context.Context, pk, sk string, body []byte, version int64, due, expires time.Time) (bool, error)
}

// SafetyConfig configures CommandSafety.
type SafetyConfig struct {
	// KnownFleet says whether a fleet is managed by this worker.
	KnownFleet func(name string) bool
	// Ledger records every accepted command id (pk "command#<id>", sk "command").
	Ledger Ledger
	// MaxAge refuses commands issued longer ago (default DefaultCommandMaxAge).
	MaxAge time.Duration
	// Retention is how long a command id is remembered (default DefaultCommandRetention).
	Retention time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (c *SafetyConfig) setDefaults() {
	if c.MaxAge == 0 {
		c.MaxAge = DefaultCommandMaxAge
	}
	if c.Retention == 0 {
		c.Retention = DefaultCommandRetention
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem of the (defaulted) configuration.
func (c SafetyConfig) Validate() error {
	var errs []error
	if c.KnownFleet == nil {
		errs = append(errs, errors.New("command safety: nil KnownFleet"))
	}
	if c.Ledger == nil {
		errs = append(errs, errors.New("command safety: nil Ledger"))
	}
	if c.MaxAge <= 0 {
		errs = append(errs, fmt.Errorf("command safety: max age %s: want more than 0", c.MaxAge))
	}
	if c.Retention < c.MaxAge {
		errs = append(errs, fmt.Errorf("command safety: retention %s: want at least the max age %s", c.Retention, c.MaxAge))
	}
	return errors.Join(errs...)
}

// Middleware wraps a HandlerFunc.
type Middleware func(HandlerFunc) HandlerFunc

// CommandSafety returns a middleware for the command handler (messages.KindCommand; other kinds
// pass through untouched). It refuses, with messages.Reject (the router dead-letters the command
// with the reason and acks it) and a warning log line:
//   - a command for a fleet this worker does not manage;
//   - a command issued more than MaxAge ago (or more than two minutes in the future);
//   - a command whose id was accepted before in another SQS message (its own dedupe in the
//     ledger, beyond SQS's five-minute deduplication window). A redelivery of the same SQS
//     message (same message id, after a transient failure) is not a repeat and is handled again.
//
// Each accepted command gets one audit log line ("command accepted") with the SQS SenderId of its
// message (the issuer field is only the publisher's claim); wrap the subscriber with WithSender so
// the sender reaches the handler. A ledger failure is transient (the message is retried).
func CommandSafety(cfg SafetyConfig, logger *slog.Logger) (Middleware, error) {
	cfg.setDefaults()
	if logger == nil {
		return nil, errors.New("command safety: nil logger")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &safety{cfg: cfg, log: logger.With("component", "command_safety")}
	return s.wrap, nil
}

type safety struct {
	cfg SafetyConfig
	log *slog.Logger
}

// LedgerEntry is the body of a command's ledger record (CommandKey). The publisher reads it to
// tell a command the worker refused from one it has not taken yet.
type LedgerEntry struct {
	MessageID  string    `json:"message_id"`
	Fleet      string    `json:"fleet"`
	Type       string    `json:"type"`
	Sender     string    `json:"sender"`
	Issuer     string    `json:"issuer,omitempty"`
	AcceptedAt time.Time `json:"accepted_at,omitzero"`
	// Refused is why the worker refused the command (it went to the DLQ with this reason): by
	// these checks, or by its handler. Empty while it was accepted and not refused.
	Refused   string    `json:"refused,omitempty"`
	RefusedAt time.Time `json:"refused_at,omitzero"`
}

// CommandKey is the state table key of a command's ledger record.
func CommandKey(commandID string) (pk, sk string) { return "command#" + commandID, commandSortKey }

// DecodeLedgerEntry reads a ledger record's body.
func DecodeLedgerEntry(body []byte) (LedgerEntry, error) {
	var e LedgerEntry
	if err := json.Unmarshal(body, &e); err != nil {
		return LedgerEntry{}, fmt.Errorf("command ledger record: %w", err)
	}
	return e, nil
}

// noteRefusal records in the ledger, best effort, that the command was refused and why, so that
// publisher --wait can say so at once instead of waiting out its timeout. A command already in
// the ledger keeps its entry and gains the reason; a refused repeat leaves the original alone.
func (s *safety) noteRefusal(ctx context.Context, c *messages.Command, origin Origin, reason string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refusalWriteTimeout)
	defer cancel()
	pk, sk := CommandKey(c.ID)
	now := s.cfg.Now().UTC()
	for range 3 {
		body, version, found, err := s.cfg.Ledger.Load(ctx, pk, sk)
		if err != nil {
			s.log.WarnContext(ctx, "recording a refused command in the ledger", "command_id", c.ID, "error", err.Error())
			return
		}
		entry := LedgerEntry{MessageID: origin.MessageID, Fleet: c.Fleet, Type: string(c.Type), Sender: origin.SenderID, Issuer: c.Issuer}
		if found {
			if entry, err = DecodeLedgerEntry(body); err != nil || entry.Refused != "" {
				return
			}
		}
		entry.Refused, entry.RefusedAt = reason, now
		out, _ := json.Marshal(entry)
		ok, err := s.cfg.Ledger.Save(ctx, pk, sk, out, version, time.Time{}, now.Add(s.cfg.Retention))
		if err != nil {
			s.log.WarnContext(ctx, "recording a refused command in the ledger", "command_id", c.ID, "error", err.Error())
			return
		}
		if ok {
			return
		}
	}
}

// refusalWriteTimeout bounds noteRefusal: the refusal itself does not wait on it.
const refusalWriteTimeout = 5 * time.Second

func (s *safety) wrap(next HandlerFunc) HandlerFunc {
	return func(ctx context.Context, m *messages.Message) error {
		c, ok := m.Payload.(*messages.Command)
		if m.Kind != messages.KindCommand || !ok {
			return next(ctx, m)
		}
		origin := OriginOf(ctx)
		refuse := func(check, format string, args ...any) error {
			reason := fmt.Sprintf(format, args...)
			s.log.WarnContext(ctx, "command refused", "check", check, "reason", reason, "command_id", c.ID,
				"command_type", string(c.Type), "command_fleet", c.Fleet, "sender_id", origin.SenderID, "issuer", c.Issuer)
			if check != "repeat" {
				s.noteRefusal(ctx, c, origin, reason)
			}
			return messages.Reject("%s", reason)
		}
		if !s.cfg.KnownFleet(c.Fleet) {
			return refuse("fleet", "command %s is for unknown fleet %q", c.ID, c.Fleet)
		}
		now := s.cfg.Now()
		if age := now.Sub(c.IssuedAt); age > s.cfg.MaxAge {
			return refuse("age", "command %s is stale: issued %s ago at %s, more than the %s allowed",
				c.ID, age.Round(time.Second), c.IssuedAt.UTC().Format(time.RFC3339), s.cfg.MaxAge)
		} else if -age > commandClockSkew {
			return refuse("age", "command %s is issued %s in the future (%s)", c.ID, (-age).Round(time.Second), c.IssuedAt.UTC().Format(time.RFC3339))
		}
		pk, _ := CommandKey(c.ID)
		entry := LedgerEntry{MessageID: origin.MessageID, Fleet: c.Fleet, Type: string(c.Type), Sender: origin.SenderID, Issuer: c.Issuer, AcceptedAt: now.UTC()}
		body, _ := json.Marshal(entry)
		first, err := s.cfg.Ledger.Save(ctx, pk, commandSortKey, body, 0, time.Time{}, now.Add(s.cfg.Retention))
		if err != nil {
			return fmt.Errorf("recording command %s in the ledger: %w", c.ID, err)
		}
		if !first {
			prevBody, _, found, err := s.cfg.Ledger.Load(ctx, pk, commandSortKey)
			if err != nil {
				return fmt.Errorf("reading command %s from the ledger: %w", c.ID, err)
			}
			var prev LedgerEntry
			if found {
				prev, _ = DecodeLedgerEntry(prevBody)
			}
			if !found || origin.MessageID == "" || prev.MessageID != origin.MessageID {
				return refuse("repeat", "command id %s was already accepted at %s (SQS message %s); a repeated command is not run again",
					c.ID, prev.AcceptedAt.Format(time.RFC3339), prev.MessageID)
			}
			// The same SQS message again: a redelivery after a failure, not a repeat.
		}
		s.log.InfoContext(ctx, "command accepted", "command_id", c.ID, "command_type", string(c.Type), "command_fleet", c.Fleet,
			"sender_id", origin.SenderID, "issuer", c.Issuer, "issued_at", c.IssuedAt.UTC().Format(time.RFC3339), "redelivery", !first)
		err = next(ctx, m)
		if messages.IsPermanent(err) {
			// The handler refused it (a cycle in progress, an unknown stack…): dead-lettered
			// with this reason by the router.
			s.noteRefusal(ctx, c, origin, messages.Reason(err))
		}
		return err
	}
}

// Origin is where a message came from, as SQS says.
type Origin struct {
	// SenderID is SQS's SenderId: the account or principal that sent the message.
	SenderID string
	// MessageID is SQS's message id (the same on every redelivery).
	MessageID string
}

type originKey struct{}

// OriginOf returns the origin of the message handled in ctx (put there by WithSender). Without
// it, MessageID falls back to the "message_id" log attribute and SenderID is "unknown".
func OriginOf(ctx context.Context) Origin {
	if o, ok := ctx.Value(originKey{}).(Origin); ok {
		return o
	}
	o := Origin{SenderID: "unknown"}
	for _, a := range observe.Attrs(ctx) {
		if a.Key == "message_id" {
			o.MessageID = a.Value.String()
		}
	}
	return o
}

// WithSender wraps a subscriber so each message's context carries its Origin (SQS SenderId and
// message id from the transport's metadata): CommandSafety audits it. Wire it around the control
// queue's subscriber:
//
//	sub, err = router.WithSender(sub)
func WithSender(sub message.Subscriber) (message.Subscriber, error) {
	return message.MessageTransformSubscriberDecorator(func(msg *message.Message) {
		o := Origin{SenderID: msg.Metadata.Get(sqs.MetaSenderID), MessageID: msg.Metadata.Get(sqs.MetaMessageID)}
		if o.SenderID == "" {
			o.SenderID = "unknown"
		}
		msg.SetContext(context.WithValue(msg.Context(), originKey{}, o))
	})(sub)
}
