package router

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/runnerfleet/runnerfleet/infra/observe"
	"github.com/runnerfleet/runnerfleet/infra/sqs"
	"github.com/runnerfleet/runnerfleet/messages"
)

type memLedger struct {
	mu    sync.Mutex
	items map[string][]byte
	fail  bool
}

func (l *memLedger) Load(_ context.Context, pk, sk string) ([]byte, int64, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.items[pk+"/"+sk]
	if !ok {
		return nil, 0, false, nil
	}
	return b, 1, true, nil
}

func (l *memLedger) Save(_ context.Context, pk, sk string, body []byte, version int64, _, _ time.Time) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail {
		return false, errors.New("dynamodb down")
	}
	if _, ok := l.items[pk+"/"+sk]; ok && version == 0 {
		return false, nil
	}
	l.items[pk+"/"+sk] = body
	return true, nil
}

type safetyEnv struct {
	mw     Middleware
	ledger *memLedger
	logs   *bytes.Buffer
	calls  int
	now    time.Time
}

func newSafetyEnv(t *testing.T) *safetyEnv {
	t.Helper()
	e := &safetyEnv{ledger: &memLedger{items: map[string][]byte{}}, logs: &bytes.Buffer{}, now: time.Date(2026, 11, 27, 18, 0, 0, 0, time.UTC)}
	mw, err := CommandSafety(SafetyConfig{
		KnownFleet: func(n string) bool { return n == "docker" },
		Ledger:     e.ledger,
		MaxAge:     10 * time.Minute,
		Now:        func() time.Time { return e.now },
	}, slog.New(slog.NewJSONHandler(e.logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	e.mw = mw
	return e
}

func (e *safetyEnv) handle(c messages.Command, sender, messageID string) error {
	h := e.mw(func(context.Context, *messages.Message) error { e.calls++; return nil })
	ctx := context.WithValue(context.Background(), originKey{}, Origin{SenderID: sender, MessageID: messageID})
	return h(ctx, &messages.Message{Kind: messages.KindCommand, ID: c.ID, Payload: &c})
}

func TestCommandSafetyRefusesWithReasons(t *testing.T) {
	e := newSafetyEnv(t)
	fresh := messages.NewCommand("docker", messages.CommandTick, e.now.Add(-time.Minute))
	for name, tc := range map[string]struct {
		c    messages.Command
		want string
	}{
		"unknown fleet": {messages.NewCommand("nope", messages.CommandTick, e.now), `unknown fleet "nope"`},
		"stale":         {messages.NewCommand("docker", messages.CommandTick, e.now.Add(-11*time.Minute)), "is stale"},
		"future":        {messages.NewCommand("docker", messages.CommandTick, e.now.Add(10*time.Minute)), "in the future"},
	} {
		err := e.handle(tc.c, "AIDAEXAMPLE", "m-"+name)
		if !messages.IsPermanent(err) || !strings.Contains(messages.Reason(err), tc.want) {
			t.Errorf("%s: %v, want a rejection with %q", name, err, tc.want)
		}
	}
	if e.calls != 0 {
		t.Errorf("a refused command reached the handler %d times", e.calls)
	}
	if n := strings.Count(e.logs.String(), `"msg":"command refused"`); n != 3 {
		t.Errorf("%d refusal lines, want 3:\n%s", n, e.logs)
	}

	if err := e.handle(fresh, "AIDAALICE", "m-1"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(e.logs.String(), `"msg":"command accepted"`) || !strings.Contains(e.logs.String(), `"sender_id":"AIDAALICE"`) {
		t.Errorf("no audit line with the sender:\n%s", e.logs)
	}
	// The same SQS message redelivered is handled again; the same command in a new message is not.
	if err := e.handle(fresh, "AIDAALICE", "m-1"); err != nil {
		t.Errorf("redelivery: %v", err)
	}
	err := e.handle(fresh, "AIDAMALLORY", "m-2")
	if !messages.IsPermanent(err) || !strings.Contains(messages.Reason(err), "already accepted") {
		t.Errorf("repeat: %v", err)
	}
	if e.calls != 2 {
		t.Errorf("handler ran %d times, want 2", e.calls)
	}
}

func TestCommandSafetyLedgerFailureIsTransient(t *testing.T) {
	e := newSafetyEnv(t)
	e.ledger.fail = true
	err := e.handle(messages.NewCommand("docker", messages.CommandTick, e.now), "s", "m")
	if err == nil || messages.IsPermanent(err) || e.calls != 0 {
		t.Errorf("err %v, calls %d", err, e.calls)
	}
}

func TestCommandSafetyPassesOtherKinds(t *testing.T) {
	e := newSafetyEnv(t)
	h := e.mw(func(context.Context, *messages.Message) error { e.calls++; return nil })
	if err := h(context.Background(), &messages.Message{Kind: messages.KindScheduled, Payload: &messages.Scheduled{}}); err != nil || e.calls != 1 {
		t.Errorf("err %v, calls %d", err, e.calls)
	}
}

func TestCommandSafetyConfig(t *testing.T) {
	if _, err := CommandSafety(SafetyConfig{}, slog.New(slog.DiscardHandler)); err == nil ||
		!strings.Contains(err.Error(), "KnownFleet") || !strings.Contains(err.Error(), "Ledger") {
		t.Errorf("err = %v", err)
	}
}

type chanSub struct{ ch chan *message.Message }

func (s chanSub) Subscribe(context.Context, string) (<-chan *message.Message, error) {
	return s.ch, nil
}
func (s chanSub) Close() error { close(s.ch); return nil }

func TestWithSenderPutsTheOriginInTheContext(t *testing.T) {
	inner := chanSub{ch: make(chan *message.Message, 1)}
	sub, err := WithSender(inner)
	if err != nil {
		t.Fatal(err)
	}
	out, err := sub.Subscribe(context.Background(), "q")
	if err != nil {
		t.Fatal(err)
	}
	msg := message.NewMessage("u", []byte("{}"))
	msg.Metadata.Set(sqs.MetaSenderID, "AIDASENDER")
	msg.Metadata.Set(sqs.MetaMessageID, "mid-1")
	inner.ch <- msg
	got := <-out
	if o := OriginOf(got.Context()); o.SenderID != "AIDASENDER" || o.MessageID != "mid-1" {
		t.Errorf("origin = %+v", o)
	}
	got.Ack()
	_ = sub.Close()
	// Without the decorator: the message id from the log attributes, sender unknown.
	ctx := observe.WithAttrs(context.Background(), slog.String("message_id", "mid-2"))
	if o := OriginOf(ctx); o.SenderID != "unknown" || o.MessageID != "mid-2" {
		t.Errorf("fallback origin = %+v", o)
	}
}

// A refused command is in the ledger with its reason, whether these checks or its handler refused
// it, so publisher --wait can say so at once; a refused repeat leaves the original entry alone.
func TestRefusalsAreRecordedInTheLedger(t *testing.T) {
	e := newSafetyEnv(t)
	entry := func(id string) LedgerEntry {
		t.Helper()
		pk, sk := CommandKey(id)
		body, _, found, err := e.ledger.Load(context.Background(), pk, sk)
		if err != nil || !found {
			t.Fatalf("no ledger entry for %s: %v", id, err)
		}
		le, err := DecodeLedgerEntry(body)
		if err != nil {
			t.Fatal(err)
		}
		return le
	}
	unknown := messages.NewCommand("nope", messages.CommandTick, e.now)
	_ = e.handle(unknown, "AIDAALICE", "m-1")
	if le := entry(unknown.ID); !strings.Contains(le.Refused, `unknown fleet "nope"`) || le.RefusedAt.IsZero() {
		t.Errorf("unknown fleet: entry %+v", le)
	}

	busy := messages.NewCommand("docker", messages.CommandCycle, e.now)
	h := e.mw(func(context.Context, *messages.Message) error {
		return messages.Reject("cycle c0 of fleet docker is in progress")
	})
	ctx := context.WithValue(context.Background(), originKey{}, Origin{SenderID: "AIDAALICE", MessageID: "m-2"})
	if err := h(ctx, &messages.Message{Kind: messages.KindCommand, ID: busy.ID, Payload: &busy}); !messages.IsPermanent(err) {
		t.Fatalf("handler refusal: %v", err)
	}
	if le := entry(busy.ID); le.AcceptedAt.IsZero() || !strings.Contains(le.Refused, "is in progress") {
		t.Errorf("handler refusal: entry %+v", le)
	}

	ok := messages.NewCommand("docker", messages.CommandTick, e.now)
	if err := e.handle(ok, "AIDAALICE", "m-3"); err != nil {
		t.Fatal(err)
	}
	if err := e.handle(ok, "AIDAMALLORY", "m-4"); !messages.IsPermanent(err) {
		t.Fatalf("repeat: %v", err)
	}
	if le := entry(ok.ID); le.Refused != "" || le.MessageID != "m-3" {
		t.Errorf("the repeat's refusal overwrote the accepted command's entry: %+v", le)
	}
}
