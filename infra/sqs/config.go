package sqs

import (
	"errors"
	"fmt"
	"time"
)

// SQS limits that the configuration and the publisher check.
const (
	// MaxBatch is the most messages one ReceiveMessage or SendMessageBatch call handles.
	MaxBatch = 10
	// MaxWaitTime is SQS's longest long poll.
	MaxWaitTime = 20 * time.Second
	// MaxVisibility is SQS's longest visibility timeout (12 hours).
	MaxVisibility = 12 * time.Hour
	// MaxDelaySeconds is SQS's longest per-message delay (15 minutes).
	MaxDelaySeconds = 900
	// MaxMessageBytes is the size limit the publisher enforces for one message (body plus
	// attributes) and for one SendMessageBatch request: SQS's classic 256 KiB.
	MaxMessageBytes = 256 * 1024
	// MaxReceivers bounds SubscriberConfig.Receivers: more concurrent long polls per queue than
	// this only add empty receives.
	MaxReceivers = 16
	// MaxAttributes is the most message attributes SQS accepts on one message.
	MaxAttributes = 10
)

// Defaults of SubscriberConfig.
const (
	// DefaultWaitTime: long polling at SQS's maximum keeps empty receives (and cost) lowest.
	DefaultWaitTime = 20 * time.Second
	// DefaultMaxInFlight: one full batch in flight per queue.
	DefaultMaxInFlight = 10
	// DefaultReceivers: on a standard queue, a second long poll is outstanding while the first
	// one's answer is dispatched, so a message landing then is not left waiting for the next
	// round trip. FIFO queues keep one (see SubscriberConfig.Receivers).
	DefaultReceivers = 2
	// DefaultVisibilityTimeout is asked for on receive and renewed every third of it while a handler
	// works: short enough that a crashed worker's messages come back soon.
	DefaultVisibilityTimeout = 30 * time.Second
	// DefaultMaxHold: no handler step of ours should take longer; long work is a state machine.
	DefaultMaxHold = 5 * time.Minute
	// DefaultCloseTimeout: time handlers get at shutdown, below ECS's 30 s stop timeout + margin.
	DefaultCloseTimeout = 25 * time.Second
	// DefaultReceiveErrorBackoff is the pause after a failed ReceiveMessage.
	DefaultReceiveErrorBackoff = time.Second
	// DefaultPublishTimeout bounds each SQS call of a Publish.
	DefaultPublishTimeout = 30 * time.Second
)

// SubscriberConfig tunes a Subscriber. Zero fields take their defaults (setDefaults), except
// NackBackoff, whose zero value (redeliver at once) is a valid choice and the default.
type SubscriberConfig struct {
	// WaitTime is the long-poll wait of ReceiveMessage (whole seconds, 1s..20s; default 20s).
	WaitTime time.Duration
	// BatchSize is the most messages asked for per ReceiveMessage (1..10; default 10). A FIFO
	// queue is always asked for one at a time (see the package documentation).
	BatchSize int
	// MaxInFlight is the most messages held at once per Subscribe call (per queue), waiting for or
	// in a handler (default 10). The subscriber never receives more than it has room for.
	MaxInFlight int
	// Receivers is the number of receive loops (concurrent long polls) per Subscribe call; they
	// share MaxInFlight. Default DefaultReceivers on a standard queue and 1 on a FIFO queue (SQS
	// never gives two receives the same group's messages while one is in flight, so more than one
	// is correct there too).
	Receivers int
	// VisibilityTimeout is asked for on receive and renewed every third of it while the message is
	// held (whole seconds, 1s..12h; default 30s).
	VisibilityTimeout time.Duration
	// MaxHold bounds how long one message may be held from its receipt (default 5m, at most 12h).
	// Past it the message is released after NackBackoff and the Watermill message is nacked.
	MaxHold time.Duration
	// NackBackoff is how long a nacked (or released) message stays invisible before SQS redelivers
	// it (whole seconds, 0..12h; default 0 = at once).
	NackBackoff time.Duration
	// CloseTimeout is how long Close waits for handlers to ack or nack the messages they hold
	// before it releases them (default 25s).
	CloseTimeout time.Duration
	// ReceiveErrorBackoff is the pause after a failed ReceiveMessage (default 1s).
	ReceiveErrorBackoff time.Duration
}

func (c *SubscriberConfig) setDefaults() {
	if c.WaitTime == 0 {
		c.WaitTime = DefaultWaitTime
	}
	if c.BatchSize == 0 {
		c.BatchSize = MaxBatch
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.VisibilityTimeout == 0 {
		c.VisibilityTimeout = DefaultVisibilityTimeout
	}
	if c.MaxHold == 0 {
		c.MaxHold = DefaultMaxHold
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	if c.ReceiveErrorBackoff == 0 {
		c.ReceiveErrorBackoff = DefaultReceiveErrorBackoff
	}
}

// Validate reports every problem of the (defaulted) configuration at once.
func (c SubscriberConfig) Validate() error {
	var errs []error
	if c.WaitTime < time.Second || c.WaitTime > MaxWaitTime || c.WaitTime%time.Second != 0 {
		errs = append(errs, fmt.Errorf("wait time %s: want whole seconds between 1s and %s", c.WaitTime, MaxWaitTime))
	}
	if c.BatchSize < 1 || c.BatchSize > MaxBatch {
		errs = append(errs, fmt.Errorf("batch size %d: want 1..%d", c.BatchSize, MaxBatch))
	}
	if c.MaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("max in flight %d: want at least 1", c.MaxInFlight))
	}
	if c.Receivers < 0 || c.Receivers > MaxReceivers {
		errs = append(errs, fmt.Errorf("receivers %d: want 0 (the default) to %d", c.Receivers, MaxReceivers))
	}
	if c.VisibilityTimeout < time.Second || c.VisibilityTimeout > MaxVisibility || c.VisibilityTimeout%time.Second != 0 {
		errs = append(errs, fmt.Errorf("visibility timeout %s: want whole seconds between 1s and %s", c.VisibilityTimeout, MaxVisibility))
	}
	if c.MaxHold <= 0 || c.MaxHold > MaxVisibility {
		errs = append(errs, fmt.Errorf("max hold %s: want more than 0 and at most %s", c.MaxHold, MaxVisibility))
	}
	if c.NackBackoff < 0 || c.NackBackoff > MaxVisibility || c.NackBackoff%time.Second != 0 {
		errs = append(errs, fmt.Errorf("nack backoff %s: want whole seconds between 0 and %s", c.NackBackoff, MaxVisibility))
	}
	if c.CloseTimeout < 0 {
		errs = append(errs, fmt.Errorf("close timeout %s: want at least 0", c.CloseTimeout))
	}
	if c.ReceiveErrorBackoff < 0 {
		errs = append(errs, fmt.Errorf("receive error backoff %s: want at least 0", c.ReceiveErrorBackoff))
	}
	return errors.Join(errs...)
}

// PublisherConfig tunes a Publisher.
type PublisherConfig struct {
	// Timeout bounds each SQS call a Publish makes (GetQueueUrl, SendMessage, each
	// SendMessageBatch of at most 10 messages; default 30s).
	Timeout time.Duration
}

func (c *PublisherConfig) setDefaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultPublishTimeout
	}
}

// Validate reports every problem of the (defaulted) configuration at once.
func (c PublisherConfig) Validate() error {
	var errs []error
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("publish timeout %s: want more than 0", c.Timeout))
	}
	return errors.Join(errs...)
}
