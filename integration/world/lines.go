package world

import (
	"strings"
	"sync"
	"testing"
)

// Lines keeps the log lines of the workers a test runs, so that a failing test can print the
// ones about its victim whether or not it ran with -v. Safe for concurrent use.
type Lines struct {
	mu    sync.Mutex
	lines []string
}

// Writer returns an io.Writer for a slog handler: each line is kept, and passed to t's log in
// -v runs.
func (l *Lines) Writer(t testing.TB) *LinesWriter { return &LinesWriter{t: t, keep: l} }

// Mentioning returns the kept lines that contain any of words, in order.
func (l *Lines) Mentioning(words ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.lines {
		for _, w := range words {
			if strings.Contains(line, w) {
				out = append(out, line)
				break
			}
		}
	}
	return out
}

func (l *Lines) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
}

// LinesWriter is the io.Writer of Lines.Writer.
type LinesWriter struct {
	t    testing.TB
	keep *Lines
}

func (w *LinesWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	w.keep.add(line)
	if testing.Verbose() {
		w.t.Log(line)
	}
	return len(p), nil
}
