// Package cycle is the drain-aware rolling replacement of a fleet (`publisher cycle`), and the
// token rotation that starts one by itself when the fleet's token parameter changes.
//
// A cycle is a fleet-level state machine (DESIGN.md): its whole state is one Record in the
// DynamoDB state table (pk "fleet#<name>", sk "cycle"); a command records the intent and takes
// the first step; every tick of the fleet then advances it by one step (Advance), before the
// fleet's scaling decision. Each step reads the record, describes the group, checks the runners,
// decides (decide, pure), claims the step with a conditional write of the record — a duplicate
// tick, a second replica or a stale one loses the write and does nothing — and only then calls
// Auto Scaling. So every step is safe twice and on any replica, and a restarted worker resumes
// from the record.
//
// A step: raise the desired capacity so replacements launch first (the surge); wait until each
// replacement's runner is healthy — its job requests succeed, not merely its metrics answer;
// then retire old instances with TerminateInstanceInAutoScalingGroup (decrementing desired), so
// the group's terminate hook runs and handlers/drain drains each one: no job is killed. The
// instances serving (InService, intake open, job requests succeeding) never drop below
// desired − max-unavailable. A replacement not healthy within the fleet's health timeout stops
// the cycle with the reason — counted from the first replacement waiting, however often the
// group launches again in place of ones lost before serving; so does a cycle that has not moved
// for as long with nothing in flight (a group that launches nothing, a kept instance that does
// not serve), and a retirement Auto Scaling refuses or leaves undone for as long, for scaling
// holds still while a cycle runs. Waiting for drains is not a stall. `publisher cycle --abort`
// ends it at once: the step in flight, if any, was claimed before, and no later step runs.
// A cycle that fails or is aborted retires nothing more but the undo of its surge, back to the
// desired capacity from before it (its broken replacements first; its reason says what goes).
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
// and a replacement is idle at first, so a scaling decision would remove it. Active tells the
// worker's tick whether a cycle is in progress.
//
// Token rotation: a Parameter Store Change (Create or Update) of a fleet's TokenParameter starts
// a cycle of every instance (All) when the fleet's OnTokenChange is "cycle" (the default), or is
// only reported ("report"). Instances whose job requests GitLab rejects serve nothing: the cycle
// counts them as intake-closed and retires them first, up to the surge per step, without
// charging the disruption budget; their running jobs still finish (the drain waits for them).
package cycle
