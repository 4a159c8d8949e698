package marks

import (
	"context"
	"fmt"

	"github.com/runnerfleet/runnerfleet/handlers/interrupt"
	rfaws "github.com/runnerfleet/runnerfleet/infra/aws"
)

// Sender sends an SSM document to an instance (infra/aws/runcmd.Runner).
type Sender interface {
	Send(ctx context.Context, document, instanceID string) (string, error)
}

// Commands is the interrupt handler's Commands over runcmd: SSM's InvalidInstanceId (the
// instance is shutting down or terminated, or its agent never registered) wraps
// interrupt.ErrUnreachable, so a notice for such an instance is recorded, not retried until its
// message reaches the DLQ.
type Commands struct{ Sender Sender }

// Send sends document to instanceID.
func (c Commands) Send(ctx context.Context, document, instanceID string) (string, error) {
	id, err := c.Sender.Send(ctx, document, instanceID)
	if err != nil && rfaws.IsNotFound(err) {
		return "", fmt.Errorf("%w: %w", interrupt.ErrUnreachable, err)
	}
	return id, err
}
