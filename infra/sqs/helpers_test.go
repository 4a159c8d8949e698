package sqs_test

import (
	"context"
	"maps"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/runnerfleet/runnerfleet/infra/sqs"
)

// waitFor bounds how long a test waits for something the emulator should do; a test that hits it
// fails with what it was waiting for (it never passes because of it).
const waitFor = 30 * time.Second

func newSubscriber(tb testing.TB, cfg sqs.SubscriberConfig) *sqs.Subscriber {
	tb.Helper()
	s, err := sqs.NewSubscriber(cfg, sqsClient(), testLogger(tb))
	if err != nil {
		tb.Fatalf("new subscriber: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func newPublisher(tb testing.TB) *sqs.Publisher {
	tb.Helper()
	p, err := sqs.NewPublisher(sqs.PublisherConfig{}, sqsClient(), testLogger(tb))
	if err != nil {
		tb.Fatalf("new publisher: %v", err)
	}
	tb.Cleanup(func() { _ = p.Close() })
	return p
}

// next returns the next message from ch, failing the test after waitFor.
func next(tb testing.TB, ch <-chan *message.Message) *message.Message {
	tb.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			tb.Fatal("subscription channel closed while waiting for a message")
		}
		return m
	case <-time.After(waitFor):
		tb.Fatalf("no message within %s", waitFor)
	}
	return nil
}

// queueCounts returns the visible and in-flight message counts of a queue.
func queueCounts(tb testing.TB, url string) (visible, inFlight, delayed int) {
	tb.Helper()
	out, err := sqsClient().GetQueueAttributes(context.Background(), &awssqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			types.QueueAttributeNameApproximateNumberOfMessagesDelayed,
		},
	})
	if err != nil {
		tb.Fatalf("queue attributes of %s: %v", url, err)
	}
	n := func(k types.QueueAttributeName) int {
		v, _ := strconv.Atoi(out.Attributes[string(k)])
		return v
	}
	return n(types.QueueAttributeNameApproximateNumberOfMessages),
		n(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible),
		n(types.QueueAttributeNameApproximateNumberOfMessagesDelayed)
}

func assertQueueEmpty(tb testing.TB, url string) {
	tb.Helper()
	v, f, d := queueCounts(tb, url)
	if v+f+d != 0 {
		tb.Errorf("queue %s: %d visible, %d in flight, %d delayed; want it empty", url, v, f, d)
	}
}

// recorder collects what a handler saw, race-safely.
type recorder struct {
	mu   sync.Mutex
	seen []seen
}

type seen struct {
	uuid, body string
	count      int
	at         time.Time
	md         message.Metadata
}

func (r *recorder) add(m *message.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, seen{uuid: m.UUID, body: string(m.Payload), count: sqs.ReceiveCount(m), at: time.Now(), md: maps.Clone(m.Metadata)})
}

func (r *recorder) all() []seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seen(nil), r.seen...)
}

func msgWith(payload string, md map[string]string) *message.Message {
	m := message.NewMessage(payload+"-uuid", []byte(payload))
	for k, v := range md {
		m.Metadata.Set(k, v)
	}
	return m
}
