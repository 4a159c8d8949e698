package drain

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
)

// Command roles, used in notes and as the kind label of errors_total.
const (
	roleStopIntake = "stop-intake"
	roleStatus     = "status"
	roleUnregister = "unregister"
)

// statusReport is what the status document prints (JSON on stdout); see
// deploy/runner/documents/status.yaml.
type statusReport struct {
	// Process is running, stopping (SIGQUIT received, jobs finishing) or exited.
	Process string `json:"process"`
	// RunningJobs counts the jobs still running; nil when the document could not tell.
	RunningJobs *int `json:"running_jobs"`
}

// step runs the record's current phase once and sets its next phase and due time.
func (h *Handler) step(ctx context.Context, rec *record, f fleet.Settings, now time.Time) {
	if !h.heartbeat(ctx, rec, now) {
		return
	}
	if rec.heartbeating(now) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rec.phaseBudget(now))
		defer cancel()
	}
	switch rec.Phase {
	case phaseStopIntake:
		h.stopIntake(ctx, rec, f, now)
	case phaseStopIntakeWait:
		if ok, _ := h.commandDone(ctx, rec, f, now, roleStopIntake); ok {
			rec.Phase, rec.Due = phaseWatch, now
		}
	case phaseWatch:
		h.watch(ctx, rec, f, now)
	case phaseStatus:
		h.send(ctx, rec, f, now, roleStatus, f.Documents.Status, phaseStatusWait)
	case phaseStatusWait:
		h.statusWait(ctx, rec, f, now)
	case phaseUnregister:
		h.send(ctx, rec, f, now, roleUnregister, f.Documents.Unregister, phaseUnregisterWait)
	case phaseUnregisterWait:
		if ok, _ := h.commandDone(ctx, rec, f, now, roleUnregister); ok {
			rec.Phase, rec.Due = phaseComplete, now
		}
	case phaseComplete:
		h.complete(ctx, rec, f, now)
	default:
		// Written by a newer version of the worker, during a rolling deploy: finishing here
		// would stop the heartbeats of a drain whose jobs may still run. Keep the action alive
		// and hand the next step to whichever replica takes it (one that knows the phase).
		rec.Note = fmt.Sprintf("phase %q is unknown to this worker (written by a newer version?): heartbeating only, leaving the step to a replica that knows it", rec.Phase)
		rec.Due = now.Add(f.Drain.PollInterval)
	}
	if rec.Phase != phaseDone && rec.heartbeating(now) {
		rec.Due = minTime(rec.Due, rec.heartbeatDue())
	}
}

// heartbeating: heartbeats go on until the maximum drain passes.
func (r *record) heartbeating(now time.Time) bool { return now.Before(r.Deadline) }

// heartbeatDue is when the next heartbeat is due: the interval after the last one, less the
// slack a follow-up's delay can add (SQS delays are whole seconds, rounded up), so the
// heartbeats really come at most HeartbeatEvery apart (plus the step's own latency) and three
// of them still fit in the hook's timeout. The slack is at most half the interval.
func (r *record) heartbeatDue() time.Time {
	return r.LastHeartbeat.Add(r.HeartbeatEvery - min(heartbeatSlack, r.HeartbeatEvery/2))
}

// heartbeatSoon reports whether the drain's next heartbeat is due within a third of its interval
// (or overdue): a step carrying it does not wait behind new drains' first steps (startPriority).
func (r *record) heartbeatSoon(now time.Time) bool {
	return r.heartbeating(now) && !now.Before(r.heartbeatDue().Add(-r.HeartbeatEvery/3))
}

// phaseBudget bounds the calls of a phase (SSM, metrics) so that a hanging call cannot starve
// the next heartbeat: a heartbeat is sent only at the start of a step, and without this bound a
// step that began just before its heartbeat was due could run its whole StepTimeout (20 s by
// default) first — against AWS's shortest heartbeat timeout (30 s, an interval of 10 s) the
// next heartbeat would then come about 29 s after the last. The phase gets until the next
// heartbeat is due plus half an interval (at least minPhaseBudget), so heartbeats come at most
// about 1.5 intervals apart, half the hook's timeout. A call cut short fails like any other
// and is retried with backoff by a later step.
func (r *record) phaseBudget(now time.Time) time.Duration {
	return max(r.heartbeatDue().Sub(now), 0) + max(r.HeartbeatEvery/2, minPhaseBudget)
}

// heartbeat records a lifecycle heartbeat when one is due. It returns false when the action
// is no longer pending (the drain is then finished).
func (h *Handler) heartbeat(ctx context.Context, rec *record, now time.Time) bool {
	if !rec.heartbeating(now) || now.Before(rec.heartbeatDue()) {
		return true
	}
	if fenced(ctx) {
		rec.Note = fencedNote
		return true
	}
	active, err := h.d.Lifecycle.Heartbeat(ctx, rec.Group, rec.Hook, rec.Token, rec.InstanceID)
	if err != nil {
		// Try again soon, well within the hook's timeout (the interval is at most a third of it).
		rec.Note = fmt.Sprintf("heartbeat failed: %v", err)
		rec.LastHeartbeat = now.Add(-rec.HeartbeatEvery).Add(min(h.cfg.RetryBase, rec.HeartbeatEvery/2))
		return true
	}
	if !active {
		h.actionGone(rec, now, "the lifecycle action is no longer pending (heartbeat refused)")
		return false
	}
	rec.LastHeartbeat = now
	rec.Heartbeats++
	h.m.Heartbeats.WithLabelValues(rec.Fleet).Inc()
	return true
}

// stopIntake sends the stop-intake document. When the send fails, DescribeInstanceInformation
// tells an instance no command can reach (complete at once) from a failing command (retry):
// the common case costs one call.
func (h *Handler) stopIntake(ctx context.Context, rec *record, f fleet.Settings, now time.Time) {
	if fenced(ctx) {
		rec.Note = fencedNote
		return
	}
	if h.adopt(ctx, rec, now, roleStopIntake, f.Documents.StopIntake, phaseStopIntakeWait) {
		return
	}
	id, sendErr := h.d.Commands.Send(ctx, f.Documents.StopIntake, rec.InstanceID)
	if sendErr == nil {
		rec.Command = &command{Document: roleStopIntake, ID: id, SentAt: now}
		rec.Phase, rec.Due = phaseStopIntakeWait, now.Add(h.cfg.CommandPoll)
		return
	}
	rec.Unsure = &unsure{Document: roleStopIntake, At: now}
	managed, err := h.d.Commands.Managed(ctx, rec.InstanceID)
	if err != nil {
		h.retryCall(rec, now, "asking SSM whether it manages the instance", err)
		return
	}
	if managed {
		h.commandFailed(rec, f, now, roleStopIntake, fmt.Sprintf("sending %s: %v", f.Documents.StopIntake, sendErr))
		return
	}
	// No command can reach it. Gone from its group, or there but unmanaged: either way complete
	// at once (the group is waiting on an instance nobody can drain).
	state, found, err := h.d.Lifecycle.InstanceState(ctx, rec.InstanceID)
	switch {
	case err != nil:
		h.retryCall(rec, now, "reading the instance's lifecycle state", err)
		return
	case !found:
		rec.Outcome, rec.Note = OutcomeInstanceGone, "the group no longer knows the instance: completing at once"
	case state == "Terminating:Proceed" || state == "Terminated":
		h.finish(rec, now, OutcomeActionGone, "the instance is already "+state)
		return
	default:
		// No command can stop its intake, but its runner may still answer: never complete
		// while it reports jobs running; watch them end, as when stop intake fails.
		if n, err := h.d.Jobs.RunningJobs(ctx, rec.Fleet, rec.InstanceID); err == nil && n > 0 {
			rec.StopFailed, rec.Outcome = true, OutcomeNotManaged
			rec.Note = fmt.Sprintf("SSM does not manage the instance, and its runner reports %d job(s) running: watching the metrics until they end", n)
			rec.Phase, rec.Due = phaseWatch, now
			return
		}
		rec.Outcome, rec.Note = OutcomeNotManaged, "SSM does not manage the instance: no command can reach it; completing at once"
	}
	rec.Phase, rec.Due = phaseComplete, now
}

// send starts a document and moves to the phase that waits for it.
func (h *Handler) send(ctx context.Context, rec *record, f fleet.Settings, now time.Time, role, document string, wait phase) {
	if fenced(ctx) {
		rec.Note = fencedNote
		return
	}
	if h.adopt(ctx, rec, now, role, document, wait) {
		return
	}
	id, err := h.d.Commands.Send(ctx, document, rec.InstanceID)
	if err != nil {
		rec.Unsure = &unsure{Document: role, At: now}
		h.commandFailed(rec, f, now, role, fmt.Sprintf("sending %s: %v", document, err))
		return
	}
	rec.Command = &command{Document: role, ID: id, SentAt: now}
	rec.Phase, rec.Due = wait, now.Add(h.cfg.CommandPoll)
}

// adopt settles an earlier Send of this role that failed after SSM may have taken the command
// (rec.Unsure). It reports true when the step is done: the command was found and is now the one
// in flight (moving to wait), or the look failed and is retried. False: send now.
func (h *Handler) adopt(ctx context.Context, rec *record, now time.Time, role, document string, wait phase) bool {
	u := rec.Unsure
	if u == nil || u.Document != role {
		rec.Unsure = nil
		return false
	}
	id, found, err := h.d.Commands.Find(ctx, document, rec.InstanceID, u.At.Add(-clockSkew))
	switch {
	case err != nil:
		h.retryCall(rec, now, fmt.Sprintf("looking for the %s command whose answer was lost", document), err)
		return true
	case !found:
		rec.Unsure = nil
		return false
	}
	rec.Unsure = nil
	rec.Command = &command{Document: role, ID: id, SentAt: u.At}
	rec.Note = fmt.Sprintf("the %s command %s was sent after all (its answer was lost): following it, not sending another", document, id)
	rec.Phase, rec.Due = wait, now
	return true
}

// commandDone looks at the command in flight. It returns true with its output when it
// succeeded; otherwise it sets the next phase itself (wait more, retry, give up).
func (h *Handler) commandDone(ctx context.Context, rec *record, f fleet.Settings, now time.Time, role string) (bool, string) {
	if rec.Command == nil {
		h.commandFailed(rec, f, now, role, "no command in flight")
		return false, ""
	}
	status, stdout, err := h.d.Commands.Status(ctx, rec.Command.ID, rec.InstanceID)
	late := now.Sub(rec.Command.SentAt) > h.cfg.CommandTimeout
	switch {
	case err != nil && late:
		h.commandFailed(rec, f, now, role, fmt.Sprintf("reading command %s: %v", rec.Command.ID, err))
	case err != nil:
		rec.Note = fmt.Sprintf("reading command %s: %v", rec.Command.ID, err)
		rec.Due = now.Add(h.cfg.CommandPoll)
	case status == CommandSuccess:
		rec.Command, rec.Failures = nil, 0
		return true, stdout
	case status == CommandPending || status == CommandInProgress || status == CommandDelayed:
		if late {
			h.commandFailed(rec, f, now, role, fmt.Sprintf("command %s still %s after %s", rec.Command.ID, status, h.cfg.CommandTimeout))
			return false, ""
		}
		rec.Due = now.Add(h.cfg.CommandPoll)
	default:
		h.commandFailed(rec, f, now, role, fmt.Sprintf("command %s %s", rec.Command.ID, status))
	}
	return false, ""
}

// commandFailed counts a failed command and decides: retry after a backoff, or give up.
func (h *Handler) commandFailed(rec *record, f fleet.Settings, now time.Time, role, reason string) {
	h.m.Errors.WithLabelValues(rec.Fleet, role+"-command").Inc()
	rec.Command = nil
	rec.Note = reason
	if role == roleStatus {
		// The status document only stands in for silent metrics; watch again next poll. Its
		// answer is only worth having fresh: a status command whose answer was lost is not
		// looked for later (adopting it then would read jobs from the past). The status
		// document changes nothing, so sending it again is harmless.
		rec.Unsure = nil
		rec.Jobs = -1
		rec.Phase, rec.Due = phaseWatch, now.Add(f.Drain.PollInterval)
		return
	}
	rec.Failures++
	if rec.Failures <= f.Drain.CommandRetries {
		rec.Due = now.Add(h.backoff(rec.Failures))
		if role == roleStopIntake {
			rec.Phase = phaseStopIntake
		} else {
			rec.Phase = phaseUnregister
		}
		return
	}
	rec.Failures = 0
	if role == roleStopIntake {
		rec.StopFailed = true
		rec.Note = reason + fmt.Sprintf("; gave up after %d retries: watching metrics only", f.Drain.CommandRetries)
		rec.Phase, rec.Due = phaseWatch, now
		return
	}
	// The unregister document refuses while the service still runs: the runner may have taken
	// a job after the zero it was sent on (a job request in flight when intake stopped). Look at
	// the jobs again before completing without unregistering (sawJobs).
	rec.UnregisterFailed = true
	rec.Note = reason + fmt.Sprintf("; gave up after %d retries: looking at the jobs again before completing without unregistering", f.Drain.CommandRetries)
	rec.Phase, rec.Due = phaseWatch, now
}

// retryCall schedules the same phase again, with backoff, after a failed call that is not an
// SSM command (throttling, an AWS hiccup): it is retried for as long as the drain lasts.
func (h *Handler) retryCall(rec *record, now time.Time, what string, err error) {
	rec.CallFailures++
	rec.Note = fmt.Sprintf("%s: %v", what, err)
	rec.Due = now.Add(h.backoff(rec.CallFailures))
}

func (h *Handler) backoff(failures int) time.Duration {
	d := h.cfg.RetryBase
	for i := 1; i < failures && d < h.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, h.cfg.RetryMax)
}

func (h *Handler) watch(ctx context.Context, rec *record, f fleet.Settings, now time.Time) {
	if !rec.heartbeating(now) {
		h.finish(rec, now, OutcomeMaxDrain, fmt.Sprintf("maximum drain passed with %s: heartbeats stop, the hook's timeout ends the action", jobsText(rec.Jobs)))
		return
	}
	n, err := h.d.Jobs.RunningJobs(ctx, rec.Fleet, rec.InstanceID)
	if err == nil {
		h.sawJobs(rec, f, now, n)
		return
	}
	// The metrics do not answer (the runner exited, or hangs): ask the host, in the next phase
	// (it sends a command, so it takes the lease; this one only read).
	rec.Note = fmt.Sprintf("metrics: %v", err)
	rec.Phase, rec.Due = phaseStatus, now
}

func (h *Handler) statusWait(ctx context.Context, rec *record, f fleet.Settings, now time.Time) {
	ok, stdout := h.commandDone(ctx, rec, f, now, roleStatus)
	if !ok {
		return
	}
	var rep statusReport
	if err := json.Unmarshal([]byte(strings.TrimSpace(stdout)), &rep); err != nil || rep.RunningJobs == nil || *rep.RunningJobs < 0 {
		h.commandFailed(rec, f, now, roleStatus, "status document printed no job count")
		return
	}
	h.sawJobs(rec, f, now, *rep.RunningJobs)
}

// sawJobs moves on from a job count: keep watching while jobs run; at zero, unregister (or,
// when stop intake failed, complete: the runner still runs and could not be unregistered; its
// intake is open, so this completes at the first zero — waiting for a second would let a busy
// queue keep the instance to its maximum drain and the hook's timeout). When the unregister
// document kept refusing (the service still ran), a zero seen after that completes without
// unregistering; jobs seen instead mean the runner was alive, and it is unregistered again once
// they end.
func (h *Handler) sawJobs(rec *record, f fleet.Settings, now time.Time, n int) {
	rec.Jobs = n
	switch {
	case n > 0:
		rec.UnregisterFailed = false
		rec.Phase, rec.Due = phaseWatch, now.Add(f.Drain.PollInterval)
	case rec.StopFailed:
		rec.Outcome = cmp.Or(rec.Outcome, OutcomeStopFailed) // or not-managed, set when no command could reach it
		rec.Phase, rec.Due = phaseComplete, now
	case rec.UnregisterFailed:
		rec.Outcome = OutcomeUnregisterFailed
		rec.Note = "no job runs after the unregister document kept refusing: completing without unregistering"
		rec.Phase, rec.Due = phaseComplete, now
	default:
		rec.Phase, rec.Due = phaseUnregister, now
	}
}

// complete completes the lifecycle action with CONTINUE on its own bounded context. It is
// reached only after the jobs were seen at zero, or for an instance no command can reach.
func (h *Handler) complete(ctx context.Context, rec *record, f fleet.Settings, now time.Time) {
	if fenced(ctx) {
		rec.Note = fencedNote
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.CompleteTimeout)
	defer cancel()
	// Keep the step's deadline (the lease fence): a fresh context never outlives it.
	if dl, ok := ctx.Deadline(); ok {
		var c2 context.CancelFunc
		cctx, c2 = context.WithDeadline(cctx, dl)
		defer c2()
	}
	// From this call on, a lost answer may hide a completion this drain made: a later attempt
	// that finds the action gone reports it completed (actionGone). This attempt, the first,
	// finding it gone means someone else ended it.
	first := rec.CompletingSince.IsZero()
	if first {
		rec.CompletingSince = now
	}
	active, err := h.d.Lifecycle.Complete(cctx, rec.Group, rec.Hook, rec.Token, rec.InstanceID, "CONTINUE")
	if err != nil {
		rec.Failures++
		rec.Note = fmt.Sprintf("completing the lifecycle action: %v", err)
		rec.Due = now.Add(h.backoff(rec.Failures))
		return
	}
	outcome := rec.Outcome
	switch {
	case !active && outcome == "" && first:
		h.finish(rec, now, OutcomeActionGone, "the lifecycle action was no longer pending when completed")
		return
	case !active && outcome == "":
		h.actionGone(rec, now, "the lifecycle action was no longer pending when completed")
		return
	case outcome == "":
		outcome = OutcomeCompleted
	}
	h.finish(rec, now, outcome, rec.Note)
}

// actionGone finishes a drain whose lifecycle action is no longer pending; how says what told
// us. In the complete phase after an earlier attempt of it took the lease (CompletingSince), that
// attempt most likely completed the action and lost its own write: the drain is reported as
// completed, not "action-gone", which would send someone looking for who else ended it.
func (h *Handler) actionGone(rec *record, now time.Time, how string) {
	if rec.Phase != phaseComplete || rec.CompletingSince.IsZero() {
		h.finish(rec, now, OutcomeActionGone, how)
		return
	}
	outcome := rec.Outcome
	if outcome == "" {
		outcome = OutcomeCompleted
	}
	h.finish(rec, now, outcome, fmt.Sprintf("%s: taken as completed by an earlier attempt of this step (since %s) whose write was lost",
		how, rec.CompletingSince.UTC().Format(time.RFC3339)))
}

func (h *Handler) finish(rec *record, now time.Time, outcome, note string) {
	rec.Phase, rec.Outcome, rec.FinishedAt, rec.Note = phaseDone, outcome, now, note
	rec.Command, rec.Failures = nil, 0
}

func jobsText(n int) string {
	if n < 0 {
		return "an unknown number of jobs"
	}
	return fmt.Sprintf("%d job(s)", n)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// fencedNote is the decision record's note for a call not made because the step's time ran out:
// its lease fence, or its share of the heartbeat interval (phaseBudget).
const fencedNote = "the step's time ran out before this call (its lease, or its share of the heartbeat interval): not made, a later step makes it"

// fenced reports whether the step's lease fence (ctx's deadline, set before the lease ends) has
// passed, read against the monotonic clock and not only through ctx.Err(): after a SIGSTOP that
// outlived the lease, the timer that cancels ctx may not have fired yet when the goroutine
// resumes, and a call made then could repeat a step another replica has taken since. The check
// narrows that window to the instant between it and the call; AWS offers no fencing token for
// SendCommand or CompleteLifecycleAction, so the conditional write after the step remains what
// keeps the record right.
func fenced(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}
