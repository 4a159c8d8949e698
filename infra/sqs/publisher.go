package sqs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// ErrClosed is returned by Publish and Subscribe after Close.
var ErrClosed = errors.New("sqs: closed")

// ErrUnencodable marks a Publish refused before any call: a message SQS would never take as it
// is (too large with its attributes, too many attributes, an empty body or characters SQS
// refuses). Sending it again cannot succeed.
var ErrUnencodable = errors.New("sqs cannot take the message as it is")

// Publisher is a message.Publisher that sends Watermill messages to SQS queues.
//
// The topic is the queue (URL, or name resolved once with GetQueueUrl). The payload becomes the
// body verbatim: it must be valid text (UTF-8 without the control characters SQS refuses). The
// UUID and the metadata become String message attributes, except the reserved keys (see
// Reserved), which set SQS parameters: MetaDelaySeconds for standard queues, MetaGroupID
// (required) and MetaDedupID (optional) for FIFO queues. Empty metadata values are not sent.
//
// Publish with several messages sends them with SendMessageBatch, up to 10 messages and 256 KiB per
// call, in order (FIFO order within a group is the order given). Publish is all or error: when it
// returns an error, some messages may have been sent; the caller retries, and consumers are
// at-least-once anyway. Every message is checked before anything is sent.
type Publisher struct {
	cfg    PublisherConfig
	client sendAPI
	logger *slog.Logger
	urls   urlCache

	mu     sync.RWMutex
	closed bool
}

// NewPublisher builds a Publisher. client is usually an *sqs.Client; nil client or logger is
// refused, and so is an invalid configuration.
func NewPublisher(cfg PublisherConfig, client sendAPI, logger *slog.Logger) (*Publisher, error) {
	if client == nil {
		return nil, errors.New("sqs publisher: nil sqs client")
	}
	if logger == nil {
		return nil, errors.New("sqs publisher: nil logger")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sqs publisher config: %w", err)
	}
	return &Publisher{cfg: cfg, client: client, logger: logger, urls: urlCache{client: client}}, nil
}

// Publish sends msgs to the queue named by topic. See Publisher for the contract.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	if len(msgs) == 0 {
		return nil
	}
	base := context.WithoutCancel(msgs[0].Context())
	ctx, cancel := context.WithTimeout(base, p.cfg.Timeout)
	url, err := p.urls.resolve(ctx, topic)
	cancel()
	if err != nil {
		return fmt.Errorf("publishing to %s: %w", topic, err)
	}
	fifo := IsFIFO(url)
	entries := make([]outgoing, 0, len(msgs))
	var errs []error
	for i, msg := range msgs {
		o, err := encode(msg, fifo)
		if err != nil {
			errs = append(errs, fmt.Errorf("message %d (%s): %w", i, msg.UUID, err))
			continue
		}
		entries = append(entries, o)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("publishing to %s: %w: %w", url, ErrUnencodable, err)
	}
	if len(entries) == 1 {
		e := entries[0]
		ctx, cancel := context.WithTimeout(base, p.cfg.Timeout)
		defer cancel()
		_, err := p.client.SendMessage(ctx, &sqs.SendMessageInput{
			QueueUrl:               aws.String(url),
			MessageBody:            aws.String(e.body),
			DelaySeconds:           e.delay,
			MessageAttributes:      e.attrs,
			MessageGroupId:         e.groupID,
			MessageDeduplicationId: e.dedupID,
		})
		if err != nil {
			return fmt.Errorf("sending message %s to %s: %w", e.uuid, url, err)
		}
		return nil
	}
	for _, batch := range batches(entries) {
		if err := p.sendBatch(base, url, batch); err != nil {
			return err
		}
	}
	return nil
}

func (p *Publisher) sendBatch(base context.Context, url string, batch []outgoing) error {
	ctx, cancel := context.WithTimeout(base, p.cfg.Timeout)
	defer cancel()
	in := &sqs.SendMessageBatchInput{QueueUrl: aws.String(url)}
	for i, e := range batch {
		in.Entries = append(in.Entries, types.SendMessageBatchRequestEntry{
			Id:                     aws.String(strconv.Itoa(i)),
			MessageBody:            aws.String(e.body),
			DelaySeconds:           e.delay,
			MessageAttributes:      e.attrs,
			MessageGroupId:         e.groupID,
			MessageDeduplicationId: e.dedupID,
		})
	}
	out, err := p.client.SendMessageBatch(ctx, in)
	if err != nil {
		return fmt.Errorf("sending a batch of %d messages to %s: %w", len(batch), url, err)
	}
	if len(out.Failed) == 0 {
		return nil
	}
	var errs []error
	for _, f := range out.Failed {
		uuid := aws.ToString(f.Id)
		if i, err := strconv.Atoi(uuid); err == nil && i >= 0 && i < len(batch) {
			uuid = batch[i].uuid
		}
		errs = append(errs, fmt.Errorf("message %s: %s: %s (sender fault: %t)", uuid, aws.ToString(f.Code), aws.ToString(f.Message), f.SenderFault))
	}
	return fmt.Errorf("sending a batch of %d messages to %s: %d failed: %w", len(batch), url, len(out.Failed), errors.Join(errs...))
}

// Close makes later Publish calls fail with ErrClosed; it waits for Publish calls in progress.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	return nil
}

// outgoing is one message ready to send.
type outgoing struct {
	uuid    string
	body    string
	attrs   map[string]types.MessageAttributeValue
	delay   int32
	groupID *string
	dedupID *string
	size    int
}

// attrName is what SQS accepts as a message attribute name.
var attrName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,256}$`)

func encode(msg *message.Message, fifo bool) (outgoing, error) {
	var errs []error
	o := outgoing{uuid: msg.UUID, body: string(msg.Payload), attrs: map[string]types.MessageAttributeValue{}}
	if len(msg.Payload) == 0 {
		// SQS refuses empty bodies; Watermill allows empty payloads.
		errs = append(errs, errors.New("empty payload: sqs needs a body of at least one character"))
	} else if err := CheckBody(msg.Payload); err != nil {
		errs = append(errs, err)
	}
	o.size = len(msg.Payload)
	addAttr := func(name, value string) {
		o.attrs[name] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(value)}
		o.size += len(name) + len("String") + len(value)
	}
	if msg.UUID != "" {
		addAttr(AttrUUID, msg.UUID)
	}
	for k, v := range msg.Metadata {
		if reservedKeys[k] || v == "" {
			continue
		}
		if !validAttrName(k) {
			errs = append(errs, fmt.Errorf("metadata key %q is not a valid sqs attribute name", k))
			continue
		}
		if !utf8.ValidString(v) {
			errs = append(errs, fmt.Errorf("metadata %q: value is not valid utf-8", k))
			continue
		}
		addAttr(k, v)
	}
	if len(o.attrs) > MaxAttributes {
		errs = append(errs, fmt.Errorf("%d message attributes (uuid and metadata): sqs takes at most %d", len(o.attrs), MaxAttributes))
	}
	if o.size > MaxMessageBytes {
		errs = append(errs, fmt.Errorf("%d bytes with attributes: sqs takes at most %d", o.size, MaxMessageBytes))
	}
	delay := msg.Metadata.Get(MetaDelaySeconds)
	if fifo {
		if delay != "" && delay != "0" {
			errs = append(errs, fmt.Errorf("%s=%s on a fifo queue: fifo queues cannot delay single messages", MetaDelaySeconds, delay))
		}
		if g := msg.Metadata.Get(MetaGroupID); g != "" {
			o.groupID = aws.String(g)
		} else {
			errs = append(errs, fmt.Errorf("fifo queue needs metadata %s", MetaGroupID))
		}
		if d := msg.Metadata.Get(MetaDedupID); d != "" {
			o.dedupID = aws.String(d)
		}
	} else if delay != "" {
		n, err := strconv.Atoi(delay)
		if err != nil || n < 0 || n > MaxDelaySeconds {
			errs = append(errs, fmt.Errorf("%s=%q: want an integer 0..%d", MetaDelaySeconds, delay, MaxDelaySeconds))
		} else {
			o.delay = int32(n)
		}
	}
	return o, errors.Join(errs...)
}

func validAttrName(k string) bool {
	if !attrName.MatchString(k) || strings.Contains(k, "..") || strings.HasPrefix(k, ".") || strings.HasSuffix(k, ".") {
		return false
	}
	lk := strings.ToLower(k)
	return !strings.HasPrefix(lk, "aws.") && !strings.HasPrefix(lk, "amazon.")
}

// CheckBody refuses what SQS refuses in a body: invalid UTF-8 and characters outside #x9 | #xA |
// #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF.
func CheckBody(b []byte) error {
	if !utf8.Valid(b) {
		return errors.New("payload is not valid utf-8: sqs bodies are text")
	}
	for i, r := range string(b) {
		switch {
		case r == 0x9 || r == 0xA || r == 0xD:
		case r >= 0x20 && r <= 0xD7FF:
		case r >= 0xE000 && r <= 0xFFFD:
		case r >= 0x10000 && r <= 0x10FFFF:
		default:
			return fmt.Errorf("payload has character %U at byte %d, which sqs refuses", r, i)
		}
	}
	return nil
}

// batches splits entries into SendMessageBatch calls of at most MaxBatch messages and
// MaxMessageBytes, keeping their order.
func batches(entries []outgoing) [][]outgoing {
	var out [][]outgoing
	var cur []outgoing
	size := 0
	for _, e := range entries {
		if len(cur) == MaxBatch || (len(cur) > 0 && size+e.size > MaxMessageBytes) {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, e)
		size += e.size
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}
