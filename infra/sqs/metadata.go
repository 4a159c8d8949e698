package sqs

import (
	"math"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Watermill metadata keys that map to SQS parameters or system attributes. They are reserved:
// they are never copied to or from message attributes.
const (
	// MetaDelaySeconds, on publish to a standard queue, delays the message by that many seconds
	// (an integer 0..900: SQS's DelaySeconds). Refused on FIFO queues, which cannot delay single
	// messages.
	MetaDelaySeconds = "delay_seconds"
	// MetaGroupID is the FIFO MessageGroupId: required on publish to a FIFO queue (ignored for
	// standard queues) and set on every message received from a FIFO queue.
	MetaGroupID = "message_group_id"
	// MetaDedupID is the FIFO MessageDeduplicationId, optional on publish to a FIFO queue (without
	// it the queue must have content-based deduplication). Ignored for standard queues.
	MetaDedupID = "message_deduplication_id"
	// MetaReceiveCount is set on receive to SQS's ApproximateReceiveCount (decimal; 1 on first
	// delivery).
	MetaReceiveCount = "approximate_receive_count"
	// MetaSenderID is set on receive to SQS's SenderId (the account or principal that sent it).
	MetaSenderID = "sender_id"
	// MetaMessageID is set on receive to the SQS MessageId.
	MetaMessageID = "message_id"
	// MetaSentTimestamp is set on receive to SQS's SentTimestamp (milliseconds since the Unix
	// epoch, decimal): when SQS accepted the message, before any delay.
	MetaSentTimestamp = "sent_timestamp"
)

// MetaReason is the message attribute (and Watermill metadata key) that says why a message was
// dead-lettered. It is an ordinary attribute: it is copied like any other metadata.
const MetaReason = "runnerfleet-reason"

// AttrUUID is the message attribute that carries the Watermill message UUID.
const AttrUUID = "_watermill_message_uuid"

var reservedKeys = map[string]bool{
	MetaDelaySeconds:  true,
	MetaGroupID:       true,
	MetaDedupID:       true,
	MetaReceiveCount:  true,
	MetaSenderID:      true,
	MetaMessageID:     true,
	MetaSentTimestamp: true,
	AttrUUID:          true,
}

// Reserved reports whether key is one of the metadata keys that map to SQS parameters or system
// attributes rather than message attributes.
func Reserved(key string) bool { return reservedKeys[key] }

// SetDelay asks for msg to be delivered d from its publication: d rounded up to whole seconds
// (SQS's unit) and capped at MaxDelaySeconds; nothing is set when d rounds to zero or less.
func SetDelay(msg *message.Message, d time.Duration) {
	if secs := int(math.Ceil(d.Seconds())); secs > 0 {
		msg.Metadata.Set(MetaDelaySeconds, strconv.Itoa(min(secs, MaxDelaySeconds)))
	}
}
