package observe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnerfleet/runnerfleet/infra/netguard"
)

func TestContextAttrsOnEveryLine(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, slog.LevelDebug).With("component", "test")
	ctx := WithAttrs(context.Background(), slog.String("message_id", "m-1"), slog.String("kind", "command"))
	ctx = WithAttrs(ctx, slog.String("fleet", "blue"))
	log.InfoContext(ctx, "first")
	log.WarnContext(ctx, "second", "extra", 1)
	log.Info("no context attrs")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines, got %d: %s", len(lines), buf.String())
	}
	for i, line := range lines[:2] {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line %d is not JSON: %v", i, err)
		}
		for k, v := range map[string]string{"message_id": "m-1", "kind": "command", "fleet": "blue", "component": "test"} {
			if rec[k] != v {
				t.Errorf("line %d: %s = %v, want %q", i, k, rec[k], v)
			}
		}
	}
	if strings.Contains(lines[2], "message_id") {
		t.Errorf("a line without context carries context attrs: %s", lines[2])
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "INFO": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError} {
		got, err := ParseLevel(in)
		if err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Error("ParseLevel(loud) succeeded")
	}
}

func TestServer(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.Received.WithLabelValues("control", "command").Inc()
	m.ObserveLag("control", "command", time.Now().Add(-2*time.Second), time.Now())
	m.ObserveLag("control", "command", time.Time{}, time.Now()) // not recorded
	var failing atomic.Bool
	checks := map[string]Check{"queue control": func(context.Context) error {
		if failing.Load() {
			return errors.New("no answer")
		}
		return nil
	}}
	s, err := NewServer("127.0.0.1:0", reg, checks, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s.Serve()
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	client := netguard.HTTPClient(5 * time.Second)
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := client.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	if code, body := get("/readyz"); code != 200 {
		t.Errorf("/readyz = %d %s, want 200", code, body)
	}
	failing.Store(true)
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "no answer") {
		t.Errorf("/readyz with a failing check = %d %s, want 503 naming the failure", code, body)
	}
	failing.Store(false)
	s.SetStopping()
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz while stopping = %d %s", code, body)
	}
	_, metrics := get("/metrics")
	for _, want := range []string{
		`runnerfleet_messages_received_total{kind="command",queue="control"} 1`,
		`runnerfleet_event_lag_seconds_count{kind="command",queue="control"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
