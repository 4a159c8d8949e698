package aws

import (
	"context"
	"errors"
	"fmt"
	"testing"

	smithy "github.com/aws/smithy-go"
)

// Throttling and refused permissions are told apart from each other and from the rest, wrapped
// or not: callers use them to say a failure was their own (their rate, their role), not the
// resource's.
func TestIsThrottleAndIsAccessDenied(t *testing.T) {
	api := func(code string) error {
		return fmt.Errorf("describing instance i-1: %w", &smithy.GenericAPIError{Code: code, Message: "x"})
	}
	for name, tc := range map[string]struct {
		err              error
		throttle, denied bool
	}{
		"EC2 RequestLimitExceeded":  {api("RequestLimitExceeded"), true, false},
		"Throttling":                {api("Throttling"), true, false},
		"ThrottlingException":       {api("ThrottlingException"), true, false},
		"AccessDenied":              {api("AccessDenied"), false, true},
		"AccessDeniedException":     {api("AccessDeniedException"), false, true},
		"EC2 UnauthorizedOperation": {api("UnauthorizedOperation"), false, true},
		"EC2 AuthFailure":           {api("AuthFailure"), false, true},
		"ExpiredToken":              {api("ExpiredToken"), false, true},
		"not found":                 {api("InvalidInstanceID.NotFound"), false, false},
		"internal error":            {api("InternalError"), false, false},
		"deadline":                  {context.DeadlineExceeded, false, false},
		"plain":                     {errors.New("Throttling"), false, false},
		"nil":                       {nil, false, false},
	} {
		if got := IsThrottle(tc.err); got != tc.throttle {
			t.Errorf("%s: IsThrottle = %v, want %v", name, got, tc.throttle)
		}
		if got := IsAccessDenied(tc.err); got != tc.denied {
			t.Errorf("%s: IsAccessDenied = %v, want %v", name, got, tc.denied)
		}
	}
}
