// Package sqs is RunnerFleet's Watermill transport over Amazon SQS: a message.Subscriber and a
// message.Publisher built on the AWS SDK v2 SQS client (watermill-aws is not served by the module
// proxy, so this is hand-written).
//
// # Topics
//
// A Watermill topic is an SQS queue: either its URL (anything starting with http:// or https://),
// which is used as it is, or its name, which is resolved once with GetQueueUrl and cached. Neither
// the subscriber nor the publisher creates queues: they belong to the stacks (deploy/ecs).
// A queue whose URL ends in ".fifo" is a FIFO queue.
//
// # Delivery contract (at least once)
//
//   - A received message stays invisible to other consumers while it is being handled: its
//     visibility is extended in the background until the handler acks or nacks it, but never for
//     longer than SubscriberConfig.MaxHold counted from receipt. At MaxHold the message is released
//     (made visible again after NackBackoff) and the Watermill message is nacked; a later Ack from
//     the handler returns false and deletes nothing.
//   - Ack deletes the message (DeleteMessage). Nack makes it visible again after
//     SubscriberConfig.NackBackoff (ChangeMessageVisibility; 0 means at once). How often a message
//     comes back is bounded by the queue's redrive policy (maxReceiveCount → DLQ), not here.
//   - FIFO queues: each ReceiveMessage asks for one message, so the messages of one message group
//     are handled one at a time, in order: SQS returns none of a group while one of it is in
//     flight, and a message nacked, released at MaxHold or acked but not deleted (DeleteMessage
//     failed) comes back before the rest of its group. Asking for more would let SQS return
//     several of one group together; when the first failed, the rest would have to be released
//     unhandled, and every such receive counts toward their maxReceiveCount: a message failing
//     five times would take the messages queued behind it to the DLQ. Other groups are handled
//     side by side (the loop polls again while a message is handled).
//   - Close (or cancelling the context given to Subscribe) stops receiving, gives handlers that
//     hold a message up to CloseTimeout to ack or nack it, and releases (visibility 0) every
//     message not acked by then; nothing is lost. A long poll in progress is not cut short (SQS
//     may already have taken messages for it): Close waits for it, at most WaitTime, and releases
//     what it brings.
//
// # Messages
//
// The SQS body is the Watermill payload verbatim, so raw JSON that Watermill did not publish
// (EventBridge events, commands sent by other tools) is consumed as it is. The Watermill UUID
// travels in the message attribute "_watermill_message_uuid"; a message without it gets the SQS
// MessageId as UUID. Other Watermill metadata travels as String message attributes (at most 10
// per message with the UUID; Binary attributes of received messages are not copied), except the
// reserved keys (those for which Reserved reports true, such as MetaDelaySeconds), which map to SQS
// parameters on publish and come from SQS system attributes on receive.
package sqs
