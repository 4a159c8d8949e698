package sqs_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/runnerfleet/runnerfleet/infra/sqs"
)

// Throughput benchmark settings: both consumers use the same batch size and concurrency.
const (
	benchMessages    = 200
	benchBatch       = 10
	benchConcurrency = 10
)

// BenchmarkThroughput measures the transport (Subscriber, handler acking at once) against its
// floor, a bare ReceiveMessage/DeleteMessage loop with the same batch size and concurrency, on
// queues pre-filled with the same number of messages, in the same run. It reports both rates and
// transport/bare as "ratio" (goal: >= 0.8), with one receive loop (the floor's shape: batches of
// 10) and with the default two loops (batches of 5 each, the slots shared).
func BenchmarkThroughput(b *testing.B) {
	for _, receivers := range []int{1, sqs.DefaultReceivers} {
		b.Run(fmt.Sprintf("receivers=%d", receivers), func(b *testing.B) { benchThroughput(b, receivers) })
	}
}

func benchThroughput(b *testing.B, receivers int) {
	var bare, transport time.Duration
	for i := 0; i < b.N; i++ {
		// Two rounds, each order once, so a slower emulator late in an iteration hurts neither
		// side (make bench runs a single iteration).
		for round := range 2 {
			b.StopTimer()
			qBare, qTransport := createQueue(b, false, nil), createQueue(b, false, nil)
			fill(b, qBare, benchMessages)
			fill(b, qTransport, benchMessages)
			b.StartTimer()
			if round == 0 {
				bare += consumeBare(b, qBare)
				transport += consumeTransport(b, qTransport, receivers)
			} else {
				transport += consumeTransport(b, qTransport, receivers)
				bare += consumeBare(b, qBare)
			}
		}
	}
	total := float64(2 * benchMessages * b.N)
	bareRate, transportRate := total/bare.Seconds(), total/transport.Seconds()
	b.ReportMetric(bareRate, "bare_msgs/s")
	b.ReportMetric(transportRate, "transport_msgs/s")
	b.ReportMetric(transportRate/bareRate, "ratio")
}

func fill(tb testing.TB, url string, n int) {
	tb.Helper()
	client := sqsClient()
	var wg sync.WaitGroup
	errs := make(chan error, n/benchBatch+1)
	for start := 0; start < n; start += benchBatch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := &awssqs.SendMessageBatchInput{QueueUrl: aws.String(url)}
			for j := start; j < min(start+benchBatch, n); j++ {
				in.Entries = append(in.Entries, types.SendMessageBatchRequestEntry{
					Id: aws.String(fmt.Sprint(j)), MessageBody: aws.String(fmt.Sprintf(`{"n":%d}`, j)),
				})
			}
			out, err := client.SendMessageBatch(context.Background(), in)
			if err == nil && len(out.Failed) > 0 {
				err = fmt.Errorf("%d failed", len(out.Failed))
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatalf("filling %s: %v", url, err)
	}
}

// consumeBare receives batches and deletes each batch's messages concurrently until every
// message is deleted.
func consumeBare(tb testing.TB, url string) time.Duration {
	tb.Helper()
	client := sqsClient()
	ctx := context.Background()
	start := time.Now()
	sem := make(chan struct{}, benchConcurrency)
	var deleted atomic.Int64
	var wg sync.WaitGroup
	for deleted.Load() < benchMessages {
		out, err := client.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: benchBatch, WaitTimeSeconds: 1, VisibilityTimeout: 30,
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		})
		if err != nil {
			tb.Fatalf("bare receive: %v", err)
		}
		for _, m := range out.Messages {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if _, err := client.DeleteMessage(ctx, &awssqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle}); err != nil {
					tb.Errorf("bare delete: %v", err)
					return
				}
				deleted.Add(1)
			}()
		}
		wg.Wait()
	}
	return time.Since(start)
}

// consumeTransport runs a Subscriber whose handler acks at once, until every message is deleted
// (counted at the client, so the time includes the last DeleteMessage).
func consumeTransport(tb testing.TB, url string, receivers int) time.Duration {
	tb.Helper()
	client := &countingClient{Client: sqsClient(), target: benchMessages, done: make(chan struct{})}
	sub, err := sqs.NewSubscriber(sqs.SubscriberConfig{
		WaitTime: time.Second, BatchSize: benchBatch, MaxInFlight: benchConcurrency, Receivers: receivers,
	}, client, testLogger(tb))
	if err != nil {
		tb.Fatalf("subscriber: %v", err)
	}
	start := time.Now()
	ch, err := sub.Subscribe(context.Background(), url)
	if err != nil {
		tb.Fatalf("subscribe: %v", err)
	}
	go func() {
		for m := range ch {
			m.Ack()
		}
	}()
	select {
	case <-client.done:
	case <-time.After(2 * time.Minute):
		tb.Fatalf("transport deleted %d of %d messages in 2m", client.deleted.Load(), benchMessages)
	}
	elapsed := time.Since(start)
	if err := sub.Close(); err != nil {
		tb.Fatalf("close: %v", err)
	}
	return elapsed
}

// countingClient counts successful deletes (single and batched) and signals when target is
// reached.
type countingClient struct {
	*awssqs.Client
	target  int64
	deleted atomic.Int64
	done    chan struct{}
}

func (c *countingClient) DeleteMessage(ctx context.Context, in *awssqs.DeleteMessageInput, optFns ...func(*awssqs.Options)) (*awssqs.DeleteMessageOutput, error) {
	out, err := c.Client.DeleteMessage(ctx, in, optFns...)
	if err == nil && c.deleted.Add(1) == c.target {
		close(c.done)
	}
	return out, err
}

func (c *countingClient) DeleteMessageBatch(ctx context.Context, in *awssqs.DeleteMessageBatchInput, optFns ...func(*awssqs.Options)) (*awssqs.DeleteMessageBatchOutput, error) {
	out, err := c.Client.DeleteMessageBatch(ctx, in, optFns...)
	if err == nil {
		for range out.Successful {
			if c.deleted.Add(1) == c.target {
				close(c.done)
			}
		}
	}
	return out, err
}
