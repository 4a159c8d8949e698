// Package messages defines RunnerFleet's wire formats and parses them into typed values.
//
// Three families of bodies arrive on the worker's queues:
//
//   - EventBridge events (an [Envelope] with "detail-type" and "source"): a registry keyed by
//     (source, detail-type) turns each kind we handle into a typed detail struct —
//     [LifecycleAction], [SpotInterruption], [Rebalance], [StateChange], [Scheduled],
//     [ParameterChange], [StackStatus]. Events are read leniently where AWS may grow them
//     (unknown fields are ignored) and strictly where we depend on them (required fields
//     present, every field of the right type).
//   - Commands of the publisher ([Command], body "kind":"command") on the FIFO control queue.
//     We write them ourselves, so they are strict: unknown fields, wrong types, missing fields,
//     unknown command types and arguments that do not match the type are all refused, as is
//     anything that looks like a runner token.
//   - Follow-ups of the state machines, strict like commands: [DrainStep] (body
//     "kind":"drain.step"), delayed messages on the lifecycle queue; [FleetStep] (body
//     "kind":"fleet.step"), nudges of a cycle or update on the fleet's FIFO group.
//
// [Parse] is the single entry point. Its errors tell the router what to do:
// [ErrUnknownKind] (a well-formed event we do not handle: ack and count), [*InvalidError]
// (malformed: dead-letter with the reason, never retry). Handlers signal the same "never
// retry" outcome with [Reject]; [IsPermanent] and [Reason] read both.
//
// The package imports only the standard library.
package messages
