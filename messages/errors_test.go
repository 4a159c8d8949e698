package messages_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/runnerfleet/runnerfleet/messages"
)

func TestPermanentErrors(t *testing.T) {
	t.Parallel()
	cause := errors.New("no such fleet")
	rejected := messages.Reject("command for fleet %q: %w", "nope", cause)
	wrapped := fmt.Errorf("handling command: %w", rejected)
	invalid := &messages.InvalidError{Reason: `field "fleet" is missing`}
	transient := fmt.Errorf("describing group: %w", context.DeadlineExceeded)

	tests := []struct {
		name      string
		err       error
		permanent bool
		reason    string
	}{
		{"reject", rejected, true, `command for fleet "nope": no such fleet`},
		{"wrapped reject", wrapped, true, `command for fleet "nope": no such fleet`},
		{"invalid", invalid, true, `field "fleet" is missing`},
		{"wrapped invalid", fmt.Errorf("parsing: %w", invalid), true, `field "fleet" is missing`},
		{"transient", transient, false, "describing group: context deadline exceeded"},
		{"unknown kind", messages.ErrUnknownKind, false, messages.ErrUnknownKind.Error()},
		{"nil", nil, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := messages.IsPermanent(tt.err); got != tt.permanent {
				t.Errorf("IsPermanent = %v, want %v", got, tt.permanent)
			}
			if got := messages.Reason(tt.err); got != tt.reason {
				t.Errorf("Reason = %q, want %q", got, tt.reason)
			}
		})
	}
	if !errors.Is(wrapped, cause) {
		t.Error("Reject does not keep the %w cause")
	}
}
