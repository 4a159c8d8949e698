// Package drainadapter holds the drain handler's adapters that are neither an AWS client
// (infra/aws/*) nor the SQS transport (infra/sqs): its follow-ups, published on the lifecycle
// queue, and an instance's busy jobs, read from its runner's metrics. The worker (cmd/worker) and
// the drain integration worker (integration/drain/worker) both wire the drain handler with them.
package drainadapter

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/runnerfleet/runnerfleet/handlers/drain"
	"github.com/runnerfleet/runnerfleet/infra/scrape"
	"github.com/runnerfleet/runnerfleet/infra/sqs"
	"github.com/runnerfleet/runnerfleet/messages"
)

// FollowUps publishes a drain's next step as a DrainStep message (messages.DrainStep.Marshal) on
// queue, the lifecycle queue's name or URL, delayed by the step's delay rounded up to whole
// seconds (SQS's unit; at most sqs.MaxDelaySeconds, no delay metadata when it rounds to 0). Each
// message gets a fresh Watermill UUID. Errors say whether encoding or publishing failed.
func FollowUps(pub message.Publisher, queue string) drain.FollowUps {
	return drain.FollowUpsFunc(func(_ context.Context, s messages.DrainStep, delay time.Duration) error {
		body, err := s.Marshal()
		if err != nil {
			return fmt.Errorf("encoding a drain follow-up: %w", err)
		}
		msg := message.NewMessage(s.ID, body)
		if msg.UUID == "" {
			msg.UUID = messages.NewID()
		}
		sqs.SetDelay(msg, delay)
		if err := pub.Publish(queue, msg); err != nil {
			return fmt.Errorf("publishing a drain follow-up to %s: %w", queue, err)
		}
		return nil
	})
}

// BusyJobs scrapes one instance's runner metrics from the URL urlTemplate gives for target and
// returns the jobs occupying its slots. When the metrics did not answer usefully it returns an
// error naming the instance and the scrape's reason — never a count of 0, which would read as
// idle.
func BusyJobs(ctx context.Context, s *scrape.Scraper, urlTemplate string, target scrape.Target) (int, error) {
	res, err := s.Scrape(ctx, urlTemplate, []scrape.Target{target})
	if err != nil {
		return 0, err
	}
	if len(res) != 1 || !res[0].Known {
		reason := "no result"
		if len(res) == 1 {
			reason = string(res[0].Reason)
		}
		return 0, fmt.Errorf("runner metrics of %s: %s", target.InstanceID, reason)
	}
	return res[0].BusyJobs, nil
}
