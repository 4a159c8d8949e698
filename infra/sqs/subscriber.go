package sqs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// settleTimeout bounds one DeleteMessage or ChangeMessageVisibility call. They run on a fresh
// context so that an ack survives a cancelled handler or a closing subscriber.
const settleTimeout = 10 * time.Second

// Subscriber is a message.Subscriber that receives Watermill messages from SQS queues.
//
// Subscribe's topic is the queue (URL, or name resolved once with GetQueueUrl). Each Subscribe
// call runs its own long-poll loop that never holds more than MaxInFlight messages; messages are
// delivered on the returned channel one by one, and the next ones are delivered while earlier
// ones are still being handled (up to MaxInFlight), except within one FIFO message group. The
// package documentation states the ack, nack, hold, FIFO and close contract.
//
// Received metadata: the message attributes (String and Number ones), plus MetaReceiveCount,
// MetaSenderID, MetaMessageID, MetaSentTimestamp and, on FIFO queues, MetaGroupID. The message
// context carries the Subscribe context's values; it is cancelled once the message is settled.
type Subscriber struct {
	cfg    SubscriberConfig
	client queueAPI
	logger *slog.Logger
	urls   urlCache

	closing   chan struct{}
	closeOnce sync.Once
	mu        sync.Mutex
	closed    bool
	running   sync.WaitGroup
}

// NewSubscriber builds a Subscriber. client is usually an *sqs.Client; nil client or logger is
// refused, and so is an invalid configuration (zero fields take their defaults first).
func NewSubscriber(cfg SubscriberConfig, client queueAPI, logger *slog.Logger) (*Subscriber, error) {
	if client == nil {
		return nil, errors.New("sqs subscriber: nil sqs client")
	}
	if logger == nil {
		return nil, errors.New("sqs subscriber: nil logger")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sqs subscriber config: %w", err)
	}
	return &Subscriber{
		cfg:     cfg,
		client:  client,
		logger:  logger,
		urls:    urlCache{client: client},
		closing: make(chan struct{}),
	}, nil
}

// Subscribe starts receiving from the queue named by topic. The returned channel is closed once
// ctx is done or the Subscriber is closed, and every message held has been settled (acked, nacked
// or released).
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.running.Add(1)
	s.mu.Unlock()

	url, err := s.urls.resolve(ctx, topic)
	if err != nil {
		s.running.Done()
		return nil, fmt.Errorf("subscribing to %s: %w", topic, err)
	}
	recvCtx, cancel := context.WithCancel(ctx)
	c := &consumer{
		cfg:     s.cfg,
		client:  s.client,
		url:     url,
		fifo:    IsFIFO(url),
		out:     make(chan *message.Message),
		slots:   make(chan struct{}, s.cfg.MaxInFlight),
		deletes: make(chan deleteReq),
		stop:    recvCtx.Done(),
		msgBase: context.WithoutCancel(ctx),
		log:     s.logger.With("queue", url),
	}
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-recvCtx.Done():
		}
	}()
	go func() {
		defer s.running.Done()
		defer cancel()
		c.run(recvCtx)
	}()
	return c.out, nil
}

// Close stops every subscription: a long poll in progress finishes (at most WaitTime) and what it
// brings is released; handlers get CloseTimeout to settle what they hold; the rest is released.
// It returns once every output channel is closed, so it may take up to max(WaitTime,
// CloseTimeout) plus a settle call. Close is idempotent; Subscribe after Close fails with
// ErrClosed.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.closeOnce.Do(func() { close(s.closing) })
	s.running.Wait()
	return nil
}

// consumer is one Subscribe call: its receive loops and the messages they hold.
type consumer struct {
	cfg     SubscriberConfig
	client  queueAPI
	url     string
	fifo    bool
	out     chan *message.Message
	slots   chan struct{} // one token per message held
	stop    <-chan struct{}
	msgBase context.Context
	log     *slog.Logger
	held    sync.WaitGroup
	batch   int // messages one receive loop asks for at most
	// deletes carries the acked messages' deletes to the deleters (see deleter).
	deletes chan deleteReq
}

// deleteReq asks a deleter to delete one acked message; done is signalled once SQS answered (a
// failure is logged by the deleter: the message comes back after its visibility timeout).
type deleteReq struct {
	receipt string
	log     *slog.Logger
	done    chan struct{}
}

// run runs the consumer's receive loops; once all have stopped and every held message is
// settled, it closes the output channel.
func (c *consumer) run(ctx context.Context) {
	defer close(c.out)
	n := c.cfg.Receivers
	if n == 0 {
		n = DefaultReceivers
		if c.fifo {
			n = 1
		}
	}
	// Each loop asks for its share of the in-flight slots, so that the loops do poll side by side
	// (one asking for them all would leave the others waiting for slots, not polling).
	c.batch = max(1, min(c.cfg.BatchSize, c.cfg.MaxInFlight/n))
	if c.fifo {
		// One message per receive on a FIFO queue. SQS returns as many messages of one group as
		// it can, and when the first fails the rest must be released so the group is delivered
		// again in order; each such receive counts toward their maxReceiveCount, so a message
		// failing five times would take the messages queued behind it to the DLQ, unhandled.
		// Asked for one at a time, a group is never in flight twice (SQS holds it back), and
		// other groups still run side by side: the loop polls again while one is handled.
		c.batch = 1
	}
	// As many deleters as receive loops; they stop once every held message is settled.
	var deleters sync.WaitGroup
	for range n {
		deleters.Go(c.deleter)
	}
	var loops sync.WaitGroup
	for range n {
		loops.Go(func() { c.receiveLoop(ctx) })
	}
	loops.Wait()
	c.held.Wait()
	close(c.deletes)
	deleters.Wait()
}

// receiveLoop takes free in-flight slots, long-polls for that many messages and dispatches
// them, until ctx is done.
func (c *consumer) receiveLoop(ctx context.Context) {
	for ctx.Err() == nil {
		n := c.acquire(ctx)
		if n == 0 {
			return
		}
		msgs, err := c.receive(ctx, n)
		receivedAt := time.Now()
		if ctx.Err() != nil {
			// Stopped while polling: what the poll brought is released, not handled.
			c.releaseAll(msgs)
			msgs = nil
		}
		for range n - len(msgs) {
			<-c.slots
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c.log.Error("receiving sqs messages", "error", err)
			select {
			case <-time.After(c.cfg.ReceiveErrorBackoff):
			case <-ctx.Done():
			}
			continue
		}
		c.dispatch(msgs, receivedAt)
	}
}

// acquireLinger is how long acquire waits for more free slots once it has one but less than half
// a batch: long enough for the acks of a batch in progress to free their slots (settle calls take
// tens of milliseconds, more on a loaded emulator), short next to the wait of a message behind
// long handlers, which this adds to at most once per receive.
const acquireLinger = time.Second

// acquire takes in-flight slots for the next receive: it blocks until one is free, takes every
// free one up to the batch size and, with less than half a batch, lingers up to acquireLinger for
// more, so that a busy consumer does not degrade into receives of one message each. It returns 0
// when ctx is done.
func (c *consumer) acquire(ctx context.Context) int {
	want := c.batch
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return 0
	}
	n := 1
	for n < want {
		select {
		case c.slots <- struct{}{}:
			n++
			continue
		default:
		}
		break
	}
	if n >= (want+1)/2 {
		return n
	}
	linger := time.NewTimer(acquireLinger)
	defer linger.Stop()
	for n < (want+1)/2 {
		select {
		case c.slots <- struct{}{}:
			n++
		case <-linger.C:
			return n
		case <-ctx.Done():
			for range n {
				<-c.slots
			}
			return 0
		}
	}
	return n
}

// receive runs one long poll. It is not cut short when the consumer stops: SQS may already have
// taken messages for a poll whose client went away, and those would stay invisible for the
// visibility timeout. Letting it finish (at most WaitTime) and releasing what it brings loses
// nothing and delays nothing.
func (c *consumer) receive(ctx context.Context, n int) ([]types.Message, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.WaitTime+settleTimeout)
	defer cancel()
	in := &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(c.url),
		MaxNumberOfMessages:         int32(n),
		WaitTimeSeconds:             int32(c.cfg.WaitTime / time.Second),
		VisibilityTimeout:           int32(c.cfg.VisibilityTimeout / time.Second),
		MessageAttributeNames:       []string{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
	}
	if c.fifo {
		// The SDK's retries of this call then get the same messages back instead of leaving
		// them (and their groups) in flight for the visibility timeout.
		in.ReceiveRequestAttemptId = aws.String(watermill.NewUUID())
	}
	out, err := c.client.ReceiveMessage(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("receiving from %s: %w", c.url, err)
	}
	msgs := out.Messages
	if len(msgs) > n {
		// Never hold more than we have room for.
		c.releaseAll(msgs[n:])
		msgs = msgs[:n]
	}
	return msgs, nil
}

// dispatch starts handling a batch, one goroutine per message. Every message's visibility is
// renewed from receipt. On a FIFO queue a batch is one message (see run): SQS holds back the rest
// of its group until it is deleted or visible again, so the group keeps its order.
func (c *consumer) dispatch(msgs []types.Message, receivedAt time.Time) {
	for _, m := range msgs {
		log := c.log.With("sqs_message_id", aws.ToString(m.MessageId))
		h := heldMessage{m: m, receipt: aws.ToString(m.ReceiptHandle), receivedAt: receivedAt, log: log}
		h.lease = startLease(c, h.receipt, receivedAt, log)
		c.held.Add(1)
		go func() {
			defer c.held.Done()
			defer func() { <-c.slots }()
			c.process(h)
		}()
	}
}

// heldMessage is one received message and the lease that keeps it invisible.
type heldMessage struct {
	m          types.Message
	receipt    string
	receivedAt time.Time
	lease      *lease
	log        *slog.Logger
}

// process delivers one message and settles it; it stops the message's lease before settling.
func (c *consumer) process(h heldMessage) {
	receipt, log, l := h.receipt, h.log, h.lease
	defer l.stop()
	hold := time.NewTimer(time.Until(h.receivedAt.Add(c.cfg.MaxHold)))
	defer hold.Stop()
	select {
	case <-c.stop:
		l.stop()
		c.release(receipt, 0, log)
		return
	case <-hold.C:
		l.stop()
		log.Warn("sqs message held past max hold before delivery: releasing it", "max_hold", c.cfg.MaxHold)
		c.release(receipt, c.cfg.NackBackoff, log)
		return
	default:
	}

	msg := toWatermill(h.m, c.fifo)
	ctx, cancel := context.WithCancel(c.msgBase)
	defer cancel()
	msg.SetContext(ctx)

	select {
	case c.out <- msg:
	case <-c.stop:
		l.stop()
		c.release(receipt, 0, log)
		return
	case <-l.lost:
		return // never delivered; its visibility lapsed, so SQS hands it out again
	case <-hold.C:
		l.stop()
		log.Warn("sqs message held past max hold before delivery: releasing it", "max_hold", c.cfg.MaxHold)
		c.release(receipt, c.cfg.NackBackoff, log)
		return
	}

	stopping := c.stop
	var closeTimer <-chan time.Time
	for {
		select {
		case <-msg.Acked():
			l.stop()
			// A message whose delete failed comes back (on a FIFO queue, before the rest of
			// its group).
			c.delete(receipt, log)
			return
		case <-msg.Nacked():
			l.stop()
			backoff := c.cfg.NackBackoff
			select {
			case <-c.stop:
				// Closing: a handler cut short by the shutdown (its context cancelled) nacks;
				// the message goes back at once, for the next task, not after the backoff
				// meant for failures (on a FIFO queue its whole group would wait).
				backoff = 0
			default:
			}
			c.release(receipt, backoff, log)
			return
		case <-hold.C:
			if !msg.Nack() {
				continue // acked just now
			}
			log.Warn("handler held sqs message past max hold: released and nacked", "max_hold", c.cfg.MaxHold)
			l.stop()
			c.release(receipt, c.cfg.NackBackoff, log)
			return
		case <-l.lost:
			if !msg.Nack() {
				continue // acked just now
			}
			// Its visibility lapsed: the deferred cancel stops the handler; the release may
			// fail on a receipt SQS has moved on from, which is harmless.
			c.release(receipt, c.cfg.NackBackoff, log)
			return
		case <-stopping:
			stopping = nil
			t := time.NewTimer(c.cfg.CloseTimeout)
			defer t.Stop()
			closeTimer = t.C
		case <-closeTimer:
			if !msg.Nack() {
				continue
			}
			log.Warn("handler did not settle sqs message within the close timeout: released", "close_timeout", c.cfg.CloseTimeout)
			l.stop()
			c.release(receipt, 0, log)
			return
		}
	}
}

// delete removes an acked message through a deleter and waits for SQS's answer, so the message's
// in-flight slot is freed only then.
func (c *consumer) delete(receipt string, log *slog.Logger) {
	done := make(chan struct{}, 1)
	c.deletes <- deleteReq{receipt: receipt, log: log, done: done}
	<-done
}

// deleter deletes acked messages, batching what is already waiting: it takes one request, then
// every other one queued at that moment (up to MaxBatch), and deletes them with one call. It
// never waits to fill a batch, so a lone ack costs no latency, while under load the acks that
// arrive during one call share the next (on the drain benchmark's lifecycle and steps queues,
// a DeleteMessage per ack was about a sixth of all SQS and DynamoDB calls).
func (c *consumer) deleter() {
	for first := range c.deletes {
		batch := []deleteReq{first}
	fill:
		for len(batch) < MaxBatch {
			select {
			case r, ok := <-c.deletes:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		c.deleteBatch(batch)
	}
}

// deleteBatch deletes the batch's messages (DeleteMessage for one, DeleteMessageBatch for
// more) and answers each request. A message whose delete failed comes back after its
// visibility timeout: at least once.
func (c *consumer) deleteBatch(batch []deleteReq) {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	if len(batch) == 1 {
		r := batch[0]
		_, err := c.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(c.url), ReceiptHandle: aws.String(r.receipt)})
		if err != nil {
			r.log.Error("deleting acked sqs message", "error", err)
		}
		r.done <- struct{}{}
		return
	}
	entries := make([]types.DeleteMessageBatchRequestEntry, len(batch))
	for i, r := range batch {
		entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(r.receipt)}
	}
	out, err := c.client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(c.url), Entries: entries})
	if err != nil {
		for _, r := range batch {
			r.log.Error("deleting acked sqs message", "error", err, "batch", len(batch))
			r.done <- struct{}{}
		}
		return
	}
	answered := make([]bool, len(batch))
	for _, f := range out.Failed {
		i, convErr := strconv.Atoi(aws.ToString(f.Id))
		if convErr != nil || i < 0 || i >= len(batch) || answered[i] {
			continue
		}
		answered[i] = true
		batch[i].log.Error("deleting acked sqs message", "error", fmt.Sprintf("%s: %s", aws.ToString(f.Code), aws.ToString(f.Message)))
		batch[i].done <- struct{}{}
	}
	ok := make([]bool, len(batch))
	for _, e := range out.Successful {
		if i, convErr := strconv.Atoi(aws.ToString(e.Id)); convErr == nil && i >= 0 && i < len(batch) {
			ok[i] = true
		}
	}
	for i, r := range batch {
		if answered[i] {
			continue
		}
		if !ok[i] {
			r.log.Error("deleting acked sqs message", "error", "neither successful nor failed in the batch's answer")
		}
		r.done <- struct{}{}
	}
}

// release makes a held message visible again after d.
func (c *consumer) release(receipt string, d time.Duration, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	if err := c.changeVisibility(ctx, receipt, d); err != nil {
		log.Error("releasing sqs message", "error", err, "visible_in", d)
	}
}

func (c *consumer) releaseAll(msgs []types.Message) {
	for _, m := range msgs {
		c.release(aws.ToString(m.ReceiptHandle), 0, c.log.With("sqs_message_id", aws.ToString(m.MessageId)))
	}
}

func (c *consumer) changeVisibility(ctx context.Context, receipt string, d time.Duration) error {
	secs := int32((d + time.Second - 1) / time.Second)
	_, err := c.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl:          aws.String(c.url),
		ReceiptHandle:     aws.String(receipt),
		VisibilityTimeout: secs,
	})
	if err != nil {
		return fmt.Errorf("changing visibility of a message of %s to %ds: %w", c.url, secs, err)
	}
	return nil
}

// lease keeps one held message invisible: it renews the visibility timeout every third of it
// until stopped, and a failed renewal again every second until the visibility would lapse. It
// closes lost when a renewal could not land before then: SQS may hand the message to another
// consumer, so its handler must stop (process nacks it and cancels its context). stop waits
// for a renewal in progress, so none lands after a release.
type lease struct {
	cancel context.CancelFunc
	done   chan struct{}
	lost   chan struct{}
	once   sync.Once
}

// leaseRetry is how soon a failed visibility renewal is tried again.
const leaseRetry = time.Second

func startLease(c *consumer, receipt string, receivedAt time.Time, log *slog.Logger) *lease {
	ctx, cancel := context.WithCancel(context.Background())
	l := &lease{cancel: cancel, done: make(chan struct{}), lost: make(chan struct{})}
	every := c.cfg.VisibilityTimeout / 3
	expires := receivedAt.Add(c.cfg.VisibilityTimeout)
	go func() {
		defer close(l.done)
		t := time.NewTimer(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			callCtx, callCancel := context.WithDeadline(ctx, expires)
			began := time.Now()
			err := c.changeVisibility(callCtx, receipt, c.cfg.VisibilityTimeout)
			callCancel()
			switch {
			case ctx.Err() != nil:
				return
			case err == nil:
				expires = began.Add(c.cfg.VisibilityTimeout)
				t.Reset(every)
			case time.Now().Add(leaseRetry).After(expires):
				log.Error("sqs message visibility lapsed: renewals failed; its handler is stopped, another consumer may take it",
					"error", err, "visibility_timeout", c.cfg.VisibilityTimeout)
				close(l.lost)
				return
			default:
				log.Warn("extending sqs message visibility: trying again", "error", err, "lapses_in", time.Until(expires).Round(time.Millisecond))
				t.Reset(leaseRetry)
			}
		}
	}()
	return l
}

func (l *lease) stop() {
	l.once.Do(func() {
		l.cancel()
		<-l.done
	})
}

// toWatermill converts a received SQS message: body verbatim, UUID from AttrUUID or the MessageId,
// attributes and system attributes into metadata.
func toWatermill(m types.Message, fifo bool) *message.Message {
	uuid := aws.ToString(m.MessageId)
	md := message.Metadata{}
	for k, v := range m.MessageAttributes {
		if v.StringValue == nil {
			continue // binary attributes do not fit string metadata
		}
		if k == AttrUUID {
			uuid = *v.StringValue
			continue
		}
		if reservedKeys[k] {
			continue
		}
		md[k] = *v.StringValue
	}
	md[MetaMessageID] = aws.ToString(m.MessageId)
	sys := map[types.MessageSystemAttributeName]string{
		types.MessageSystemAttributeNameApproximateReceiveCount: MetaReceiveCount,
		types.MessageSystemAttributeNameSenderId:                MetaSenderID,
		types.MessageSystemAttributeNameSentTimestamp:           MetaSentTimestamp,
	}
	if fifo {
		sys[types.MessageSystemAttributeNameMessageGroupId] = MetaGroupID
	}
	for attr, key := range sys {
		if v, ok := m.Attributes[string(attr)]; ok {
			md[key] = v
		}
	}
	msg := message.NewMessage(uuid, []byte(aws.ToString(m.Body)))
	msg.Metadata = md
	return msg
}

// ReceiveCount returns a received message's MetaReceiveCount as a number (0 when absent).
func ReceiveCount(msg *message.Message) int {
	n, _ := strconv.Atoi(msg.Metadata.Get(MetaReceiveCount))
	return n
}

// SentAt returns when SQS accepted a received message (MetaSentTimestamp), or the zero time.
func SentAt(msg *message.Message) time.Time {
	ms, err := strconv.ParseInt(msg.Metadata.Get(MetaSentTimestamp), 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

var (
	_ message.Subscriber = (*Subscriber)(nil)
	_ message.Publisher  = (*Publisher)(nil)
)
