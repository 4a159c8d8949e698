package lifecycle

import (
	"errors"
	"fmt"
	"testing"

	"github.com/aws/smithy-go"
)

// An action that can no longer be completed or heartbeated reads as gone, not as a failure to
// retry: not pending any more, its group deleted, or its hook deleted. Other validation errors
// and other codes stay errors.
func TestNoAction(t *testing.T) {
	api := func(code, msg string) error {
		return fmt.Errorf("operation error Auto Scaling: CompleteLifecycleAction: %w", &smithy.GenericAPIError{Code: code, Message: msg})
	}
	for _, c := range []struct {
		err  error
		gone bool
	}{
		{api("ValidationError", "No active Lifecycle Action found with token 5e2b"), true},
		{api("ValidationError", "No active Lifecycle Action found with instance ID i-0123"), true},
		{api("ValidationError", "AutoScalingGroup name not found - AutoScalingGroup runnerfleet-blue not found"), true},
		{api("ValidationError", "No Lifecycle Hook found with name runnerfleet-drain"), true},
		{api("ValidationError", "1 validation error detected: Value at 'lifecycleActionResult' failed to satisfy constraint"), false},
		{api("Throttling", "Rate exceeded"), false},
		{errors.New("connection reset"), false},
	} {
		if got := noAction(c.err); got != c.gone {
			t.Errorf("noAction(%v) = %v, want %v", c.err, got, c.gone)
		}
	}
}
