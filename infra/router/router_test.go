package router

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	smithy "github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/runnerfleet/runnerfleet/infra/observe"
	"github.com/runnerfleet/runnerfleet/infra/sqs"
	"github.com/runnerfleet/runnerfleet/messages"
)

// fakeSubscriber hands out the messages pushed into it. Like the SQS subscriber, it closes its
// output once the subscription's context ends: watermill's router cancels that context on Close
// and, when its handler's close watcher starts late, does not call Close at all (it picks either
// ready case of a select), so a fake that only stopped on Close would hold the router's Close
// until its timeout and leak the handler (seen in CI as a goleak failure after 5 s).
type fakeSubscriber struct {
	ch     chan *message.Message
	done   chan struct{}
	closed sync.Once
}

func newFakeSubscriber() *fakeSubscriber {
	return &fakeSubscriber{ch: make(chan *message.Message), done: make(chan struct{})}
}

func (s *fakeSubscriber) Subscribe(ctx context.Context, _ string) (<-chan *message.Message, error) {
	out := make(chan *message.Message)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.done:
				return
			case m := <-s.ch:
				select {
				case out <- m:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

func (s *fakeSubscriber) Close() error {
	s.closed.Do(func() { close(s.done) })
	return nil
}

// fakeDLQ records what is dead-lettered; it fails while failing is set.
type fakeDLQ struct {
	mu      sync.Mutex
	msgs    []*message.Message
	topics  []string
	failing atomic.Bool
	// refuse, when set, says which messages SQS would not take as they are.
	refuse func(*message.Message) bool
}

func (d *fakeDLQ) Publish(topic string, msgs ...*message.Message) error {
	if d.failing.Load() {
		return errors.New("dlq unavailable")
	}
	for _, m := range msgs {
		if d.refuse != nil && d.refuse(m) {
			return fmt.Errorf("publishing to %s: %w: too large or too many attributes", topic, sqs.ErrUnencodable)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.msgs = append(d.msgs, msgs...)
	for range msgs {
		d.topics = append(d.topics, topic)
	}
	return nil
}

func (d *fakeDLQ) Close() error { return nil }

func (d *fakeDLQ) reasons() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, m := range d.msgs {
		out = append(out, m.Metadata.Get(sqs.MetaReason))
	}
	return out
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type world struct {
	r       *Router
	sub     *fakeSubscriber
	dlq     *fakeDLQ
	metrics *observe.Metrics
	logs    *syncBuffer
}

func start(t *testing.T, handlers Registry, cfg Config) *world {
	t.Helper()
	w := &world{sub: newFakeSubscriber(), dlq: &fakeDLQ{}, logs: &syncBuffer{}}
	w.metrics = observe.NewMetrics(prometheus.NewRegistry())
	if cfg.HandlerTimeout == 0 {
		cfg.HandlerTimeout = time.Second
	}
	if cfg.Retry.MaxInterval == 0 {
		cfg.Retry = Retry{MaxRetries: 2, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond, Multiplier: 2}
	}
	cfg.CloseTimeout = 5 * time.Second
	r, err := New(cfg, handlers, w.dlq, w.metrics, observe.NewLogger(w.logs, nil), func(m *messages.Message) string {
		if c, ok := m.Payload.(*messages.Command); ok {
			return c.Fleet
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddQueue(Queue{Name: "control", Topic: "q.fifo", DeadLetter: "dlq.fifo", Subscriber: w.sub}); err != nil {
		t.Fatal(err)
	}
	w.r = r
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	<-r.Running()
	t.Cleanup(func() {
		_ = r.Close()
		if err := <-done; err != nil {
			t.Errorf("router run: %v", err)
		}
	})
	return w
}

// send delivers body and waits until the message is acked (true) or nacked (false).
func (w *world) send(t *testing.T, body []byte) bool {
	t.Helper()
	msg := message.NewMessage(fmt.Sprintf("uuid-%d", time.Now().UnixNano()), body)
	msg.Metadata.Set(sqs.MetaMessageID, "sqs-"+msg.UUID)
	msg.Metadata.Set(sqs.MetaGroupID, "blue")
	w.sub.ch <- msg
	select {
	case <-msg.Acked():
		return true
	case <-msg.Nacked():
		return false
	case <-time.After(20 * time.Second):
		t.Fatal("message neither acked nor nacked")
		return false
	}
}

func tick(t *testing.T) []byte {
	t.Helper()
	b, err := messages.NewCommand("blue", messages.CommandTick, time.Now()).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func unknownEvent() []byte {
	return []byte(`{"version":"0","id":"e-1","detail-type":"Something Else","source":"aws.other","account":"1","time":"2026-11-27T10:00:00Z","region":"us-east-1","resources":[],"detail":{}}`)
}

func TestOutcomes(t *testing.T) {
	var calls, flaky atomic.Int32
	w := start(t, Registry{messages.KindCommand: func(ctx context.Context, m *messages.Message) error {
		calls.Add(1)
		c := m.Payload.(*messages.Command)
		switch c.Issuer {
		case "reject":
			return messages.Reject("fleet %s is gone", c.Fleet)
		case "panic":
			panic("boom")
		case "flaky":
			if flaky.Add(1) < 3 {
				return errors.New("throttled")
			}
			return nil
		case "down":
			return errors.New("always down")
		}
		return nil
	}}, Config{})
	cmd := func(issuer string) []byte {
		c := messages.NewCommand("blue", messages.CommandTick, time.Now())
		c.Issuer = issuer
		b, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	oversize := messages.NewCommand("blue", messages.CommandTick, time.Now())
	big, _ := json.Marshal(map[string]any{"kind": "command", "schema": 1, "id": oversize.ID, "issued_at": oversize.IssuedAt,
		"fleet": "blue", "type": "tick", "issuer": strings.Repeat("x", 70*1024)})

	if !w.send(t, tick(t)) {
		t.Error("valid command nacked")
	}
	if !w.send(t, []byte("{not json")) {
		t.Error("malformed body not acked")
	}
	if !w.send(t, big) {
		t.Error("oversize command not acked")
	}
	if !w.send(t, unknownEvent()) {
		t.Error("unknown event not acked")
	}
	if !w.send(t, cmd("reject")) {
		t.Error("rejected command not acked")
	}
	if !w.send(t, cmd("panic")) {
		t.Error("panicking command not acked")
	}
	if !w.send(t, cmd("flaky")) {
		t.Error("flaky command (fails twice, then succeeds within 2 retries) not acked")
	}
	if w.send(t, cmd("down")) {
		t.Error("always-failing command acked")
	}

	reasons := w.dlq.reasons()
	if len(reasons) != 4 {
		t.Fatalf("dead-lettered %d messages, want 4 (malformed, oversize, rejected, panic): %q", len(reasons), reasons)
	}
	for i, want := range []string{"", "65536", "fleet blue is gone", "panic: boom"} {
		if reasons[i] == "" || !strings.Contains(reasons[i], want) {
			t.Errorf("reason %d = %q, want it to mention %q", i, reasons[i], want)
		}
	}
	for _, m := range w.dlq.msgs {
		if m.Metadata.Get(sqs.MetaGroupID) != "blue" || m.Metadata.Get(sqs.MetaDedupID) == "" {
			t.Errorf("fifo dlq message lacks group or dedup id: %v", m.Metadata)
		}
	}
	if got := value(w.metrics.Unknown.WithLabelValues("control")); got != 1 {
		t.Errorf("unknown count = %v, want 1", got)
	}
	if got := value(w.metrics.DeadLettered.WithLabelValues("control", "invalid", "invalid")); got != 2 {
		t.Errorf("dead-lettered invalid = %v, want 2", got)
	}
	if got := value(w.metrics.DeadLettered.WithLabelValues("control", "command", "panic")); got != 1 {
		t.Errorf("dead-lettered panic = %v, want 1", got)
	}
	if got := value(w.metrics.Nacked.WithLabelValues("control", "command")); got != 1 {
		t.Errorf("nacked = %v, want 1", got)
	}
	if got := value(w.metrics.Retries.WithLabelValues("control", "command")); got != 4 {
		t.Errorf("retries = %v, want 4 (2 flaky + 2 down)", got)
	}
	if got := value(w.metrics.Acked.WithLabelValues("control", "command")); got != 4 {
		t.Errorf("acked commands = %v, want 4 (valid, reject, panic, flaky)", got)
	}
	// Every log line about a parsed message names it.
	for _, line := range strings.Split(strings.TrimSpace(w.logs.String()), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["kind"] != "command" {
			continue
		}
		for _, k := range []string{"message_id", "event_id", "fleet", "queue", "correlation_id"} {
			if rec[k] == nil || rec[k] == "" {
				t.Errorf("log line lacks %s: %s", k, line)
			}
		}
	}
}

func TestTimeoutIsRetriedThenNacked(t *testing.T) {
	var calls atomic.Int32
	w := start(t, Registry{messages.KindCommand: func(ctx context.Context, m *messages.Message) error {
		calls.Add(1)
		<-ctx.Done()
		return ctx.Err()
	}}, Config{HandlerTimeout: 20 * time.Millisecond})
	if w.send(t, tick(t)) {
		t.Error("a handler that always times out was acked")
	}
	if got := calls.Load(); got != 3 {
		t.Errorf("attempts = %d, want 3 (1 + 2 retries, each with its own timeout)", got)
	}
}

func TestDeadLetterFailureNacks(t *testing.T) {
	w := start(t, Registry{}, Config{})
	w.dlq.failing.Store(true)
	if w.send(t, []byte("garbage")) {
		t.Error("a message the DLQ could not take was acked (it would be lost)")
	}
}

func TestCancelInFlightReleases(t *testing.T) {
	started := make(chan struct{})
	w := start(t, Registry{messages.KindCommand: func(ctx context.Context, m *messages.Message) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}}, Config{HandlerTimeout: time.Minute})
	go func() { <-started; w.r.CancelInFlight() }()
	if w.send(t, tick(t)) {
		t.Error("a step cancelled at shutdown was acked")
	}
}

func TestUnregisteredKindIsUnknown(t *testing.T) {
	w := start(t, Registry{}, Config{})
	if !w.send(t, tick(t)) {
		t.Error("a kind without handler was not acked")
	}
	if got := value(w.metrics.Unknown.WithLabelValues("control")); got != 1 {
		t.Errorf("unknown = %v, want 1", got)
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{HandlerTimeout: 0, Retry: Retry{MaxRetries: -1, InitialInterval: 2, MaxInterval: 1, Multiplier: 0.5}, CloseTimeout: -1}.Validate()
	for _, want := range []string{"handler timeout", "max retries", "retry intervals", "multiplier", "close timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want it to report %q", err, want)
		}
	}
}

func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// apiError is an AWS API error as the SDK returns it.
type apiError struct{ code string }

func (e apiError) Error() string                 { return "api error " + e.code }
func (e apiError) ErrorCode() string             { return e.code }
func (e apiError) ErrorMessage() string          { return e.code }
func (e apiError) ErrorFault() smithy.ErrorFault { return smithy.FaultServer }

// Throttling and a busy resource (a scaling activity in progress) are retried in process; a
// refusal that retrying cannot change is not.
func TestAWSErrorsRetriedOnlyWhenTransient(t *testing.T) {
	for code, wantCalls := range map[string]int32{"ThrottlingException": 3, "ScalingActivityInProgress": 3, "AccessDeniedException": 1} {
		t.Run(code, func(t *testing.T) {
			var calls atomic.Int32
			w := start(t, Registry{messages.KindCommand: func(context.Context, *messages.Message) error {
				calls.Add(1)
				return fmt.Errorf("calling autoscaling: %w", apiError{code})
			}}, Config{})
			if w.send(t, tick(t)) {
				t.Error("a failing message was acked")
			}
			if got := calls.Load(); got != wantCalls {
				t.Errorf("attempts = %d, want %d", got, wantCalls)
			}
		})
	}
}

func TestPerKindTimeout(t *testing.T) {
	var calls atomic.Int32
	w := start(t, Registry{messages.KindCommand: func(ctx context.Context, _ *messages.Message) error {
		calls.Add(1)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
			return nil
		}
	}}, Config{HandlerTimeout: 10 * time.Millisecond, Timeouts: map[messages.Kind]time.Duration{messages.KindCommand: 10 * time.Second}})
	if !w.send(t, tick(t)) {
		t.Error("a command within its own (longer) timeout was not acked")
	}
	if calls.Load() != 1 {
		t.Errorf("attempts = %d, want 1", calls.Load())
	}
}

// The waits between retries are the series the config's max_hold check budgets for (I, I·M, …, up
// to the maximum): Watermill's Retry middleware advanced its backoff twice per retry, so its waits
// were every other step (here 200 ms, 3.2 s and 10 s where 50 ms, 200 ms and 800 ms are due).
// The router's sleep is replaced to record the waits asked for, not to time them.
func TestRetryWaitsFollowTheBudgetedSeries(t *testing.T) {
	var mu sync.Mutex
	var waits []time.Duration
	calls := 0
	w := start(t, Registry{messages.KindCommand: func(context.Context, *messages.Message) error {
		mu.Lock()
		calls++
		mu.Unlock()
		return errors.New("transient: try again")
	}}, Config{Retry: Retry{MaxRetries: 4, InitialInterval: 50 * time.Millisecond, MaxInterval: time.Second, Multiplier: 4}})
	w.r.sleep = func(_ context.Context, d time.Duration) bool {
		mu.Lock()
		defer mu.Unlock()
		waits = append(waits, d)
		return true
	}
	if w.send(t, tick(t)) {
		t.Fatal("a failing message was acked")
	}
	mu.Lock()
	defer mu.Unlock()
	want := []time.Duration{50 * time.Millisecond, 200 * time.Millisecond, 800 * time.Millisecond, time.Second}
	if calls != 5 || !slices.Equal(waits, want) {
		t.Errorf("%d attempts, waits %v; want 5 attempts and waits %v (the budgeted series, capped)", calls, waits, want)
	}
}

// A dead-letter copy SQS would not take as it is (a body near the size limit plus the reason,
// too many attributes) is sent bare, with its reason: nacking it would only bring it back until
// SQS moved it to the DLQ without one.
func TestDeadLetterCopyTooLargeIsSentBare(t *testing.T) {
	w := start(t, Registry{}, Config{})
	w.dlq.refuse = func(m *message.Message) bool {
		size := len(m.Payload)
		for k, v := range m.Metadata {
			size += len(k) + len(v)
		}
		return size > sqs.MaxMessageBytes || len(m.Metadata) > 3
	}
	huge := append([]byte(`{"detail-type": 5, "x": "`), bytes.Repeat([]byte("a"), sqs.MaxMessageBytes-40)...)
	huge = append(huge, []byte(`"}`)...)
	if !w.send(t, huge) {
		t.Fatal("a malformed body too large to copy with its reason was nacked")
	}
	w.dlq.mu.Lock()
	defer w.dlq.mu.Unlock()
	if len(w.dlq.msgs) != 1 {
		t.Fatalf("%d dead-lettered, want 1", len(w.dlq.msgs))
	}
	got := w.dlq.msgs[0]
	if got.Metadata.Get(sqs.MetaReason) == "" || !bytes.Contains(got.Payload, []byte(`"runnerfleet_dead_letter"`)) || !bytes.Contains(got.Payload, []byte(`"sha256"`)) {
		t.Errorf("bare copy: reason %q, body %.200s", got.Metadata.Get(sqs.MetaReason), got.Payload)
	}
}
