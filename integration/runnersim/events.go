package runnersim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/runnerfleet/runnerfleet/infra/netguard"
)

// eventBuffer bounds transitions waiting for delivery; emit blocks beyond it (the sender never
// takes the simulator's lock, so it always drains).
const eventBuffer = 8192

// emitter posts transitions, in the order they happened, to the emulator's log
// (POST {emulator}/_runnerfleet/log, one JSON event per request). One goroutine delivers them
// so the emulator receives them in order.
type emitter struct {
	logger *slog.Logger
	client *http.Client

	mu  sync.Mutex
	url string

	ch        chan event
	startOnce sync.Once
	closeOnce sync.Once
	stopped   chan struct{}
}

type event struct {
	body []byte
	done chan struct{} // closed once delivered (or given up)
}

func newEmitter(url string, logger *slog.Logger) *emitter {
	return &emitter{
		logger:  logger,
		client:  netguard.HTTPClient(eventTimeout),
		url:     strings.TrimRight(url, "/"),
		ch:      make(chan event, eventBuffer),
		stopped: make(chan struct{}),
	}
}

func (e *emitter) setURL(u string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.url = strings.TrimRight(u, "/")
}

func (e *emitter) target() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.url
}

func (e *emitter) start() {
	e.startOnce.Do(func() { go e.run() })
}

// emit queues one transition and returns a channel closed once it was delivered. Called with the
// simulator's lock held, so the queue order is the order of the transitions.
func (e *emitter) emit(kind string, fields map[string]any) <-chan struct{} {
	fields["kind"] = kind
	body, err := json.Marshal(fields)
	done := make(chan struct{})
	if err != nil {
		e.logger.Error("encoding a transition", "kind", kind, "err", err)
		close(done)
		return done
	}
	e.logger.Debug("transition", "event", string(body))
	select {
	case <-e.stopped:
		close(done)
	case e.ch <- event{body: body, done: done}:
	}
	return done
}

func (e *emitter) run() {
	for {
		select {
		case <-e.stopped:
			e.drainUndelivered()
			return
		case ev := <-e.ch:
			e.deliver(ev)
		}
	}
}

func (e *emitter) drainUndelivered() {
	for {
		select {
		case ev := <-e.ch:
			close(ev.done)
		default:
			return
		}
	}
}

// deliver posts one event, retrying once; the log is a test aid, so a lost event is logged, not
// fatal.
func (e *emitter) deliver(ev event) {
	defer close(ev.done)
	url := e.target()
	if url == "" {
		return
	}
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		if lastErr = e.post(url+"/_runnerfleet/log", ev.body); lastErr == nil {
			return
		}
	}
	e.logger.Warn("posting a transition to the emulator log", "err", lastErr, "event", string(ev.body))
}

func (e *emitter) post(url string, body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), eventTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		return fmt.Errorf("posting to %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("posting to %s: status %d", url, resp.StatusCode)
	}
	return nil
}

// close stops delivery; undelivered events are dropped.
func (e *emitter) close() {
	e.closeOnce.Do(func() { close(e.stopped) })
}
