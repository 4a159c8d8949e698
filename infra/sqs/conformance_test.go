package sqs_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/runnerfleet/runnerfleet/infra/sqs"
)

// fullConformance runs Watermill's suite at full size (RUNNERFLEET_FULL_CONFORMANCE=1, with
// -run Conformance); otherwise it runs in its short mode. At full size, three of the suite's
// tests push 5,000-10,000 messages, which moto (linear scans per delete and per FIFO dedup)
// handles at tens of messages per second: expect the full run to take very long on the emulator.
var fullConformance = os.Getenv("RUNNERFLEET_FULL_CONFORMANCE") == "1"

// conformanceSubscriberConfig: short close timeout, because the suite waits at most 15 s for the
// context of a message that is never acked to end after Close.
var conformanceSubscriberConfig = sqs.SubscriberConfig{WaitTime: time.Second, CloseTimeout: 2 * time.Second}

// Watermill's own conformance suite on standard queues. Claimed features: Persistent (messages
// outlive subscribers). Not claimed: GuaranteedOrder, ExactlyOnceDelivery, ConsumerGroups,
// NewSubscriberReceivesOldMessages (an SQS queue is one consumer group; deletes are final).
func TestConformanceStandard(t *testing.T) {
	t.Parallel()
	features := tests.Features{
		Persistent: true,
		ForceShort: !fullConformance,
	}
	tests.TestPubSub(t, features, conformancePubSub(false), nil)
}

// The suite on FIFO queues, with each message's payload as its message group (the suite's
// ordered test publishes 16 interleaved sequences keyed by payload) and its UUID as deduplication
// id. Claimed: Persistent, GuaranteedOrder (per message group), checked with a single subscriber
// (see below).
func TestConformanceFIFO(t *testing.T) {
	t.Parallel()
	features := tests.Features{
		Persistent:      true,
		GuaranteedOrder: true,
		// moto's ReceiveMessage snapshots the FIFO groups in flight before it marks any message,
		// without a lock, so two concurrent receivers can each get a message of the same group
		// (real SQS cannot). Our Subscribe runs one receive loop per call, so with a single
		// subscriber the order holds; concurrent subscribers are verified against real SQS only.
		GuaranteedOrderWithSingleSubscriber: true,
		ForceShort:                          !fullConformance,
	}
	tests.TestPubSub(t, features, conformancePubSub(true), nil)
}

func conformancePubSub(fifo bool) tests.PubSubConstructor {
	return func(t *testing.T) (message.Publisher, message.Subscriber) {
		pub, err := sqs.NewPublisher(sqs.PublisherConfig{}, sqsClient(), testLogger(t))
		if err != nil {
			t.Fatalf("publisher: %v", err)
		}
		sub, err := sqs.NewSubscriber(conformanceSubscriberConfig, sqsClient(), testLogger(t))
		if err != nil {
			t.Fatalf("subscriber: %v", err)
		}
		// Some of the suite's tests never close what they make (the multiplied subscribers of
		// the ordered test); close everything when the test ends so goleak sees what we leak.
		t.Cleanup(func() {
			_ = sub.Close()
			_ = pub.Close()
		})
		return &suitePublisher{Publisher: pub, fifo: fifo}, &suiteSubscriber{Subscriber: sub, fifo: fifo}
	}
}

// suiteQueue maps the suite's topic names to queue names (FIFO queue names end in .fifo).
func suiteQueue(topic string, fifo bool) string {
	if fifo && !strings.HasSuffix(topic, ".fifo") {
		return topic + ".fifo"
	}
	return topic
}

// suiteSubscriber creates the suite's queues (our transport never creates queues: stacks do).
type suiteSubscriber struct {
	*sqs.Subscriber
	fifo bool
}

func (s *suiteSubscriber) SubscribeInitialize(topic string) error {
	attrs := map[string]string{}
	if s.fifo {
		attrs["FifoQueue"] = "true"
	}
	_, err := sqsClient().CreateQueue(context.Background(), &awssqs.CreateQueueInput{
		QueueName: aws.String(suiteQueue(topic, s.fifo)), Attributes: attrs,
	})
	return err
}

func (s *suiteSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	return s.Subscriber.Subscribe(ctx, suiteQueue(topic, s.fifo))
}

type suitePublisher struct {
	*sqs.Publisher
	fifo bool
}

func (p *suitePublisher) Publish(topic string, msgs ...*message.Message) error {
	if p.fifo {
		for _, m := range msgs {
			m.Metadata.Set(sqs.MetaGroupID, string(m.Payload))
			m.Metadata.Set(sqs.MetaDedupID, m.UUID)
		}
	}
	return p.Publisher.Publish(suiteQueue(topic, p.fifo), msgs...)
}
