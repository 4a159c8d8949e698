package sqs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// fakeQueue is a race-safe queueAPI fake: it hands out the batches it was given (at most the
// MaxNumberOfMessages asked for; the rest of a batch comes with the next receive), then empty
// receives, and records deletes and visibility changes by receipt handle.
type fakeQueue struct {
	mu         sync.Mutex
	batches    [][]types.Message
	deleted    []string
	visibility map[string][]int32
	failDelete map[string]bool // receipt handles whose DeleteMessage fails
	failRenew  bool            // every ChangeMessageVisibility fails
	// batchDeletes is the size of each DeleteMessageBatch call; singleDeletes counts the
	// DeleteMessage calls; deleteDelay slows both (a delete in flight while more acks arrive).
	batchDeletes  []int
	singleDeletes int
	deleteDelay   time.Duration
	asked         []int32 // MaxNumberOfMessages of each receive that returned messages
}

func (f *fakeQueue) GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, _ ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error) {
	return &sqs.GetQueueUrlOutput{QueueUrl: aws.String("https://sqs.local/1/" + aws.ToString(in.QueueName))}, nil
}

func (f *fakeQueue) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	f.mu.Lock()
	if len(f.batches) > 0 {
		f.asked = append(f.asked, in.MaxNumberOfMessages)
		b := f.batches[0]
		if n := int(in.MaxNumberOfMessages); len(b) > n {
			f.batches[0] = b[n:]
			b = b[:n]
		} else {
			f.batches = f.batches[1:]
		}
		f.mu.Unlock()
		return &sqs.ReceiveMessageOutput{Messages: b}, nil
	}
	f.mu.Unlock()
	select { // a short long poll
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(20 * time.Millisecond):
	}
	return &sqs.ReceiveMessageOutput{}, nil
}

func (f *fakeQueue) DeleteMessageBatch(_ context.Context, in *sqs.DeleteMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	time.Sleep(f.deleteDelay)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batchDeletes = append(f.batchDeletes, len(in.Entries))
	out := &sqs.DeleteMessageBatchOutput{}
	for _, e := range in.Entries {
		if f.failDelete[aws.ToString(e.ReceiptHandle)] {
			out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("ReceiptHandleIsInvalid"), SenderFault: true})
			continue
		}
		f.deleted = append(f.deleted, aws.ToString(e.ReceiptHandle))
		out.Successful = append(out.Successful, types.DeleteMessageBatchResultEntry{Id: e.Id})
	}
	return out, nil
}

func (f *fakeQueue) DeleteMessage(_ context.Context, in *sqs.DeleteMessageInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error) {
	time.Sleep(f.deleteDelay)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.singleDeletes++
	if f.failDelete[aws.ToString(in.ReceiptHandle)] {
		return nil, errors.New("ReceiptHandleIsInvalid")
	}
	f.deleted = append(f.deleted, aws.ToString(in.ReceiptHandle))
	return &sqs.DeleteMessageOutput{}, nil
}

func (f *fakeQueue) ChangeMessageVisibility(_ context.Context, in *sqs.ChangeMessageVisibilityInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.visibility == nil {
		f.visibility = map[string][]int32{}
	}
	r := aws.ToString(in.ReceiptHandle)
	f.visibility[r] = append(f.visibility[r], in.VisibilityTimeout)
	if f.failRenew {
		return nil, errors.New("fake: ServiceUnavailable")
	}
	return &sqs.ChangeMessageVisibilityOutput{}, nil
}

func (f *fakeQueue) state() (deleted []string, visibility map[string][]int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := map[string][]int32{}
	for k, s := range f.visibility {
		v[k] = slices.Clone(s)
	}
	return slices.Clone(f.deleted), v
}

func fifoMessage(id, group string) types.Message {
	return types.Message{
		MessageId: aws.String(id), ReceiptHandle: aws.String("rh-" + id), Body: aws.String(id),
		Attributes: map[string]string{"MessageGroupId": group, "ApproximateReceiveCount": "1"},
	}
}

// A FIFO queue is asked for one message per receive, whatever the batch size: asked for more, SQS
// returns several messages of one group together, and when the first failed the rest had to be
// released unhandled, each such receive counting toward their maxReceiveCount (five failures of
// one message took the messages behind it to the DLQ). A nack still gets the backoff, an ack the
// delete; SQS itself holds a group back while one of its messages is in flight (the emulator test
// TestFIFOGroupInOrderAfterNack checks the order and the receive counts).
func TestFIFOAsksForOneMessageAtATime(t *testing.T) {
	q := &fakeQueue{batches: [][]types.Message{{
		fifoMessage("g1", "g"), fifoMessage("h1", "h"), fifoMessage("k1", "k"),
	}}}
	s, err := NewSubscriber(SubscriberConfig{WaitTime: time.Second, BatchSize: 10, MaxInFlight: 10, NackBackoff: 7 * time.Second, CloseTimeout: time.Second},
		q, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ch, err := s.Subscribe(context.Background(), "control.fifo")
	if err != nil {
		t.Fatal(err)
	}
	var delivered []string
	deadline := time.After(5 * time.Second)
	for len(delivered) < 3 {
		select {
		case m := <-ch:
			delivered = append(delivered, string(m.Payload))
			if m.Metadata.Get(MetaGroupID) == "g" {
				m.Nack()
			} else {
				m.Ack()
			}
		case <-deadline:
			t.Fatalf("delivered only %v", delivered)
		}
	}
	// g1's nack is settled before Close: one settled while closing goes back at once instead.
	for {
		if _, vis := q.state(); len(vis["rh-g1"]) > 0 {
			break
		}
		select {
		case <-deadline:
			t.Fatal("g1's nack never released it")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	q.mu.Lock()
	asked := slices.Clone(q.asked)
	q.mu.Unlock()
	if !slices.Equal(asked, []int32{1, 1, 1}) {
		t.Errorf("receives asked for %v messages, want one at a time", asked)
	}
	deleted, vis := q.state()
	slices.Sort(deleted)
	if !slices.Equal(deleted, []string{"rh-h1", "rh-k1"}) {
		t.Errorf("deleted %v, want h1 and k1", deleted)
	}
	if !slices.Equal(vis["rh-g1"], []int32{7}) || len(vis["rh-h1"]) != 0 || len(vis["rh-k1"]) != 0 {
		t.Errorf("visibility changes %v: want only g1's nack backoff", vis)
	}
}

// Close gives a handler CloseTimeout, then releases what it still holds (visibility 0) and
// cancels the message context; messages never delivered are released at once.
func TestCloseReleasesHeldAndUndelivered(t *testing.T) {
	q := &fakeQueue{batches: [][]types.Message{{fifoMessage("a", "ga"), fifoMessage("b", "gb")}}}
	s, err := NewSubscriber(SubscriberConfig{WaitTime: time.Second, CloseTimeout: 100 * time.Millisecond},
		q, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ch, err := s.Subscribe(context.Background(), "https://sqs.local/1/lifecycle")
	if err != nil {
		t.Fatal(err)
	}
	var held = <-ch // the other one stays undelivered: nobody reads the channel again
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held.Context().Done():
	default:
		t.Error("held message context not cancelled after Close")
	}
	if held.Ack() {
		t.Error("Ack after the close timeout returned true")
	}
	if _, open := <-ch; open {
		t.Error("channel open after Close")
	}
	deleted, vis := q.state()
	if len(deleted) != 0 {
		t.Errorf("deleted %v, want nothing", deleted)
	}
	for _, r := range []string{"rh-a", "rh-b"} {
		if !slices.Equal(vis[r], []int32{0}) {
			t.Errorf("visibility changes of %s: %v, want one release to 0", r, vis[r])
		}
	}
	if _, err := s.Subscribe(context.Background(), "x"); err == nil {
		t.Error("Subscribe after Close succeeded")
	}
}

// Slots left free beside long handlers are used: with 6 of 10 messages held by handlers that do
// not finish, a new message is still received (asking for the 4 free slots) and delivered.
func TestFreeSlotsUsedBesideLongHandlers(t *testing.T) {
	var first []types.Message
	for _, id := range []string{"a", "b", "c", "d", "e", "f"} {
		first = append(first, fifoMessage(id, id))
	}
	q := &fakeQueue{batches: [][]types.Message{first, {fifoMessage("late", "late")}}}
	// One receive loop: this is about how one loop takes its slots.
	s, err := NewSubscriber(SubscriberConfig{WaitTime: time.Second, MaxInFlight: 10, Receivers: 1, CloseTimeout: 100 * time.Millisecond},
		q, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ch, err := s.Subscribe(context.Background(), "https://sqs.local/1/lifecycle")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for got := 0; got < 7; got++ {
		select {
		case m := <-ch: // never acked: long handlers
			if got == 6 && string(m.Payload) != "late" {
				t.Errorf("seventh delivery %s, want late", m.Payload)
			}
		case <-deadline:
			t.Fatalf("only %d of 7 messages delivered while 4 slots were free", got)
		}
	}
	q.mu.Lock()
	asked := slices.Clone(q.asked)
	q.mu.Unlock()
	if !slices.Equal(asked, []int32{10, 4}) {
		t.Errorf("receives asked for %v messages, want [10 4]", asked)
	}
}

// pollCounter is a queueAPI fake whose receives are empty long polls; it records how many were
// outstanding at once.
type pollCounter struct {
	fakeQueue
	mu           sync.Mutex
	now, most    int
	pollsStarted chan struct{}
}

func (p *pollCounter) ReceiveMessage(ctx context.Context, _ *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	p.mu.Lock()
	p.now++
	p.most = max(p.most, p.now)
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.now--
		p.mu.Unlock()
	}()
	select {
	case p.pollsStarted <- struct{}{}:
	default:
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(50 * time.Millisecond):
	}
	return &sqs.ReceiveMessageOutput{}, nil
}

func TestReceiversLongPollSideBySide(t *testing.T) {
	for _, tc := range []struct {
		name      string
		url       string
		receivers int
		want      int
	}{
		{"standard default", "https://sqs.local/1/lifecycle", 0, DefaultReceivers},
		{"fifo default", "https://sqs.local/1/control.fifo", 0, 1},
		{"standard three", "https://sqs.local/1/lifecycle", 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &pollCounter{pollsStarted: make(chan struct{}, 64)}
			s, err := NewSubscriber(SubscriberConfig{WaitTime: time.Second, MaxInFlight: 10, Receivers: tc.receivers, CloseTimeout: 100 * time.Millisecond},
				p, slog.New(slog.NewJSONHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Subscribe(context.Background(), tc.url); err != nil {
				t.Fatal(err)
			}
			for range 4 * tc.want { // several rounds of polls
				select {
				case <-p.pollsStarted:
				case <-time.After(5 * time.Second):
					t.Fatal("no receive started within 5 s")
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.most != tc.want {
				t.Errorf("%d long polls outstanding at once, want %d", p.most, tc.want)
			}
		})
	}
}

func TestReceiversValidated(t *testing.T) {
	for _, n := range []int{-1, MaxReceivers + 1} {
		c := SubscriberConfig{Receivers: n}
		c.setDefaults()
		if err := c.Validate(); err == nil {
			t.Errorf("Receivers %d accepted", n)
		}
	}
}

// Acks that arrive while a delete is in flight share the next call: 20 messages acked at once
// are deleted in far fewer than 20 calls, none of more than 10; an entry the batch fails is not
// deleted (it comes back after its visibility timeout) and the others are.
func TestAcksWaitingTogetherAreDeletedInBatches(t *testing.T) {
	var first, second []types.Message
	for i := range 20 {
		m := types.Message{MessageId: aws.String(fmt.Sprint(i)), ReceiptHandle: aws.String(fmt.Sprint("rh-", i)), Body: aws.String("x"),
			Attributes: map[string]string{"ApproximateReceiveCount": "1"}}
		if i < 10 {
			first = append(first, m)
		} else {
			second = append(second, m)
		}
	}
	q := &fakeQueue{batches: [][]types.Message{first, second}, deleteDelay: 50 * time.Millisecond, failDelete: map[string]bool{"rh-7": true}}
	s, err := NewSubscriber(SubscriberConfig{WaitTime: time.Second, MaxInFlight: 20, CloseTimeout: time.Second},
		q, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ch, err := s.Subscribe(context.Background(), "lifecycle")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	for range 20 {
		select {
		case m := <-ch:
			m.Ack()
		case <-deadline:
			t.Fatal("20 messages not delivered")
		}
	}
	for {
		q.mu.Lock()
		n := len(q.deleted)
		q.mu.Unlock()
		if n == 19 {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("%d of 19 deletable messages deleted", n)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	calls := q.singleDeletes + len(q.batchDeletes)
	if calls >= 10 {
		t.Errorf("20 acks took %d delete calls (%d single, batches %v), want them batched", calls, q.singleDeletes, q.batchDeletes)
	}
	for _, n := range q.batchDeletes {
		if n > MaxBatch {
			t.Errorf("a batch of %d deletes, over SQS's %d", n, MaxBatch)
		}
	}
	if slices.Contains(q.deleted, "rh-7") {
		t.Error("rh-7, whose delete failed, counted as deleted")
	}
	if len(q.visibility["rh-7"]) != 0 {
		t.Errorf("rh-7's failed delete changed its visibility: %v (it should come back on its own)", q.visibility["rh-7"])
	}
}

// A held message whose visibility renewals all fail is given up before SQS hands it to another
// consumer runs it too: retried every second, then, with no time left, nacked and its handler's
// context cancelled.
func TestLapsedLeaseStopsTheHandler(t *testing.T) {
	q := &fakeQueue{failRenew: true, batches: [][]types.Message{{fifoMessage("a", "ga")}}}
	s, err := NewSubscriber(SubscriberConfig{WaitTime: time.Second, VisibilityTimeout: 3 * time.Second, MaxHold: time.Minute, CloseTimeout: time.Second},
		q, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ch, err := s.Subscribe(context.Background(), "https://sqs.local/1/lifecycle")
	if err != nil {
		t.Fatal(err)
	}
	held := <-ch // never settled by its "handler"
	select {
	case <-held.Context().Done():
	case <-time.After(30 * time.Second): // a liveness bound: the visibility lapses 3 s in
		t.Fatal("the handler's context still live after its visibility lapsed")
	}
	select {
	case <-held.Nacked():
	default:
		t.Error("a message whose visibility lapsed was not nacked")
	}
	_, vis := q.state()
	if n := len(vis["rh-a"]); n < 2 {
		t.Errorf("%d renewal attempts, want the failed renewal tried again", n)
	}
}

// A message nacked while the subscriber closes (its handler cut short by the shutdown) goes back
// at once, not after the nack backoff meant for failures.
func TestNackWhileClosingReleasesAtOnce(t *testing.T) {
	q := &fakeQueue{batches: [][]types.Message{{fifoMessage("a", "ga")}}}
	s, err := NewSubscriber(SubscriberConfig{WaitTime: time.Second, NackBackoff: 7 * time.Second, CloseTimeout: 5 * time.Second},
		q, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	// The subscription's context ends as a shutdown ends it: the consumer is stopping from then.
	ctx, stop := context.WithCancel(context.Background())
	ch, err := s.Subscribe(ctx, "control.fifo")
	if err != nil {
		t.Fatal(err)
	}
	held := <-ch
	stop()
	held.Nack()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, vis := q.state(); !slices.Equal(vis["rh-a"], []int32{0}) {
		t.Errorf("visibility changes %v, want one release at once (0)", vis["rh-a"])
	}
}
