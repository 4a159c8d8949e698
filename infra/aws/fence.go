package aws

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/smithy-go/middleware"
)

// fenceID names the deadline fence in every client's middleware stack.
const fenceID = "RunnerFleetDeadlineFence"

// addDeadlineFence puts the deadline fence last in the stack's Deserialize step, right before
// the request is handed to the HTTP client (after retries, signing and serialization).
func addDeadlineFence(stack *middleware.Stack) error {
	return stack.Deserialize.Add(middleware.DeserializeMiddlewareFunc(fenceID, deadlineFence), middleware.After)
}

// deadlineFence refuses to send a request once its context's deadline has passed, read on the
// monotonic clock. A context's deadline is delivered by a timer; after the process was paused
// (SIGSTOP, a long stall) past the deadline, a goroutine can resume before that timer fires and
// find ctx.Done() still open, and the SDK would send. The drain and the other state machines set
// each step's deadline before its lease ends, so a call sent late could repeat a step another
// replica has taken since; AWS offers no fencing token for SendCommand or
// CompleteLifecycleAction. Checking here leaves only the instant between this check and the
// write to the socket.
func deadlineFence(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return middleware.DeserializeOutput{}, middleware.Metadata{},
			fmt.Errorf("not sent: the call's deadline passed %s ago: %w", time.Since(d).Round(time.Millisecond), context.DeadlineExceeded)
	}
	return next.HandleDeserialize(ctx, in)
}
