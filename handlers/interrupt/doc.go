// Package interrupt handles the ways an instance leaves a fleet outside a scale-in: EC2 Spot
// Instance Interruption Warnings, EC2 Instance Rebalance Recommendations, EC2 Instance
// State-change Notifications for instances being drained or reclaimed, and the operator's
// `publisher drain` command (retire one instance through its group).
//
// # Marks, not decisions
//
// The lifecycle queue is a standard queue shared by every fleet: fleet-level decisions do not
// belong there. A spot or rebalance notice therefore only stops the runner's job intake (the
// fleet's stop-intake SSM document, which never blocks) and records a Mark in the state table:
//
//	pk = "instance#<instance id>", sk = "mark"   one instance's marks (this package's Mark, JSON)
//
// The fleet's next tick, on its FIFO message group, reads the marks. ReplaceMarked, run just
// before the scaling decision, replaces spot-marked instances, and rebalance-marked ones of fleets
// whose rebalance mode is "act" (TerminateInstanceInAutoScalingGroup without decrement: the group
// launches one replacement, the terminate hook drains the old one). Not raising the desired
// capacity for a spot instance matters: the group replaces a reclaimed instance on its own, so a
// raise would make two launches for one instance lost. The scale handler sees a marked instance
// in service as offering no capacity (infra/aws/marks.Group decorates its Group), so one whose
// replace failed is scaled out for; a booting one counts as coming capacity, since it is
// replaced one for one either way (by the tick once in service, or by the group at its reclaim).
//
// A mark is closed (Gone) by its instance's state change. One that never comes (dead-lettered,
// or lost in a worker outage longer than the queue's retention) would leave the mark open in
// every tick's listing: CloseStale, run on each tick too, closes a mark StaleMarkAge after a tick
// first found its instance out of the fleet's group (a spot mark with the jobs seen at its
// notice as lost, any other with lost jobs unknown).
//
// # Lost jobs
//
// Spot capacity is reclaimed two minutes after the warning whatever runs there. An instance
// that stops or terminates while its drain is in progress (a replaced spot instance's, usually)
// finishes that drain as "lost" with the count of jobs it was running (Drains; cause "drain" in
// runnerfleet_interrupt_jobs_lost_total). A spot instance reclaimed outside any drain (never
// replaced) reports the jobs still running (a last scrape, else the count seen at the notice) as
// lost, cause "spot". One replaced whose drain already ended reports nothing more: its drain saw
// its jobs end, or counted them lost.
//
// # Safe twice
//
// Every step is idempotent: marks are merged with conditional writes, a stop-intake already
// recorded is not sent again, a lost report is written once (the mark remembers it), a retire of
// an instance already leaving its group does nothing.
package interrupt
