// Package observe holds the worker's observability plumbing: a slog handler that adds the
// attributes a context carries (so every line of one message's handling names the message), the
// Prometheus metrics of message handling, and the HTTP server of /metrics, /healthz and /readyz.
package observe

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

type attrsKey struct{}

// WithAttrs returns a context that carries attrs after those ctx already carries. Every record
// logged with a ...Context(ctx) method through a logger from NewLogger (or any handler wrapped by
// NewContextHandler) carries them. Handlers therefore only need a *slog.Logger and ctx.
func WithAttrs(ctx context.Context, attrs ...slog.Attr) context.Context {
	if len(attrs) == 0 {
		return ctx
	}
	prev := Attrs(ctx)
	all := make([]slog.Attr, 0, len(prev)+len(attrs))
	all = append(append(all, prev...), attrs...)
	return context.WithValue(ctx, attrsKey{}, all)
}

// Attrs returns the attributes ctx carries (nil when none). The slice must not be modified.
func Attrs(ctx context.Context) []slog.Attr {
	if ctx == nil {
		return nil
	}
	a, _ := ctx.Value(attrsKey{}).([]slog.Attr)
	return a
}

// ContextHandler is a slog.Handler that adds the attributes of the record's context (see
// WithAttrs) before passing the record on. Context attributes land at the top level of the
// record, except under groups opened with WithGroup on the logger.
type ContextHandler struct {
	inner slog.Handler
}

// NewContextHandler wraps inner so that records carry their context's attributes.
func NewContextHandler(inner slog.Handler) *ContextHandler { return &ContextHandler{inner: inner} }

// Enabled reports whether the inner handler handles records at level.
func (h *ContextHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

// Handle adds the context's attributes to r and hands it to the inner handler.
func (h *ContextHandler) Handle(ctx context.Context, r slog.Record) error {
	if attrs := Attrs(ctx); len(attrs) > 0 {
		r = r.Clone()
		r.AddAttrs(attrs...)
	}
	return h.inner.Handle(ctx, r)
}

// WithAttrs returns a ContextHandler over the inner handler with attrs.
func (h *ContextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &ContextHandler{inner: h.inner.WithAttrs(attrs)}
}

// WithGroup returns a ContextHandler over the inner handler with the group opened.
func (h *ContextHandler) WithGroup(name string) slog.Handler {
	return &ContextHandler{inner: h.inner.WithGroup(name)}
}

// NewLogger returns a JSON logger writing to w at level, whose records carry their context's
// attributes.
func NewLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(NewContextHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})))
}

// ParseLevel parses "debug", "info", "warn" or "error" (any case).
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.TrimSpace(s))); err != nil {
		return 0, fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}
