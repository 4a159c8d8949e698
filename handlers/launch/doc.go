// Package launch is the launch gate: for a fleet whose group has its launch lifecycle hook (the
// runner stack's optional runnerfleet-launch hook, or the one the fleet's hooks.launch names), it
// keeps a new instance in Pending:Wait until its runner is healthy, then completes the action with
// CONTINUE — or with ABANDON after the gate's timeout, recording why (no answer, token rejected, no
// successful job request), so a broken AMI or a bad token never joins the fleet. A runner is looked
// at at least twice before an ABANDON, even when its event is handled after the deadline (a worker
// outage), and one that answers but has no successful job request is watched for at least
// MinObservation from its first answer (GitLab long-polls each request_job for up to 50 s, so an
// idle healthy runner's counter may stand still for most of a minute); the gate looks on past its
// deadline for that, heartbeats going on. The timeout and poll interval default from the hook's own
// heartbeat timeout (Gate); a fleet may disable its gate. A completion that finds the action
// already ended (the hook timed out and AWS applied its default result) is recorded and counted as
// "action-gone", with the gate's intended result in the note.
//
// A launch action of another hook of the group (another tool's: configuration management, say) is
// left alone: no record, no heartbeat, no completion; the message is acked with a log line naming
// the hook.
//
// The gate never abandons a runner that is running jobs (ABANDON terminates the instance and would
// kill them): before an ABANDON at the timeout it counts the runner's running jobs (Jobs), and a
// runner with any completes with CONTINUE, reason "running-jobs" (a runner whose slots are all
// busy stops requesting jobs, so it may never look "healthy" by the counters). When its metrics do
// not tell the jobs (no answer, no jobs series) of a runner that has answered before, it may be a
// busy runner whose metrics blipped: the gate looks again, a poll apart, for a few polls
// (jobsUnknownLooks), and abandons only a runner shown idle or still uncounted after them, with
// that noted. A runner that never answered is abandoned at the timeout.
//
// # When the worker cannot look
//
// A look can fail on the worker's side: DescribeInstances (the runner's address) throttled or
// refused to the worker's role, the worker's step out of time, its metrics URL template failing,
// its DNS resolver, egress guard or own sockets failing (a WorkerError from Health or Jobs). That
// says nothing about the runner, so it is not a look: it is not counted toward "no answer" nor
// toward the two looks an ABANDON needs, it never ends the gate with ABANDON, and the decision
// log does not blame the runner for it. The gate logs it at ERROR ("the worker could not look at
// instance X: reason": at once, then at most every five minutes per gate whatever the reason,
// which the record and the counter keep), counts it in
// runnerfleet_launch_look_failures_total{fleet,reason}, heartbeats the hook (from then on, if it
// did not need to) and looks again a poll later, past its deadline too; while it holds, its
// decision line is written when something changes and with its ERROR line, not at every step.
// A look that reaches the runner again resumes the usual rules (an answer past the deadline gets
// the looks a late event gets). The same holds for the job count before an ABANDON: one the
// worker could not make holds the gate rather than using up jobsUnknownLooks, or restarting them,
// and the time the worker could not look does not count toward them — unless the looks that
// reached the runner showed that none of its job requests ever succeeded (it never got a job, so
// it runs none): then its jobs are taken as 0. And for the count made
// again when an ABANDON's completion is retried a while after the decision: one the worker could
// not make does not complete the ABANDON; the gate holds again, and its next look decides anew.
//
// The gate holds up to its hold limit: an hour past its deadline (maxBlindHold: a held instance
// counts as booting for scaling, which then replaces no unknown instance and removes no rejected
// one in the whole fleet), and never beyond the hook's global timeout (100 × its heartbeat
// timeout, at most 48 h; AWS applies the hook's default result then, however often it is
// heartbeated) less the looks it may add past a last-moment look and five minutes. It also stops
// holding when the hook's heartbeats have been failing for so long that its heartbeat timeout
// (from the last good heartbeat) is near: AWS would apply the default result then. A failed
// heartbeat is retried within seconds, without a look each time (looks stay a poll apart). A gate
// whose worker still cannot look there, without its looks at the runner having decided,
// completes with CONTINUE, reason could-not-look, noting what the looks that did reach the runner
// found. Not ABANDON, nor letting the hook's default result (ABANDON in the fleet stack) apply:
// either terminates an instance whose runner may be healthy and running jobs (a runner takes jobs
// in Pending:Wait), which the worker cannot count, so it would break "never ABANDON an instance
// running jobs" and "never after a single look", fault the instance for the worker's own IAM or
// throttling, and have the group launch replacements into the same blind gate. A runner let
// through that is in fact broken takes no jobs, but nothing here removes it: for scaling it is
// in service, and when its metrics answer without a successful job request it counts no capacity
// and is the first idle instance an ordinary scale-in removes (past scale_in_window, above the
// fleet's floor); idle ones go too while every scraped runner is rejected. One whose metrics stop
// answering is replaced after replace_unknown_after. Otherwise it stays until an operator drains
// it (publisher drain --replace). The ERROR lines and the counter are there to cut the hold short:
// alert on the counter's rise in Prometheus. A gate recorded before schema 4 holds only for its
// deadline and the looks it may add past it, which stayed inside the hook's timeouts; one
// recorded by schema 4 is held to the hour past its deadline too.
//
// Healthy means GitLab accepts the runner's job requests: the request_job success statuses of
// gitlab_runner_api_request_statuses_total (201 job given, 204 none) grew between two looks.
// Metrics merely answering is not enough: gitlab_runner_concurrent is configuration and is there
// even when every job request is refused (403).
//
// # A state machine, one short step per message
//
// Like the drain, the gate is a record in the state table, advanced by one short step per
// message and never holding a message while it waits:
//
//	pk = "launch#<LifecycleActionToken>", sk = "launch"
//
// The first step is the "EC2 Instance-launch Lifecycle Action" event. Each step heartbeats the
// hook when due, looks at the runner once when a look is due (a step woken only for a heartbeat,
// or a failed heartbeat's retry, does not look) and either decides (phase complete → CompleteLifecycleAction → done) or schedules
// its follow-up: the same event, re-published to the lifecycle queue with a new id and a delay
// (≤ 900 s; the messages package has no launch follow-up kind, so the event itself is the
// follow-up). Every write is conditioned on the version read, so a duplicate, a second replica or
// a retry never takes a step twice: a message arriving before the record's next step is due does
// nothing, and the decision to complete is written before CompleteLifecycleAction is called (a
// retried completion of the same result is harmless). Sweep advances gates whose follow-up was
// lost. A worker never steps or writes a record of a newer schema than its own (a rolling deploy
// runs old and new replicas side by side): it sends the follow-up on for a newer replica and, as
// the drain does, heartbeats the hook when one is due, without writing (after a rollback no
// replica may step it, and the hook's timeout would ABANDON the instance), up to the record's
// deadline and the longest hook heartbeat timeout (2 h), or its hold limit when later. A replica
// of schema 4 or older cannot be changed: it stops at the deadline and 2 h, and never completes
// the gate, so after a rollback past schema 5 every gate then open, holding or not, ends with the
// hook's default result (ABANDON): roll back only once no launch gate is open (no instance of the
// fleets in Pending:Wait).
package launch
