package drain

import (
	"context"
	"testing"
	"time"
)

// A step resumed after its lease fence must not make its side-effecting call, even when the
// timer that cancels its context has not fired yet (the SIGSTOP case).
func TestFencedReadsTheDeadlineNotOnlyTheTimer(t *testing.T) {
	live, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if fenced(live) {
		t.Error("a context an hour from its deadline is fenced")
	}
	// A deadline in the past whose cancellation has not been observed: ctx.Err() may still be
	// nil for a moment, and fenced must say true regardless.
	past := deadlineOnly{deadline: time.Now().Add(-time.Millisecond)}
	if past.Err() != nil {
		t.Fatal("test context reports an error; it must look un-cancelled")
	}
	if !fenced(past) {
		t.Error("a context past its deadline, not yet cancelled, is not fenced")
	}
	cancelled, cancelNow := context.WithCancel(context.Background())
	cancelNow()
	if !fenced(cancelled) {
		t.Error("a cancelled context is not fenced")
	}
}

// deadlineOnly is a context whose deadline has passed but which was never cancelled: what a
// step's context looks like in the instant after SIGCONT, before the runtime fires its timer.
type deadlineOnly struct {
	context.Context
	deadline time.Time
}

func (d deadlineOnly) Deadline() (time.Time, bool) { return d.deadline, true }
func (d deadlineOnly) Err() error                  { return nil }
func (d deadlineOnly) Done() <-chan struct{}       { return nil }
func (d deadlineOnly) Value(any) any               { return nil }
