// Package router runs the worker's message handling on a Watermill router: it parses each
// queue body into a typed message, dispatches it to the handler registered for its kind, and
// decides what happens to the message afterwards.
//
// # What happens to a message
//
//   - Handled (the handler returns nil): acked.
//   - Unknown kind (a well-formed event no handler takes, or a kind with no registered handler):
//     acked and counted (runnerfleet_messages_unknown_total).
//   - Malformed (messages.Parse returns an *InvalidError), rejected (the handler returns
//     messages.Reject), or the handler panicked: the worker publishes the body to the queue's DLQ
//     with the reason in the message attribute "runnerfleet-reason" and acks it. This is separate
//     from SQS's own redrive (maxReceiveCount), which catches messages that keep failing
//     transiently. A panic is a bug that the same body will trigger again, so it is permanent: the
//     message is parked in the DLQ (reason "panic: …", the stack in the log) rather than crashing
//     or looping; redrive it from the DLQ once the bug is fixed.
//   - Any other error is transient: retried in process with exponential backoff (each attempt
//     bounded by the handler timeout); errors with an AWS cause are retried only when
//     infra/aws.IsTransient says so. When the retries run out the message is nacked and SQS
//     redelivers it after the queue's nack backoff; its redrive policy bounds how often.
//   - The DLQ publish itself failing is transient: the message is nacked, never lost.
//
// Every log line of one message's handling carries message_id (SQS), event_id, kind, fleet,
// queue and correlation_id: the handler's context carries them (observe.WithAttrs), so handlers
// log with logger.InfoContext(ctx, …).
package router

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	smithy "github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	rfaws "github.com/runnerfleet/runnerfleet/infra/aws"
	"github.com/runnerfleet/runnerfleet/infra/observe"
	"github.com/runnerfleet/runnerfleet/infra/sqs"
	"github.com/runnerfleet/runnerfleet/messages"
)

// HandlerFunc handles one parsed message. It returns nil when done, messages.Reject(...) when
// the message can never succeed, and any other error to have it retried. ctx carries the
// message's log attributes and is cancelled at the handler timeout or at shutdown.
type HandlerFunc func(ctx context.Context, m *messages.Message) error

// Registry maps each kind to its handler; kinds without one are acked and counted as unknown.
type Registry map[messages.Kind]HandlerFunc

// FleetFunc names the fleet a message is about ("" when it cannot tell yet).
type FleetFunc func(m *messages.Message) string

// maxReasonLen keeps the DLQ reason attribute short and readable.
const maxReasonLen = 1024

// Config tunes the router.
type Config struct {
	// HandlerTimeout bounds one attempt of a handler.
	HandlerTimeout time.Duration
	// Timeouts override HandlerTimeout for some kinds.
	Timeouts map[messages.Kind]time.Duration
	// Retry is the in-process backoff for transient errors.
	Retry Retry
	// CloseTimeout is how long Close waits for in-flight handlers (default 30s). Cancel in-flight
	// work before it ends with CancelInFlight.
	CloseTimeout time.Duration
}

// Retry is an exponential backoff without jitter.
type Retry struct {
	MaxRetries      int
	InitialInterval time.Duration
	MaxInterval     time.Duration
	Multiplier      float64
}

func (c *Config) setDefaults() {
	if c.CloseTimeout == 0 {
		c.CloseTimeout = 30 * time.Second
	}
	if c.Retry.Multiplier == 0 {
		c.Retry.Multiplier = 2
	}
}

// Validate reports every problem of the (defaulted) configuration at once.
func (c Config) Validate() error {
	var errs []error
	if c.HandlerTimeout <= 0 {
		errs = append(errs, fmt.Errorf("handler timeout %s: want more than 0", c.HandlerTimeout))
	}
	for k, t := range c.Timeouts {
		if t <= 0 {
			errs = append(errs, fmt.Errorf("handler timeout of %s %s: want more than 0", k, t))
		}
	}
	if c.Retry.MaxRetries < 0 {
		errs = append(errs, fmt.Errorf("max retries %d: want at least 0", c.Retry.MaxRetries))
	}
	if c.Retry.InitialInterval < 0 || c.Retry.MaxInterval < c.Retry.InitialInterval {
		errs = append(errs, fmt.Errorf("retry intervals: want 0 ≤ initial (%s) ≤ max (%s)", c.Retry.InitialInterval, c.Retry.MaxInterval))
	}
	if c.Retry.Multiplier < 1 {
		errs = append(errs, fmt.Errorf("retry multiplier %g: want at least 1", c.Retry.Multiplier))
	}
	if c.CloseTimeout <= 0 {
		errs = append(errs, fmt.Errorf("close timeout %s: want more than 0", c.CloseTimeout))
	}
	return errors.Join(errs...)
}

// Queue is one queue the router consumes.
type Queue struct {
	// Name is the queue's role, used as the "queue" label and log attribute ("lifecycle", "control").
	Name string
	// Topic is the queue's name or URL given to Subscriber.Subscribe.
	Topic string
	// DeadLetter is the DLQ's name or URL given to the dead-letter publisher.
	DeadLetter string
	// Subscriber delivers the queue's messages.
	Subscriber message.Subscriber
}

// Router is the worker's Watermill router with RunnerFleet's dispatch and error policy.
type Router struct {
	cfg      Config
	wm       *message.Router
	handlers Registry
	dlq      message.Publisher
	metrics  *observe.Metrics
	logger   *slog.Logger
	fleetOf  FleetFunc
	now      func() time.Time
	// sleep waits d between retries, or until ctx ends (false); tests record the waits instead.
	sleep func(ctx context.Context, d time.Duration) bool

	stopCtx    context.Context
	cancelStop context.CancelFunc
	closeOnce  sync.Once
}

// New returns a router dispatching to handlers, dead-lettering through dlq. fleetOf may be nil.
func New(cfg Config, handlers Registry, dlq message.Publisher, metrics *observe.Metrics, logger *slog.Logger, fleetOf FleetFunc) (*Router, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("router config: %w", err)
	}
	switch {
	case dlq == nil:
		return nil, errors.New("router: nil dead-letter publisher")
	case metrics == nil:
		return nil, errors.New("router: nil metrics")
	case logger == nil:
		return nil, errors.New("router: nil logger")
	}
	if fleetOf == nil {
		fleetOf = func(*messages.Message) string { return "" }
	}
	// Watermill's info lines (handlers added, started, closed) are plumbing: debug for us. Its
	// "handler returned error" repeats what we log as a warning with the message's attributes, so
	// its errors are warnings (kept visible: a subscriber failing to close is one of them).
	wmLog := watermill.NewSlogLoggerWithLevelMapping(logger.With("component", "watermill"), map[slog.Level]slog.Level{
		slog.LevelInfo: slog.LevelDebug, slog.LevelError: slog.LevelWarn,
	})
	wm, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.CloseTimeout}, wmLog)
	if err != nil {
		return nil, fmt.Errorf("creating the watermill router: %w", err)
	}
	stopCtx, cancel := context.WithCancel(context.Background())
	return &Router{cfg: cfg, wm: wm, handlers: handlers, dlq: dlq, metrics: metrics, logger: logger,
		fleetOf: fleetOf, now: time.Now, sleep: sleepCtx, stopCtx: stopCtx, cancelStop: cancel}, nil
}

// AddQueue consumes q. Call it before Run.
func (r *Router) AddQueue(q Queue) error {
	if q.Name == "" || q.Topic == "" || q.DeadLetter == "" || q.Subscriber == nil {
		return fmt.Errorf("router: queue %q needs a name, a topic, a dead letter queue and a subscriber", q.Name)
	}
	r.wm.AddConsumerHandler("queue-"+q.Name, q.Topic, q.Subscriber, func(msg *message.Message) error {
		return r.handle(q, msg)
	})
	return nil
}

// Run runs the router until Close; it returns when every handler has stopped.
func (r *Router) Run(ctx context.Context) error { return r.wm.Run(ctx) }

// Running is closed once the router runs.
func (r *Router) Running() chan struct{} { return r.wm.Running() }

// Close stops receiving and waits up to CloseTimeout for in-flight handlers; the transport
// releases messages that are not settled by then.
func (r *Router) Close() error { return r.wm.Close() }

// CancelInFlight cancels the context of every handler in flight (and of any started later):
// they return, their messages are nacked and redelivered. Used at the end of the shutdown budget.
func (r *Router) CancelInFlight() { r.closeOnce.Do(r.cancelStop) }

// Outcome of a failed attempt, as decided by classify.
type failure int

const (
	success failure = iota
	transient
	permanent
	panicked
)

func (r *Router) handle(q Queue, msg *message.Message) error {
	start := r.now()
	sqsID := msg.Metadata.Get(sqs.MetaMessageID)
	corr := middleware.MessageCorrelationID(msg)
	base := observe.WithAttrs(msg.Context(), slog.String("queue", q.Name), slog.String("message_id", sqsID))

	m, err := messages.Parse(msg.Payload)
	kind := observe.KindInvalid
	if m != nil {
		kind = string(m.Kind)
	}
	if corr == "" {
		corr = firstNonEmpty(idOf(m), sqsID, msg.UUID)
		middleware.SetCorrelationID(corr, msg)
	}
	attrs := []slog.Attr{slog.String("kind", kind), slog.String("correlation_id", corr)}
	if m != nil {
		attrs = append(attrs, slog.String("event_id", m.ID), slog.String("fleet", r.fleetOf(m)))
	}
	if n := sqs.ReceiveCount(msg); n > 0 {
		attrs = append(attrs, slog.Int("receive_count", n))
	}
	ctx := observe.WithAttrs(base, attrs...)
	ctx = context.WithValue(ctx, correlationKey{}, corr)
	r.metrics.Received.WithLabelValues(q.Name, kind).Inc()
	if m != nil {
		r.metrics.ObserveLag(q.Name, kind, m.Time, start)
	}

	finish := func(outcome string) {
		r.metrics.HandlerDuration.WithLabelValues(q.Name, kind, outcome).Observe(r.now().Sub(start).Seconds())
	}

	switch {
	case errors.Is(err, messages.ErrUnknownKind):
		return r.ignore(ctx, q, msg, m, kind, finish)
	case err != nil:
		return r.deadLetter(ctx, q, msg, kind, "invalid", messages.Reason(err), finish)
	}
	h, ok := r.handlers[m.Kind]
	if !ok {
		return r.ignore(ctx, q, msg, m, kind, finish)
	}

	r.logger.DebugContext(ctx, "handling message")
	err = r.run(ctx, q, kind, h, m)
	switch classify(err) {
	case success:
		r.metrics.Acked.WithLabelValues(q.Name, kind).Inc()
		finish(observe.OutcomeAcked)
		r.logger.InfoContext(ctx, "message handled", "duration", r.now().Sub(start).String())
		return nil
	case permanent:
		return r.deadLetter(ctx, q, msg, kind, "rejected", messages.Reason(err), finish)
	case panicked:
		var p middleware.RecoveredPanicError
		errors.As(err, &p)
		r.logger.ErrorContext(ctx, "handler panicked", "panic", fmt.Sprint(p.V), "stack", p.Stacktrace)
		return r.deadLetter(ctx, q, msg, kind, "panic", "panic: "+fmt.Sprint(p.V), finish)
	default:
		r.metrics.Nacked.WithLabelValues(q.Name, kind).Inc()
		finish(observe.OutcomeNacked)
		r.logger.WarnContext(ctx, "message failed: released for redelivery", "error", err.Error())
		return fmt.Errorf("handling %s message %s: %w", kind, sqsID, err)
	}
}

// run calls h with recovery, in-process retries of transient errors and a timeout per attempt.
// The handler's context ends at the handler timeout, when the message's own context ends, or at
// CancelInFlight.
func (r *Router) run(ctx context.Context, q Queue, kind string, h HandlerFunc, m *messages.Message) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(r.stopCtx, cancel)
	defer stop()

	attempt := func(msg *message.Message) ([]*message.Message, error) {
		return nil, h(msg.Context(), m)
	}
	timeout := r.cfg.HandlerTimeout
	if t, ok := r.cfg.Timeouts[m.Kind]; ok {
		timeout = t
	}
	once := middleware.Timeout(timeout)(attempt)
	// The retries are a loop of our own, not Watermill's Retry middleware: that one advances its
	// backoff once to tell ShouldRetry the delay and again to wait, so the real waits were every
	// other step of the series (I·M, I·M³, …), longer than the budget the config's max_hold is
	// checked against (config.RetryBudget). Here the waits are I, I·M, I·M², … up to MaxInterval.
	loop := func(msg *message.Message) ([]*message.Message, error) {
		wait := min(r.cfg.Retry.InitialInterval, r.cfg.Retry.MaxInterval)
		for n := 0; ; n++ {
			msg.SetContext(ctx) // each attempt gets the message's context, not the last one's timeout
			_, err := once(msg)
			// n counts the failures so far; the last attempt's failure is final.
			if err == nil || n >= r.cfg.Retry.MaxRetries || ctx.Err() != nil || !retryable(err) {
				return nil, err
			}
			r.metrics.Retries.WithLabelValues(q.Name, kind).Inc()
			r.logger.WarnContext(ctx, "transient failure: retrying", "error", err.Error(), "retry", n+1, "wait", wait.String())
			if !r.sleep(ctx, wait) {
				return nil, err
			}
			wait = min(time.Duration(float64(wait)*r.cfg.Retry.Multiplier), r.cfg.Retry.MaxInterval)
		}
	}
	// Recoverer outside the retries: a panic is permanent and never retried.
	chain := middleware.Recoverer(loop)
	carrier := message.NewMessage(m.ID, nil)
	carrier.SetContext(ctx)
	_, err := chain(carrier)
	return err
}

// classify says what err means for the message.
func classify(err error) failure {
	if err == nil {
		return success
	}
	var p middleware.RecoveredPanicError
	if errors.As(err, &p) {
		return panicked
	}
	if messages.IsPermanent(err) {
		return permanent
	}
	return transient
}

// retryable says whether a transient failure is worth retrying in process: errors with an AWS
// cause when infra/aws classifies them transient or a conflict (a scaling activity in progress,
// contention: the resource is busy now, not wrong); anything else (timeouts included) always.
// What is not retried here is nacked at once, and redelivered with the queue's nack backoff: a
// conflict nacked straight away would spend the queue's maxReceiveCount in seconds and reach the
// DLQ without a reason while the activity it waited for was still running.
func retryable(err error) bool {
	if classify(err) != transient {
		return false
	}
	var apiErr smithy.APIError
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &apiErr) || errors.As(err, &respErr) {
		return rfaws.IsTransient(err) || rfaws.IsConflict(err)
	}
	return true
}

func (r *Router) ignore(ctx context.Context, q Queue, msg *message.Message, m *messages.Message, kind string, finish func(string)) error {
	source, detailType := "", ""
	if m != nil && m.Event != nil {
		source, detailType = m.Event.Source, m.Event.DetailType
	}
	r.metrics.Unknown.WithLabelValues(q.Name).Inc()
	r.metrics.Acked.WithLabelValues(q.Name, kind).Inc()
	finish(observe.OutcomeIgnored)
	r.logger.InfoContext(ctx, "unknown kind: acked", "source", source, "detail_type", detailType)
	return nil
}

// deadLetter publishes msg's body to q's DLQ with the reason attribute, then lets it be acked.
func (r *Router) deadLetter(ctx context.Context, q Queue, msg *message.Message, kind, cause, reason string, finish func(string)) error {
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen-1] + "…"
	}
	reason = strings.ToValidUTF8(reason, "?")
	out := message.NewMessage(msg.UUID, msg.Payload)
	for k, v := range msg.Metadata {
		if !sqs.Reserved(k) {
			out.Metadata.Set(k, v)
		}
	}
	setDeadLetterIDs(out, q, msg, reason)
	out.SetContext(ctx)
	err := r.dlq.Publish(q.DeadLetter, out)
	if errors.Is(err, sqs.ErrUnencodable) {
		// The copy itself is more than SQS takes (a body near the size limit plus the reason,
		// too many attributes, a body SQS refuses): sending it again cannot succeed, and nacking
		// would only bring it back until SQS moved it to the DLQ without its reason.
		err = r.dlq.Publish(q.DeadLetter, bareCopy(ctx, q, msg, reason))
	}
	if err != nil {
		r.metrics.Nacked.WithLabelValues(q.Name, kind).Inc()
		finish(observe.OutcomeNacked)
		r.logger.ErrorContext(ctx, "dead-lettering failed: released for redelivery", "reason", reason, "error", err.Error())
		return fmt.Errorf("dead-lettering message to %s: %w", q.DeadLetter, err)
	}
	r.metrics.DeadLettered.WithLabelValues(q.Name, kind, cause).Inc()
	r.metrics.Acked.WithLabelValues(q.Name, kind).Inc()
	finish(observe.OutcomeDeadLettered)
	r.logger.WarnContext(ctx, "message dead-lettered", "cause", cause, "reason", reason, "dead_letter_queue", q.DeadLetter)
	return nil
}

// bareCopy is the dead-letter copy of msg when the full one cannot be sent: only the reason (and a
// FIFO queue's group and deduplication ids), and, when the body itself is what SQS refuses or
// leaves no room for the reason, a stand-in that says so with the body's size and SHA-256.
func bareCopy(ctx context.Context, q Queue, msg *message.Message, reason string) *message.Message {
	body := msg.Payload
	if len(body) == 0 || len(body)+len(reason)+len(sqs.MetaReason)+64 > sqs.MaxMessageBytes || sqs.CheckBody(body) != nil {
		sum := sha256.Sum256(body)
		body, _ = json.Marshal(map[string]any{
			"runnerfleet_dead_letter": "the original body could not be sent to the dead-letter queue (see the reason attribute)",
			"bytes":                   len(msg.Payload),
			"sha256":                  hex.EncodeToString(sum[:]),
		})
	}
	out := message.NewMessage(msg.UUID, body)
	setDeadLetterIDs(out, q, msg, reason)
	out.SetContext(ctx)
	return out
}

// setDeadLetterIDs gives a dead-letter copy of msg its reason and, on a FIFO dead-letter queue,
// msg's message group (or "dead-letter") and its SQS message id as the deduplication id.
func setDeadLetterIDs(out *message.Message, q Queue, msg *message.Message, reason string) {
	out.Metadata.Set(sqs.MetaReason, reason)
	if sqs.IsFIFO(q.DeadLetter) {
		out.Metadata.Set(sqs.MetaGroupID, firstNonEmpty(msg.Metadata.Get(sqs.MetaGroupID), "dead-letter"))
		out.Metadata.Set(sqs.MetaDedupID, firstNonEmpty(msg.Metadata.Get(sqs.MetaMessageID), msg.UUID))
	}
}

// sleepCtx waits d, or until ctx ends (false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

type correlationKey struct{}

// CorrelationID returns the correlation id of the message being handled in ctx: the incoming
// "correlation_id" metadata, else the event or command id, else the SQS message id. Handlers
// set it on follow-ups they publish (middleware.SetCorrelationID) so one drain reads as one story.
func CorrelationID(ctx context.Context) string {
	s, _ := ctx.Value(correlationKey{}).(string)
	return s
}

func idOf(m *messages.Message) string {
	if m == nil {
		return ""
	}
	return m.ID
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
