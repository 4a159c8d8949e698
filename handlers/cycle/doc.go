// Package cycle is the drain-aware rolling replacement of a fleet (`publisher cycle`), and the
// token rotation that starts one by itself when the fleet's token parameter changes.
//
// A cycle is a fleet-level state machine (DESIGN.md): its whole state is one Record in the
// DynamoDB state table (pk "fleet#<name>", sk "cycle"); a command records the intent and takes
// the first step; every tick of the fleet then advances it by one step (Advance), before the
// fleet's scaling decision. Each step reads the record, describes the group, checks the runners,
// decides (decide, pure) and writes the record with a conditional write: a duplicate tick, a
// second replica or a stale one loses the write and does nothing. So every step is safe twice and
// on any replica, and a restarted worker resumes from the record.
//
// # A claim fences each step that calls Auto Scaling
//
// A conditional write alone does not stop a replica paused between its write and its Auto
// Scaling calls (SIGSTOP, a long GC, a slow network): resuming late, it would make its calls after
// another replica's later steps — re-raise a desired capacity the undo of the surge brought down,
// terminate an instance the plan no longer wants gone. So a step that calls Auto Scaling (most
// steps only wait, and take one write) claims the fleet with its write, as a drain takes a lease
// (handlers/drain): the record says who holds it until when (Record.Claim: owner, and ClaimFor
// from the step's start), and the step's calls run on a context of their own — detached from the
// message's cancellation, so a worker shutting down does not cut a claimed step in half — whose
// deadline is ApplyTimeout after the step's start, read before the claim is written: at most half
// the claim, whatever the write took. The step's last write (with what Auto Scaling answered)
// clears the claim. While a claim holds, every other step, on any replica, does nothing: a tick
// takes no step (not an error: the next tick takes it), a cycle command waits in its handler
// until the claim ends (at most ClaimFor, inside the handler's timeout: an error would be
// retried at once and nacked, and past the queue's maxReceiveCount SQS would move the command
// to the DLQ without a reason), a token change is recorded (Record.TokenChangedAt) and its cycle
// started by the first tick after the claim, an abort is recorded at once and leaves the undo to
// the first tick after the claim.
// So the next step can begin only once the paused replica's calls are dead: when it resumes, its
// context has expired and its calls fail without reaching Auto Scaling. A claim never outlives
// ClaimFor: that of a replica that died mid-step lapses, and the cycle goes on. Other replicas
// read the claim's end by their own clocks: the half of the claim left after the calls' deadline
// covers the replicas' clock skew and a call already sent when the deadline passed. Both
// (ApplyTimeout 20 s, ClaimFor 40 s by default) are well under a tick (a minute).
//
// What is old is fixed when the cycle starts (Record.Old): every instance (All), or every
// instance not launched from the launch template and version a launch uses now — the template's
// id and its version both (GroupState.Current), since a template a stack update replaces, or
// another one the group is switched to, starts again at version 1 (an instance whose launch
// template specification has a version and no id is compared by its version); an instance
// launched from a launch configuration is old once the group has a template. A group without a launch template
// is cycled only with All. The record keeps the target (TargetTemplate, TargetVersion) for
// status only: a running cycle never decides again what is old.
//
// A step: raise the desired capacity so replacements launch first (the surge); wait until each
// replacement's runner is healthy — its job requests succeed, not merely its metrics answer;
// then retire old instances with TerminateInstanceInAutoScalingGroup (decrementing desired), so
// the group's terminate hook runs and handlers/drain drains each one: no job is killed. The
// instances serving (InService, intake open, job requests succeeding) never drop below
// desired − max-unavailable. A replacement not healthy within the fleet's health timeout
// (extended by the time the worker could not look: see below) stops the cycle with the reason —
// counted from the first replacement waiting, however often the group launches again in place
// of ones lost before serving; so does a cycle that has not moved for as long with nothing in
// flight (a group that launches nothing, a kept instance that does not serve), and a retirement
// Auto Scaling refuses or leaves undone for as long, for scaling holds still while a cycle runs. Waiting for drains is not a stall. `publisher cycle --abort`
// ends it at once: the step in flight, if any, was claimed before, and no later step runs.
// A cycle that fails or is aborted retires nothing more but the undo of its surge, back to the
// desired capacity from before it (its broken replacements first; its reason says what goes).
// The undo is a claimed step too. What of it Auto Scaling refuses (a throttled call, say), or an
// abort could not take up because a step held the fleet, is recorded (Record.UndoPending) and
// taken up again by each tick, planned anew from the group as it then is, for at most
// undoRetryFor; until then the cycle holds the capacity, so scaling does not move the desired
// capacity under the undo; a token cycle waits for it, and a cycle command is refused meanwhile.
//
// # When the worker cannot look
//
// A look can fail on the worker's side: Auto Scaling or EC2 throttling or refusing the worker's
// DescribeAutoScalingGroups or DescribeInstances (the runners' addresses), its own deadline, its
// DNS resolver or egress guard, its metrics URL template (a WorkerError from the adapters,
// Runner.Worker). That says nothing about the runners, so a runner the worker could not look at
// is neither healthy nor unhealthy: it counts toward no floor of serving instances, a
// replacement waits for health on it without being blamed, and a failing cycle's undo keeps it
// (Record.Unlooked) rather than retire it as a replacement that never served — it may serve —
// with the desired capacity it takes (scaling's once the cycle ends). But a pending undo does not
// end on one look that could not see a replacement the cycle's last step saw not serving: it
// stays pending, and the ticks look again until undoRetryFor (then it is left, naming them).
// A step that could not
// look at a runner it counts, or could not describe the group at all (no step is taken then,
// and the tick is retried as before), opens a spell of not looking (Record.BlindSince, from the
// last step that looked); the first step that looks at them all closes it (Record.BlindFor).
// The rule: the cycle's deadlines — a replacement's health timeout (UnhealthySince) and the
// stall of a cycle with nothing in flight (MovedAt) — are extended by the time the worker could
// not look, up to the health timeout in all. So they do not run out on the worker's own
// failures: the first step that looks again decides on what it sees (a runner not healthy then
// has had all that time to serve). The bound is there because a cycle holds scaling while it
// runs: a worker that cannot look for longer — an IAM mistake, a metrics URL that cannot work —
// fails the cycle at twice the health timeout, with a reason that says it is the worker's
// failure and what its undo keeps. The cycle says so once in its events (the first spell), its
// progress lines count the runners it could not look at, and the worker logs each spell at WARN
// (throttling, a deadline, an AWS error: they pass) or ERROR (access denied, network, URL
// template: a person must act) — at once, on a new reason, then at most every five minutes — and
// counts runnerfleet_cycle_look_failures_total{fleet,reason}. Records of schema 4 carry this; a
// worker of an older schema leaves them to newer replicas.
//
// Why the group is driven directly rather than by StartInstanceRefresh: a refresh decides by
// itself which instance goes when, counts an instance healthy when EC2 says so (not when its
// runner takes jobs), waits up to an hour on scale-in-protected busy instances unless
// ScaleInProtectedInstances is set, and cannot tell a runner whose token is rejected from one that
// serves; its checkpoints and MinHealthyPercentage are a percentage of the group, not our
// "desired − max-unavailable" of runners. The emulator (moto) does not implement it at all, and
// the extension in integration/emulator covers only part of it. Driving the group keeps every
// guarantee ours and testable, at the price of doing in steps what a refresh does in one call.
//
// While a cycle runs, scaling must hold still: the cycle raises the desired capacity on purpose
// and a replacement is idle at first, so a scaling decision would remove it. Holding (Active)
// tells the worker's tick whether a cycle holds the capacity, and why: in progress until its
// tail, or undoing its surge. A record of a newer schema (a rolling deploy) holds it while a
// newer replica writes it, whatever the fields this worker knows say: a worker that cannot read
// a record fully must not fight it.
//
// Token rotation: a Parameter Store Change (Create or Update) of a fleet's TokenParameter starts
// a cycle of every instance (All) when the fleet's OnTokenChange is "cycle" (the default), or is
// only reported ("report"). Instances whose job requests GitLab rejects serve nothing: the cycle
// counts them as intake-closed and retires them first, up to the surge per step, without
// charging the disruption budget; their running jobs still finish (the drain waits for them).
package cycle
