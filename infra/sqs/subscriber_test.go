package sqs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/runnerfleet/runnerfleet/infra/sqs"
	"github.com/runnerfleet/runnerfleet/integration/emulator"
)

// Messages published to a standard and a FIFO queue are received with their payload, UUID and
// metadata, acked, and gone from the queue.
func TestPublishReceiveAck(t *testing.T) {
	t.Parallel()
	for _, fifo := range []bool{false, true} {
		t.Run(fmt.Sprintf("fifo=%t", fifo), func(t *testing.T) {
			t.Parallel()
			url := createQueue(t, fifo, nil)
			pub := newPublisher(t)
			var msgs []*message.Message
			for i := range 3 {
				md := map[string]string{"fleet": "alpha", "attempt": fmt.Sprint(i)}
				if fifo {
					md[sqs.MetaGroupID] = fmt.Sprintf("g%d", i%2)
				}
				msgs = append(msgs, msgWith(fmt.Sprintf(`{"n":%d}`, i), md))
			}
			if err := pub.Publish(url, msgs[0]); err != nil { // SendMessage
				t.Fatalf("publish one: %v", err)
			}
			if err := pub.Publish(url, msgs[1:]...); err != nil { // SendMessageBatch
				t.Fatalf("publish batch: %v", err)
			}

			sub := newSubscriber(t, sqs.SubscriberConfig{WaitTime: time.Second})
			ch, err := sub.Subscribe(context.Background(), url)
			if err != nil {
				t.Fatalf("subscribe: %v", err)
			}
			got := map[string]*message.Message{}
			for range msgs {
				m := next(t, ch)
				got[m.UUID] = m
				m.Ack()
			}
			for i, want := range msgs {
				m, ok := got[want.UUID]
				if !ok {
					t.Fatalf("message %s not received; got %v", want.UUID, got)
				}
				if string(m.Payload) != string(want.Payload) {
					t.Errorf("payload %q, want %q", m.Payload, want.Payload)
				}
				if m.Metadata.Get("fleet") != "alpha" || m.Metadata.Get("attempt") != fmt.Sprint(i) {
					t.Errorf("metadata %v lacks the published attributes", m.Metadata)
				}
				if m.Metadata.Get(sqs.MetaReceiveCount) != "1" || m.Metadata.Get(sqs.MetaSenderID) == "" ||
					m.Metadata.Get(sqs.MetaMessageID) == "" || sqs.SentAt(m).IsZero() {
					t.Errorf("metadata %v lacks the sqs system attributes", m.Metadata)
				}
				if m.Metadata.Get(sqs.AttrUUID) != "" {
					t.Errorf("the uuid attribute leaked into metadata: %v", m.Metadata)
				}
				if fifo && m.Metadata.Get(sqs.MetaGroupID) != want.Metadata.Get(sqs.MetaGroupID) {
					t.Errorf("group %q, want %q", m.Metadata.Get(sqs.MetaGroupID), want.Metadata.Get(sqs.MetaGroupID))
				}
			}
			if err := sub.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			if _, open := <-ch; open {
				t.Error("channel still open after Close")
			}
			assertQueueEmpty(t, url)
		})
	}
}

// Three messages of one FIFO group, sent together (one ReceiveMessage asked for more would
// return them together), with the first nacked once: the handler sees m1 (nacked), m1, m2, m3 and
// nothing else, and m2 and m3 are received once each.
func TestFIFOGroupInOrderAfterNack(t *testing.T) {
	t.Parallel()
	url := createQueue(t, true, nil)
	pub := newPublisher(t)
	var msgs []*message.Message
	for i := 1; i <= 3; i++ {
		msgs = append(msgs, msgWith(fmt.Sprintf("m%d", i), map[string]string{sqs.MetaGroupID: "fleet-a"}))
	}
	if err := pub.Publish(url, msgs...); err != nil {
		t.Fatalf("publish: %v", err)
	}
	sub := newSubscriber(t, sqs.SubscriberConfig{WaitTime: time.Second, MaxInFlight: 10})
	ch, err := sub.Subscribe(context.Background(), url)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	var rec recorder
	nacked := false
	for acked := 0; acked < 3; {
		m := next(t, ch)
		rec.add(m)
		if !nacked {
			nacked = true
			m.Nack()
			continue
		}
		// Give a wrongly delivered later message the chance to show up before this one is acked.
		select {
		case extra := <-ch:
			t.Fatalf("%s delivered while %s of the same group was unacked", extra.Payload, m.Payload)
		case <-time.After(200 * time.Millisecond):
		}
		m.Ack()
		acked++
	}
	var bodies []string
	for _, s := range rec.all() {
		bodies = append(bodies, s.body)
	}
	if want := []string{"m1", "m1", "m2", "m3"}; !slices.Equal(bodies, want) {
		t.Errorf("handled %v, want %v", bodies, want)
	}
	if got := rec.all()[1].count; got != 2 {
		t.Errorf("redelivered m1 has receive count %d, want 2", got)
	}
	// m2 and m3 were never received beside m1's failed delivery: the nack cost them nothing
	// toward the queue's maxReceiveCount.
	for _, s := range rec.all()[2:] {
		if s.count != 1 {
			t.Errorf("%s has receive count %d, want 1", s.body, s.count)
		}
	}
	sub.Close()
	assertQueueEmpty(t, url)
}

// A nacked message comes back, and not before its backoff.
func TestNackComesBackAfterBackoff(t *testing.T) {
	t.Parallel()
	const backoff = 2 * time.Second
	url := createQueue(t, false, nil)
	if err := newPublisher(t).Publish(url, msgWith("retry-me", nil)); err != nil {
		t.Fatalf("publish: %v", err)
	}
	sub := newSubscriber(t, sqs.SubscriberConfig{WaitTime: time.Second, NackBackoff: backoff})
	ch, err := sub.Subscribe(context.Background(), url)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	first := next(t, ch)
	nackedAt := time.Now()
	first.Nack()
	second := next(t, ch)
	backAt := time.Now()
	second.Ack()
	if second.UUID != first.UUID || sqs.ReceiveCount(second) != 2 {
		t.Errorf("second delivery %s (count %d), want %s again (count 2)", second.UUID, sqs.ReceiveCount(second), first.UUID)
	}
	if gap := backAt.Sub(nackedAt); gap < backoff {
		t.Errorf("nacked message came back after %s, before its backoff %s", gap, backoff)
	}
	sub.Close()
	assertQueueEmpty(t, url)
}

// A handler that works for longer than the visibility timeout keeps its message: the subscriber
// (which keeps polling the same queue) never gets it again while the handler works.
func TestLongHandlerNotRedelivered(t *testing.T) {
	t.Parallel()
	const visibility = 4 * time.Second // renewed every 2 s: margin for a loaded machine
	url := createQueue(t, false, nil)
	if err := newPublisher(t).Publish(url, msgWith("slow", nil)); err != nil {
		t.Fatalf("publish: %v", err)
	}
	sub := newSubscriber(t, sqs.SubscriberConfig{WaitTime: time.Second, VisibilityTimeout: visibility, MaxInFlight: 5})
	ch, err := sub.Subscribe(context.Background(), url)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	m := next(t, ch)
	start := time.Now()
	// Work for 2.5 visibility timeouts, watching for a redelivery meanwhile.
	deadline := time.After(visibility * 5 / 2)
watch:
	for {
		select {
		case dup := <-ch:
			t.Fatalf("%s redelivered (receive count %d) while its handler worked", dup.UUID, sqs.ReceiveCount(dup))
		case <-deadline:
			break watch
		}
	}
	if worked := time.Since(start); worked <= visibility {
		t.Fatalf("handler worked %s, not past the visibility timeout %s", worked, visibility)
	}
	if !m.Ack() {
		t.Fatal("Ack after long work returned false")
	}
	sub.Close()
	assertQueueEmpty(t, url)
}

// A handler that holds a message past MaxHold loses it: the message context is cancelled, Ack
// returns false, and the message is released and redelivered.
func TestMaxHoldReleases(t *testing.T) {
	t.Parallel()
	url := createQueue(t, false, nil)
	if err := newPublisher(t).Publish(url, msgWith("stuck", nil)); err != nil {
		t.Fatalf("publish: %v", err)
	}
	sub := newSubscriber(t, sqs.SubscriberConfig{WaitTime: time.Second, VisibilityTimeout: 4 * time.Second, MaxHold: 6 * time.Second})
	ch, err := sub.Subscribe(context.Background(), url)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	first := next(t, ch)
	select {
	case <-first.Context().Done():
	case <-time.After(waitFor):
		t.Fatal("message context not cancelled after max hold")
	}
	select {
	case <-first.Nacked():
	default:
		t.Error("message past max hold was not nacked")
	}
	if first.Ack() {
		t.Error("Ack after max hold returned true")
	}
	second := next(t, ch)
	if second.UUID != first.UUID || sqs.ReceiveCount(second) != 2 {
		t.Errorf("redelivery %s (count %d), want %s with count 2", second.UUID, sqs.ReceiveCount(second), first.UUID)
	}
	second.Ack()
	sub.Close()
	assertQueueEmpty(t, url)
}

// A delayed follow-up (delay_seconds on a standard queue) is not received before its delay.
func TestDelayedFollowUp(t *testing.T) {
	t.Parallel()
	const delay = 2
	url := createQueue(t, false, nil)
	sub := newSubscriber(t, sqs.SubscriberConfig{WaitTime: time.Second})
	ch, err := sub.Subscribe(context.Background(), url)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	sentAt := time.Now()
	if err := newPublisher(t).Publish(url, msgWith(`{"kind":"drain.step"}`, map[string]string{sqs.MetaDelaySeconds: fmt.Sprint(delay)})); err != nil {
		t.Fatalf("publish: %v", err)
	}
	m := next(t, ch)
	receivedAt := time.Now()
	m.Ack()
	if gap := receivedAt.Sub(sentAt); gap < delay*time.Second {
		t.Errorf("delayed message received %s after sending, before its delay of %ds", gap, delay)
	}
	if gap := receivedAt.Sub(sqs.SentAt(m)); gap < delay*time.Second-time.Millisecond {
		t.Errorf("received %s after sqs's SentTimestamp, want at least %ds", gap, delay)
	}
	if m.Metadata.Get(sqs.MetaDelaySeconds) != "" {
		t.Errorf("delay_seconds travelled as an attribute: %v", m.Metadata)
	}
	sub.Close()
	assertQueueEmpty(t, url)
}

// A raw EventBridge event, delivered to the queue by a rule, is consumed with its body intact.
func TestEventBridgeEventConsumedRaw(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := createQueue(t, false, nil)
	attrs, err := sqsClient().GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		t.Fatalf("queue arn: %v", err)
	}
	eb := eventbridge.NewFromConfig(world.cfg)
	rule := emulator.UniqueName(t, "runnerfleet-rule")
	source := "runnerfleet.test." + rule
	if _, err := eb.PutRule(ctx, &eventbridge.PutRuleInput{
		Name:         aws.String(rule),
		EventPattern: aws.String(fmt.Sprintf(`{"source":[%q],"detail-type":["EC2 Instance-terminate Lifecycle Action"]}`, source)),
	}); err != nil {
		t.Fatalf("put rule: %v", err)
	}
	if _, err := eb.PutTargets(ctx, &eventbridge.PutTargetsInput{
		Rule:    aws.String(rule),
		Targets: []ebtypes.Target{{Id: aws.String("queue"), Arn: aws.String(attrs.Attributes[string(types.QueueAttributeNameQueueArn)])}},
	}); err != nil {
		t.Fatalf("put targets: %v", err)
	}
	detail := `{"LifecycleActionToken":"87654321-4321-4321-4321-210987654321","AutoScalingGroupName":"runnerfleet-asg","LifecycleHookName":"drain","EC2InstanceId":"i-1234567890abcdef0","LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","NotificationMetadata":"{\"fleet\":\"alpha\"}","Origin":"AutoScalingGroup","Destination":"EC2"}`
	out, err := eb.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{{
		Source: aws.String(source), DetailType: aws.String("EC2 Instance-terminate Lifecycle Action"), Detail: aws.String(detail),
	}}})
	if err != nil || out.FailedEntryCount != 0 {
		t.Fatalf("put events: %v (%d failed)", err, out.FailedEntryCount)
	}

	sub := newSubscriber(t, sqs.SubscriberConfig{WaitTime: time.Second})
	ch, err := sub.Subscribe(ctx, url)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	m := next(t, ch)
	m.Ack()
	var ev struct {
		ID         string          `json:"id"`
		Source     string          `json:"source"`
		DetailType string          `json:"detail-type"`
		Detail     json.RawMessage `json:"detail"`
	}
	if err := json.Unmarshal(m.Payload, &ev); err != nil {
		t.Fatalf("payload is not the event JSON: %v\n%s", err, m.Payload)
	}
	if ev.Source != source || ev.DetailType != "EC2 Instance-terminate Lifecycle Action" || ev.ID == "" {
		t.Errorf("event envelope %+v, want source %s", ev, source)
	}
	var gotDetail, wantDetail map[string]any
	if err := json.Unmarshal(ev.Detail, &gotDetail); err != nil {
		t.Fatalf("detail: %v", err)
	}
	_ = json.Unmarshal([]byte(detail), &wantDetail)
	if fmt.Sprint(gotDetail) != fmt.Sprint(wantDetail) {
		t.Errorf("detail %v, want %v", gotDetail, wantDetail)
	}
	if m.UUID != m.Metadata.Get(sqs.MetaMessageID) {
		t.Errorf("uuid %q of a message without the watermill attribute, want the sqs message id %q", m.UUID, m.Metadata.Get(sqs.MetaMessageID))
	}
	sub.Close()
	assertQueueEmpty(t, url)
}

// Close waits for the handler up to CloseTimeout, then releases everything held and not acked at
// once (visibility 0, although the visibility timeout is 30 s): nothing is lost.
func TestCloseReleasesUnacked(t *testing.T) {
	t.Parallel()
	url := createQueue(t, false, nil)
	if err := newPublisher(t).Publish(url, msgWith("a", nil), msgWith("b", nil), msgWith("c", nil)); err != nil {
		t.Fatalf("publish: %v", err)
	}
	sub := newSubscriber(t, sqs.SubscriberConfig{WaitTime: time.Second, VisibilityTimeout: 30 * time.Second, CloseTimeout: time.Second})
	ch, err := sub.Subscribe(context.Background(), url)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	acked := next(t, ch)
	acked.Ack()
	held := next(t, ch) // never settled by the "handler"
	if err := sub.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case <-held.Context().Done():
	default:
		t.Error("context of a held message not cancelled by Close")
	}
	// Everything not acked is visible again right away.
	out, err := sqsClient().ReceiveMessage(context.Background(), &awssqs.ReceiveMessageInput{
		QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 2,
		MessageAttributeNames: []string{"All"},
	})
	if err != nil {
		t.Fatalf("receive after close: %v", err)
	}
	var got []string
	for _, m := range out.Messages {
		got = append(got, aws.ToString(m.Body))
	}
	slices.Sort(got)
	want := []string{"a", "b", "c"}
	want = slices.DeleteFunc(want, func(s string) bool { return s == string(acked.Payload) })
	if !slices.Equal(got, want) {
		t.Errorf("after close the queue has %v visible, want %v (all but the acked %s)", got, want, acked.Payload)
	}
}
