package marks

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/runnerfleet/runnerfleet/infra/sqs"
	"github.com/runnerfleet/runnerfleet/messages"
)

// LaunchFollowUps publishes a launch gate's follow-up — the launch lifecycle event itself, with
// its id given by the gate — to the lifecycle queue, delayed (rounded up to whole seconds, at
// most SQS's 900). It satisfies handlers/launch.FollowUps.
type LaunchFollowUps struct {
	Publisher message.Publisher
	// Queue is the lifecycle queue's name or URL.
	Queue string
}

// Schedule publishes env delayed by delay.
func (f LaunchFollowUps) Schedule(_ context.Context, env messages.Envelope, delay time.Duration) error {
	body, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("encoding launch follow-up: %w", err)
	}
	msg := message.NewMessage(messages.NewID(), body)
	sqs.SetDelay(msg, delay)
	if err := f.Publisher.Publish(f.Queue, msg); err != nil {
		return fmt.Errorf("publishing launch follow-up: %w", err)
	}
	return nil
}
