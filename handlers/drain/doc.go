// Package drain is the job-aware drain of one instance whose Auto Scaling group terminates it:
// stop the runner's job intake, wait until its running jobs end while keeping the lifecycle
// hook alive, unregister the runner manager, then complete the lifecycle action so the
// instance terminates. No job is killed by a termination that passes through the group.
//
// Only the fleet's own terminate hook is drained (fleet.Settings.Hooks.Terminate, default the
// runner stack's runnerfleet-drain). A group may have other terminate hooks (a log shipper's):
// their actions are that tool's, and Start leaves them alone — not claimed, heartbeated or
// completed — acking the message with a log line naming the hook. CheckFleet refuses a group
// without the fleet's hook, naming the terminate hooks it has.
//
// # A state machine, one short step per message
//
// A drain may last up to AWS's 48 hours, longer than SQS lets a message stay invisible and
// longer than any worker should be trusted to live. So a drain is a record in the DynamoDB
// state table and every message — the lifecycle event, then delayed DrainStep follow-ups on
// the worker's steps queue, or the lifecycle queue when it has none (DelaySeconds ≤ 900) —
// advances it by one short step:
//
//	stop-intake → stop-intake-wait → watch ⇄ (status → status-wait) → unregister → unregister-wait → complete → done
//
// with heartbeats (RecordLifecycleActionHeartbeat) sent at the start of a step, from any phase,
// when one is due. A phase's calls get until the next heartbeat is due plus half an interval
// (phaseBudget), so a hanging SSM call or metrics read cannot hold the next heartbeat back for a
// whole StepTimeout. The status phase sends the status document when the metrics stop
// answering; status-wait reads its answer, then watches again, or unregisters at zero jobs.
//
// # State table key design
//
// The table (infra/aws/state) has partition key pk (S) and sort key sk (S), a numeric version
// attribute, the record as JSON in body, due_at (unix seconds: when the next step is due),
// expires_at (unix seconds, the table's TTL attribute, set only on finished records) and, on
// unfinished records only, open (the pk's kind, "drain#"): the key of the sparse index "open"
// that Sweep queries, so a sweep reads the drains in flight, not every finished one.
//
//	pk = "drain#<LifecycleActionToken>", sk = "drain"   one drain (this package)
//	pk = "fleet#<name>",                  sk = "scale"   a fleet's scaling state (handlers/scale)
//
// The lifecycle action token identifies one termination of one instance, so a duplicate
// event, another replica, or a retry all land on the same item.
//
// # Exactly once, across duplicates and replicas
//
//   - Claim: the first write creates the item only if it does not exist; a second claim (a
//     duplicate delivery, another replica) does nothing.
//   - Every later write is conditioned on the version the writer read. A step of a phase that
//     changes something outside the table (stop-intake, status, unregister, complete: an SSM
//     command or the action's completion) first writes a lease (owner, until) — conditioned on
//     the version read — and only then calls AWS; its calls run on a context whose deadline
//     (StepTimeout) falls before the lease ends. A replica paused mid-step (SIGSTOP, a long GC)
//     finds, when it resumes, its context expired and its next write refused: it can neither
//     repeat a command another replica already sent nor undo a step another replica took.
//   - The polling phases (the waits, watch) only read, besides a heartbeat any replica may
//     repeat, so they take no lease: one write per poll, not two, and a long drain is mostly
//     polls. Two replicas polling at once both read; the conditioned write keeps one result.
//     When a poll finds the drain ready for its next command, the step takes the lease (the
//     write carries what the poll found) before sending it.
//   - SendCommand has no idempotency token, and its answer can be lost after SSM took the
//     command (a timeout, a reset connection). A failed Send is recorded as unsure; the next
//     attempt of that document first looks for a command of it sent to the instance since
//     (ListCommands, Commands.Find) and follows that one instead of sending another. The SSM
//     adapter (infra/aws/runcmd) lets the SDK retry a SendCommand only when SSM throttled it:
//     any other retry could be the second copy this settles.
//     The lease written before a sending step marks its document unsure too: if the step's own
//     write never lands after the command went out (worker killed, save failed), the step taken
//     again by the sweep looks for the command before sending.
//   - A follow-up that arrives when its record is not due (a duplicate, a step already taken)
//     is dropped; only the writer of a step schedules the next one.
//   - Sweep, called by the worker on an interval, finds unfinished drains whose next step is
//     overdue by more than SweepGrace (a lost follow-up, a worker killed mid-step) and advances
//     them; it also sets the in-progress and oldest-age gauges from the table. CheckFleet warns
//     when heartbeat interval + lease + grace + sweep interval + step timeout reaches the hook's
//     heartbeat timeout.
//   - A record carries the schema of its layout. A worker never steps or writes a record of a
//     newer schema than its own (an ECS rolling deploy runs old and new replicas side by side,
//     and the old code would drop the fields it does not know when it saves): it passes the
//     latest follow-up on, sent again, until a newer replica takes it, and heartbeats the
//     hook when one is due (after a rollback no replica may step it), without writing.
//   - Follow-up steps and swept drains take one of StepConcurrency lanes; a lifecycle event's
//     first step (claim, stop intake) takes none, so a wave of running drains never delays the
//     stop of a new one, and the wave's SSM and DynamoDB call rate stays bounded. For 2 s after
//     a drain's first step began on a replica (startPriority), that replica's follow-ups run one
//     at a time, except those whose heartbeat is soon due: the polls of running drains would
//     otherwise slow the AWS answers a wave of new drains' stop commands wait on.
//
// Wiring (cmd/worker): infra/aws/state.Table is the Store, infra/aws/runcmd.Runner the
// Commands, infra/aws/lifecycle.Client the Lifecycle; Jobs and FollowUps are small adapters over
// infra/scrape and infra/sqs (see integration/drain/worker for both). Register Handle for
// messages.KindTerminateAction and messages.KindDrainStep, call CheckFleets at start-up and
// Sweep on an interval.
//
// # Never complete while jobs run
//
// The action is completed (CONTINUE, on a fresh bounded context) only after the runner's
// running jobs were seen at zero — from its metrics, or from the status document when the
// metrics stop answering — and the unregister document ran. An unknown job count never
// completes. An instance already gone, or not managed by SSM and whose runner reports no job,
// is completed at once (the first step sends stop intake and, only when SendCommand fails, asks
// DescribeInstanceInformation whether any command can reach the instance: one call in the
// common case; an agent whose connection is lost counts as reachable, since jobs may be
// running); one whose runner reports jobs is watched like a failed stop. A failing
// SSM command (one still pending after CommandTimeout counts as failed; the worker sends it with
// that delivery timeout, so SSM never runs it later) is retried with backoff (CommandRetries);
// after that the drain keeps heartbeating and watching the metrics until the jobs end — with
// intake still open, until a second zero a poll after the first — then completes with outcome
// "stop-failed". An unregister document that keeps refusing (the service still runs) sends the
// drain back to the jobs: it completes with "unregister-failed" only on a zero seen after that,
// and a job seen instead is waited for and the runner unregistered again. When the maximum drain passes with jobs still running, the drain stops
// heartbeating and records "max-drain": the hook's own timeout then ends the action; this
// handler never completes it while jobs run.
package drain
