package launch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/messages"
)

// Results and reasons of a gate.
const (
	ResultContinue = "CONTINUE"
	ResultAbandon  = "ABANDON"

	// ReasonHealthy: the runner's job requests succeed.
	ReasonHealthy = "healthy"
	// ReasonNoAnswer: the runner's metrics did not answer at the last look.
	ReasonNoAnswer = "no-answer"
	// ReasonTokenRejected: GitLab refused the runner's job requests (401/403/410) and accepted none.
	ReasonTokenRejected = "token-rejected"
	// ReasonNoJobRequest: the metrics answer but no job request succeeded.
	ReasonNoJobRequest = "no-successful-job-request"
	// ReasonNoGate: the fleet's gate is disabled; completed at once.
	ReasonNoGate = "no-gate"
	// ReasonWarmPool: the instance launches into the group's warm pool, to be stopped there, not
	// to take jobs; completed at once. It is gated when it leaves the pool for the group (a
	// launch action of its own, Origin WarmPool, Destination AutoScalingGroup).
	ReasonWarmPool = "warm-pool"
	// ReasonActionGone: the action ended without us (the hook's own timeout, someone else).
	ReasonActionGone = "action-gone"
	// ReasonRunningJobs: at the timeout the runner was not seen healthy, but it was running jobs
	// (a runner whose slots are all busy stops requesting jobs, so its request_job counters stand
	// still): it is evidently taking jobs, and ABANDON would terminate the instance and kill them,
	// so the gate completes with CONTINUE.
	ReasonRunningJobs = "running-jobs"
	// ReasonCouldNotLook: the worker could not look at the runner (WorkerError: throttling, access
	// denied, its own deadline or URL template) up to the gate's hold limit (at most maxBlindHold
	// past its deadline, and a margin inside the hook's global timeout), or while the hook's
	// heartbeats failed up to near its heartbeat timeout, and had not decided by looks that
	// reached it. The gate completes with CONTINUE: ABANDON would terminate an instance whose
	// runner may be healthy and running jobs, for the worker's own fault, and the hook's default
	// result (ABANDON in the fleet stack) would do the same a little later. See holdEnds.
	ReasonCouldNotLook = "could-not-look"
)

const (
	keyPrefix = "launch#"
	sortKey   = "launch"
	// recordSchema is the layout of the record this code writes; raise it with any change an
	// older worker would misread or lose on saving. Records of a newer schema are left alone.
	recordSchema = 5 // 2: LateLooks, LateDue, BaselineAt; 3: JobsUnknownSince; 4: HookTimeout, HoldUntil, LookFailure*; 5: LookDue

	// passOnDelay is how soon a follow-up passed on to a newer replica comes back.
	passOnDelay = 5 * time.Second
	// passOnWarnEvery is how often a replica warns, per gate, that it passes a newer worker's gate
	// on: its follow-up comes back every passOnDelay, and one line each time would flood the log.
	passOnWarnEvery = 5 * time.Minute
	// maxHookHeartbeatTimeout is AWS's largest lifecycle hook heartbeat timeout: an action not
	// heartbeated for that long has ended.
	maxHookHeartbeatTimeout = 2 * time.Hour

	phaseWait     = "wait"
	phaseComplete = "complete"
	phaseDone     = "done"
)

// record is a gate as stored in the state table.
type record struct {
	Schema     int    `json:"schema"`
	Token      string `json:"token"`
	Fleet      string `json:"fleet"`
	Group      string `json:"group"`
	Hook       string `json:"hook"`
	InstanceID string `json:"instance_id"`
	// Event is the launch event, re-published as each follow-up.
	Event messages.Envelope `json:"event"`

	Phase     string    `json:"phase"`
	StartedAt time.Time `json:"started_at"`
	Deadline  time.Time `json:"deadline"`
	Due       time.Time `json:"due"`
	// Poll and HeartbeatEvery are the gate's, resolved against the hook at the first step.
	Poll           time.Duration `json:"poll"`
	HeartbeatEvery time.Duration `json:"heartbeat_every,omitempty"`

	// Checks counts the looks that reached the runner (or tried to: it did not answer); the
	// looks the worker could not make are LookFailures.
	Checks int `json:"checks"`
	// HookTimeout is the launch hook's heartbeat timeout (0: unknown, or a record of schema 3):
	// a gate that cannot look heartbeats every third of it while it holds (cannotLook).
	HookTimeout time.Duration `json:"hook_timeout,omitempty"`
	// HoldUntil is how long the gate may hold an instance while the worker cannot look at its
	// runner: at most maxBlindHold past the deadline, inside the hook's global timeout (holdLimit;
	// schema 4 stored it without the first bound, which holdUntil applies). Zero (the global
	// timeout unknown, or a record of schema 3): the deadline and the looks the gate may add past
	// it (holdUntil).
	HoldUntil time.Time `json:"hold_until,omitzero"`
	// LookFailures counts the looks the worker could not make (WorkerError); LookFailure is the
	// reason of the latest, LookFailedSince when the current run of them began (cleared by a look
	// that reaches the runner), LookFailureLogged when one was last logged at ERROR.
	LookFailures      int       `json:"look_failures,omitempty"`
	LookFailure       string    `json:"look_failure,omitempty"`
	LookFailedSince   time.Time `json:"look_failed_since,omitzero"`
	LookFailureLogged time.Time `json:"look_failure_logged,omitzero"`
	// JobsAtTimeout is the runner's running jobs when the gate timed out without a healthy look
	// (omitted when none or unknown).
	JobsAtTimeout int `json:"jobs_at_timeout,omitempty"`
	// JobsUnknownSince is when, at the timeout, the running jobs of a runner that had answered
	// before could first not be counted (awaitJobs), moved on by the length of each run of looks
	// the worker could not make since (lookedAgain).
	JobsUnknownSince time.Time `json:"jobs_unknown_since,omitzero"`
	// Seen: OK and Rejected hold the counters of the previous answered look; BaselineAt is when
	// they were first taken (the first answered look, or the look after the runner restarted).
	Seen       bool      `json:"seen,omitempty"`
	BaselineAt time.Time `json:"baseline_at,omitzero"`
	// LateLooks counts the looks added after the deadline (lateLooks).
	LateLooks int `json:"late_looks,omitempty"`
	// LateDue is when the last look added past the deadline is due: a step before it (a
	// heartbeat's) decides nothing.
	LateDue time.Time `json:"late_due,omitzero"`
	// LookDue is when the next look is due (nextDue): a step before it, woken for a heartbeat or
	// a failed heartbeat's retry, heartbeats without looking, so looks stay a poll apart. Zero (a
	// record of schema 4 or older): every step looks.
	LookDue       time.Time `json:"look_due,omitzero"`
	OK            float64   `json:"ok"`
	Rejected      float64   `json:"rejected"`
	Last          string    `json:"last,omitempty"`
	LastHeartbeat time.Time `json:"last_heartbeat,omitzero"`
	FollowUps     int       `json:"follow_ups"`

	Result     string    `json:"result,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	Note       string    `json:"note,omitempty"`
}

// Handler runs launch gates. It is safe for concurrent use by goroutines and replicas.
type Handler struct {
	cfg     Config
	d       Deps
	log     *slog.Logger
	m       *Metrics
	byGroup map[string]fleet.Settings

	mu sync.Mutex
	// newer is what this replica did, by token, for gates a newer worker wrote (passOn).
	newer map[string]newerGate
}

// newerGate is what a replica remembers of a newer worker's gate it passes on: it does not write
// the record, so the record's LastHeartbeat stays behind the heartbeats sent here.
type newerGate struct {
	heartbeat time.Time // the last heartbeat this replica sent for it
	warned    time.Time // when this replica last logged that it passes it on
	failing   bool      // whether this replica's last heartbeat of it failed
}

// New returns a Handler; it validates cfg (after defaults) and refuses nil dependencies.
func New(cfg Config, deps Deps) (*Handler, error) {
	cfg.setDefaults()
	if j, ok := deps.Health.(Jobs); ok && deps.Jobs == nil {
		deps.Jobs = j
	}
	if err := errors.Join(cfg.Validate(), deps.validate()); err != nil {
		return nil, err
	}
	if deps.Metrics == nil {
		deps.Metrics = NewMetrics(nil)
	}
	if deps.Clock == nil {
		deps.Clock = systemClock{}
	}
	h := &Handler{cfg: cfg, d: deps, log: deps.Logger.With("handler", "launch"), m: deps.Metrics, byGroup: map[string]fleet.Settings{},
		newer: map[string]newerGate{}}
	for _, f := range cfg.Fleets {
		h.byGroup[f.GroupName] = f
	}
	return h, nil
}

// Handle is the router's entry point for KindLaunchAction (the event and its follow-ups). nil:
// done (duplicates, early follow-ups and actions of another tool's hook included: see foreign);
// messages.Reject: never succeeds; other errors are transient (retried).
func (h *Handler) Handle(ctx context.Context, msg *messages.Message) error {
	la, ok := msg.Payload.(*messages.LifecycleAction)
	if !ok || msg.Kind != messages.KindLaunchAction || msg.Event == nil {
		return messages.Reject("launch: cannot handle a message of kind %s", msg.Kind)
	}
	if la.LifecycleTransition != messages.TransitionLaunching {
		return messages.Reject("launch: transition %q is not %s", la.LifecycleTransition, messages.TransitionLaunching)
	}
	f, ok := h.byGroup[la.AutoScalingGroupName]
	if !ok {
		return messages.Reject("launch: group %s is not a managed fleet's", la.AutoScalingGroupName)
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.StepTimeout)
	defer cancel()
	gate := h.cfg.Gates[f.Name]
	if reason := ungated(gate, la); reason != "" {
		if h.foreign(ctx, f, la) {
			return nil
		}
		active, err := h.d.Lifecycle.Complete(ctx, la.AutoScalingGroupName, la.LifecycleHookName, la.LifecycleActionToken, la.EC2InstanceId, ResultContinue)
		if err != nil {
			return fmt.Errorf("launch: completing %s (fleet %s, %s): %w", la.EC2InstanceId, f.Name, reason, err)
		}
		if active {
			h.m.Finished.WithLabelValues(f.Name, ResultContinue, reason).Inc()
		}
		h.log.InfoContext(ctx, "launch decision", "fleet", f.Name, "instance_id", la.EC2InstanceId, "token_hash", tokenHash(la.LifecycleActionToken),
			"result", ResultContinue, "reason", reason, "was_pending", active)
		return nil
	}
	return h.advance(ctx, f, gate, la, *msg.Event, false)
}

func (h *Handler) advance(ctx context.Context, f fleet.Settings, gate Gate, la *messages.LifecycleAction, env messages.Envelope, sweeping bool) error {
	pk := keyPrefix + la.LifecycleActionToken
	body, version, found, err := h.d.Store.Load(ctx, pk, sortKey)
	if err != nil {
		return fmt.Errorf("launch: loading gate of %s: %w", la.EC2InstanceId, err)
	}
	now := h.d.Clock.Now()
	var rec record
	if !found {
		if h.foreign(ctx, f, la) {
			return nil
		}
		at := env.Time
		if at.IsZero() || at.After(now) {
			at = now
		}
		g, hook, err := h.resolve(ctx, gate, la.AutoScalingGroupName, la.LifecycleHookName)
		if err != nil {
			return fmt.Errorf("launch: gating %s: %w", la.EC2InstanceId, err)
		}
		rec = record{Schema: recordSchema, Token: la.LifecycleActionToken, Fleet: f.Name, Group: la.AutoScalingGroupName,
			Hook: la.LifecycleHookName, InstanceID: la.EC2InstanceId, Event: env, Phase: phaseWait,
			StartedAt: at, Deadline: at.Add(g.Timeout), Due: now, LastHeartbeat: at, Poll: g.Poll, HeartbeatEvery: g.HeartbeatEvery,
			HookTimeout: hook.heartbeat}
		rec.HoldUntil = holdLimit(rec, hook.global)
	} else if err := json.Unmarshal(body, &rec); err != nil {
		return messages.Reject("launch: gate record of %s unreadable: %v", la.EC2InstanceId, err)
	} else if rec.Schema > recordSchema {
		if sweeping {
			return nil // sweeps leave it alone: its follow-up is being passed on
		}
		return h.passOn(ctx, rec, env, now)
	}
	// Saved by this code, the record has this schema's fields: an older replica must leave it.
	rec.Schema = recordSchema
	switch {
	case rec.Phase == phaseDone:
		return nil
	case rec.Phase == phaseComplete:
		return h.complete(ctx, rec, version, false)
	case rec.Due.After(now.Add(clockSkew)):
		return nil // a duplicate or an early copy: the step that set Due scheduled the next one
	}
	if sweeping {
		h.m.Recovered.WithLabelValues(rec.Fleet).Inc()
	}
	before := rec
	h.step(ctx, &rec, now)
	return h.persist(ctx, rec, version, now, !quietHold(before, rec, now))
}

// persist saves a stepped gate (version: the one it was read at) and takes what follows: the
// completion, or the follow-up. logStep: write the step's decision line (see quietHold).
func (h *Handler) persist(ctx context.Context, rec record, version int64, now time.Time, logStep bool) error {
	pk := keyPrefix + rec.Token
	out, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("launch: encoding gate of %s: %w", rec.InstanceID, err)
	}
	var expires time.Time
	if rec.Phase == phaseDone {
		expires = now.Add(h.cfg.Retention)
	}
	ok, err := h.d.Store.Save(ctx, pk, sortKey, out, version, rec.Due, expires)
	if err != nil {
		return fmt.Errorf("launch: saving gate of %s: %w", rec.InstanceID, err)
	}
	if !ok {
		return nil // another replica took this step
	}
	version++
	switch rec.Phase {
	case phaseComplete:
		return h.complete(ctx, rec, version, true)
	case phaseDone:
		h.finished(ctx, rec, now)
		return nil
	}
	if logStep {
		h.decision(ctx, rec, now)
	}
	follow := rec.Event
	follow.ID = rec.Event.ID + "/gate-" + strconv.FormatInt(version, 10)
	if err := h.d.FollowUps.Schedule(ctx, follow, min(max(rec.Due.Sub(now), 0), MaxDelay)); err != nil {
		// The step is saved; Sweep picks the gate up once it is overdue.
		return fmt.Errorf("launch: scheduling the next look at %s: %w", rec.InstanceID, err)
	}
	return nil
}

// foreign reports whether la is an action of a hook other than the fleet's launch hook
// (Hooks.Launch), and logs that it is left alone. Such a hook is another tool's (a configuration
// management hook, say) on the same group: its action is that tool's to complete, and the gate
// would complete it past the tool. Nothing is wrong with the message: it is acked, not retried.
// Only a new action is asked about: a gate already recorded (by an older worker, before this
// check) is stepped to its end whatever its hook, as drains are.
func (h *Handler) foreign(ctx context.Context, f fleet.Settings, la *messages.LifecycleAction) bool {
	if la.LifecycleHookName == f.Hooks.Launch {
		return false
	}
	h.log.InfoContext(ctx, "launch: launch action of another lifecycle hook: left to its own tool (not gated, heartbeated or completed)",
		"fleet", f.Name, "group", la.AutoScalingGroupName, "hook", la.LifecycleHookName, "fleet_hook", f.Hooks.Launch,
		"instance_id", la.EC2InstanceId, "token_hash", tokenHash(la.LifecycleActionToken))
	return true
}

// ungated says why a launch action is completed at once, without looking at its runner ("": it
// is gated): the fleet's gate is disabled, or the instance goes into the warm pool.
func ungated(g Gate, la *messages.LifecycleAction) string {
	switch {
	case g.Disabled:
		return ReasonNoGate
	case la.Destination == "WarmPool":
		return ReasonWarmPool
	}
	return ""
}

// passOn leaves a gate whose record a newer worker wrote (a rolling deploy runs old and new
// replicas side by side) to a newer replica: saving it with this code would drop what it does not
// know. The follow-up is sent again for any replica to take (a copy a newer replica finds not yet
// due is dropped there), and the hook is heartbeated when a heartbeat is due, without writing the
// record: after a rollback no replica may be left to step the gate, and without heartbeats the
// hook's timeout would ABANDON the instance, healthy or running jobs. That ends once the action
// has ended, or past the gate's deadline by the longest hook heartbeat timeout, or past its hold
// limit (HoldUntil) when that is later (a gate that cannot look holds past its deadline): by then
// no newer replica is coming back soon, and the follow-up would otherwise come back every
// passOnDelay for ever (a newer replica's sweep still finds the record if one runs).
func (h *Handler) passOn(ctx context.Context, rec record, env messages.Envelope, now time.Time) error {
	log := h.log.With("fleet", rec.Fleet, "instance_id", rec.InstanceID, "token_hash", tokenHash(rec.Token),
		"schema", rec.Schema, "known_schema", recordSchema)
	if !rec.Deadline.IsZero() && now.After(passOnUntil(rec)) {
		h.forget(rec.Token)
		log.WarnContext(ctx, "launch gate record written by a newer worker is past its deadline, any hook's timeout and its hold limit: no longer passed on or heartbeated",
			"deadline", rec.Deadline, "hold_until", rec.HoldUntil)
		return nil
	}
	pending, err := h.keepAlive(ctx, rec, now)
	if !pending {
		h.forget(rec.Token)
		log.InfoContext(ctx, "launch gate record written by a newer worker: its lifecycle action is no longer pending; no longer passed on")
		return nil
	}
	if h.warnPassOn(rec.Token, now, err != nil) {
		attrs := []any{"heartbeat_every", rec.HeartbeatEvery}
		if err != nil {
			attrs = append(attrs, "heartbeat_error", err.Error())
		}
		log.WarnContext(ctx, "launch gate record written by a newer worker: left to a newer replica; its hook is heartbeated here when due", attrs...)
	}
	if err := h.d.FollowUps.Schedule(ctx, env, passOnDelay); err != nil {
		return fmt.Errorf("launch: passing on the gate of %s: %w", rec.InstanceID, err)
	}
	return nil
}

// passOnUntil is how long a newer worker's gate is passed on: its deadline and the longest hook
// heartbeat timeout, or its hold limit when that is later.
func passOnUntil(rec record) time.Time {
	until := rec.Deadline.Add(maxHookHeartbeatTimeout)
	if rec.HoldUntil.After(until) {
		return rec.HoldUntil
	}
	return until
}

// keepAlive heartbeats the action of a newer worker's gate when a heartbeat is due, by the
// record's last one and by this replica's own (passOn does not write the record). pending is
// false when the action has ended; err is a failed heartbeat, tried again at the next pass-on.
func (h *Handler) keepAlive(ctx context.Context, rec record, now time.Time) (pending bool, err error) {
	if rec.Phase == phaseDone {
		return false, nil
	}
	h.mu.Lock()
	last := rec.LastHeartbeat
	if g := h.newer[rec.Token]; g.heartbeat.After(last) {
		last = g.heartbeat
	}
	h.mu.Unlock()
	if rec.HeartbeatEvery <= 0 || now.Sub(last) < rec.HeartbeatEvery {
		return true, nil
	}
	active, err := h.d.Lifecycle.Heartbeat(ctx, rec.Group, rec.Hook, rec.Token, rec.InstanceID)
	if err != nil {
		return true, fmt.Errorf("heartbeat: %w", err)
	}
	if active {
		h.mu.Lock()
		g := h.newer[rec.Token]
		g.heartbeat = now
		h.newer[rec.Token] = g
		h.mu.Unlock()
	}
	return active, nil
}

// newerMax is how many newer workers' gates a replica remembers before it prunes old entries.
const newerMax = 256

// warnPassOn reports whether to log that a newer worker's gate is passed on: the first time, every
// passOnWarnEvery after, and whenever its heartbeats start or stop failing.
func (h *Handler) warnPassOn(token string, now time.Time, failing bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.newer[token]
	warn := g.warned.IsZero() || now.Sub(g.warned) >= passOnWarnEvery || failing != g.failing
	if warn {
		g.warned = now
	}
	g.failing = failing
	h.newer[token] = g
	if len(h.newer) > newerMax {
		for t, old := range h.newer {
			if now.Sub(old.warned) > maxHookHeartbeatTimeout {
				delete(h.newer, t)
			}
		}
	}
	return warn
}

// forget drops what this replica remembers of a newer worker's gate it no longer passes on.
func (h *Handler) forget(token string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.newer, token)
}

// heartbeatRetry is the longest wait before a failed heartbeat is tried again.
const heartbeatRetry = 5 * time.Second

// lateLooks bounds the looks added after the deadline (observed says when they may stop): an
// event handled late (a worker outage, a backlog) gets its first look at or past the deadline,
// one handled just before it gets its second a moment after its first, a late first look that
// gets no answer leaves nothing to compare, and a runner that answers but whose job requests have
// not succeeded is looked at a poll apart until MinObservation has passed since the first answer.
// The bound keeps a runner whose counters keep going back (it restarts) from being looked at for
// ever: one look for a first that got no answer, enough a poll apart to span the observation,
// and one to spare.
func lateLooks(poll time.Duration) int {
	span := max(poll, MinObservation)
	return 2 + int((span+poll-1)/poll)
}

// observed reports whether the looks so far may show a runner unhealthy. Health is job requests
// that succeeded between two looks, so it takes two answered looks at least a poll apart; and
// when none succeeded, looks MinObservation apart, since GitLab long-polls request_job (an idle
// healthy runner's counter may stand still for most of a minute). A runner that never answered
// in two looks has shown enough.
func observed(rec *record, now time.Time) bool {
	if !rec.Seen {
		return rec.Checks >= 2
	}
	span := rec.Poll
	if rec.Last == ReasonNoJobRequest {
		span = max(rec.Poll, MinObservation)
	}
	return now.Sub(rec.BaselineAt) >= span
}

// step heartbeats when due and, when a look is due (LookDue), looks at the runner once; it sets
// the next phase and Due.
func (h *Handler) step(ctx context.Context, rec *record, now time.Time) {
	if rec.HeartbeatEvery > 0 && now.Sub(rec.LastHeartbeat) >= rec.HeartbeatEvery {
		active, err := h.d.Lifecycle.Heartbeat(ctx, rec.Group, rec.Hook, rec.Token, rec.InstanceID)
		switch {
		case err != nil:
			rec.Note = fmt.Sprintf("heartbeat failed: %v", err)
			if lapsing(rec, now) {
				h.holdEnds(ctx, rec, now, fmt.Sprintf("with the hook's heartbeats failing for %s (the latest: %v), before its %s heartbeat timeout has AWS apply its default result",
					now.Sub(rec.LastHeartbeat).Round(time.Second), err, rec.HookTimeout))
				return
			}
		case !active:
			rec.Phase, rec.Reason, rec.FinishedAt = phaseDone, ReasonActionGone, now
			rec.Note = "the lifecycle action is no longer pending (heartbeat refused)"
			return
		default:
			rec.LastHeartbeat = now
		}
	}
	if rec.LookDue.After(now.Add(clockSkew)) {
		// Woken for a heartbeat, or to retry a failed one, before the next look is due: no look.
		// A gate whose heartbeats fail is woken every few seconds, and a look each time (an EC2
		// call and a scrape) would add to the throttling that may be failing them.
		rec.Due = h.nextDue(rec, now, rec.LookDue)
		rec.FollowUps++
		return
	}
	ok, rejected, err := h.d.Health.RequestJobs(ctx, rec.Fleet, rec.InstanceID)
	if we := workerSide(ctx, err); we != nil {
		h.cannotLook(ctx, rec, now, we)
		return
	}
	h.lookedAgain(ctx, rec, now)
	rec.Checks++
	switch {
	case err != nil:
		rec.Last, rec.Note = ReasonNoAnswer, err.Error()
	case !rec.Seen || ok < rec.OK || rejected < rec.Rejected:
		// First answer (or the runner restarted and its counters too): nothing to compare yet.
		rec.Seen, rec.OK, rec.Rejected, rec.BaselineAt = true, ok, rejected, now
		rec.Last = ReasonNoJobRequest
		if rejected > 0 && ok == 0 {
			rec.Last = ReasonTokenRejected
		}
	default:
		dOK, dRej := ok-rec.OK, rejected-rec.Rejected
		rec.OK, rec.Rejected = ok, rejected
		switch {
		case dOK > 0:
			rec.Last = ReasonHealthy
		case dRej > 0:
			rec.Last = ReasonTokenRejected
		default:
			rec.Last = ReasonNoJobRequest
		}
	}
	h.m.Checks.WithLabelValues(rec.Fleet, rec.Last).Inc()
	switch {
	case rec.Last == ReasonHealthy:
		rec.Phase, rec.Result, rec.Reason, rec.Due = phaseComplete, ResultContinue, ReasonHealthy, now
	case !now.Before(rec.Deadline) && now.Before(rec.LateDue):
		// Woken for a heartbeat before the added look is due: nothing to decide yet.
		rec.Due = h.nextDue(rec, now, rec.LateDue)
		rec.FollowUps++
	case !now.Before(rec.Deadline) && rec.LateLooks < lateLooks(rec.Poll) && !observed(rec, now):
		// The deadline came before the looks could show the runner unhealthy: without more, every
		// instance launched during an outage, and every idle runner that answered late, would be
		// abandoned. One more look, one poll later (heartbeats go on as ever).
		rec.LateDue = now.Add(rec.Poll)
		rec.Due = h.nextDue(rec, now, rec.LateDue)
		if rec.LateLooks == 0 {
			rec.Note = joinNote(rec.Note, fmt.Sprintf("look %d, %s after the launch, is past the deadline before two answered looks a poll apart (%s apart when no job request succeeded): more looks, a poll apart, before deciding",
				rec.Checks, now.Sub(rec.StartedAt).Round(time.Second), max(rec.Poll, MinObservation)))
		}
		rec.LateLooks++
		rec.FollowUps++
	case !now.Before(rec.Deadline):
		h.timeout(ctx, rec, now)
	default:
		rec.Due = h.nextDue(rec, now, minTime(now.Add(rec.Poll), rec.Deadline))
		rec.FollowUps++
	}
}

// nextDue is look, or the next heartbeat when that comes first; it records look as LookDue.
func (h *Handler) nextDue(rec *record, now, look time.Time) time.Time {
	rec.LookDue = look
	if rec.HeartbeatEvery <= 0 {
		return look
	}
	next := rec.LastHeartbeat.Add(rec.HeartbeatEvery)
	if !next.After(now) {
		// The heartbeat just failed (LastHeartbeat unchanged): try again soon, not at once, or a
		// gate whose heartbeats keep failing (a missing permission, throttling) loops as fast as
		// its follow-ups go round, and the throttling spreads.
		next = now.Add(min(heartbeatRetry, rec.HeartbeatEvery/4))
	}
	return minTime(look, next)
}

// holdMargin is how far inside the launch hook's global timeout, beyond the looks the gate may add
// past a look (addedWait), a gate that cannot look stops holding: a lost follow-up the sweep
// recovers (SweepGrace and the sweep's interval) and a retried completion fit in it, so the gate,
// not the hook's default result, ends the wait.
const holdMargin = 5 * time.Minute

// maxBlindHold bounds how long past its deadline a gate holds its instance while the worker
// cannot look at the runner, however long the hook would allow (its global timeout, up to 48 h).
// A held instance is in Pending:Wait: scaling counts it as booting capacity, and while any
// instance boots the fleet replaces no unknown instance and removes no rejected idle one, so a
// long hold stalls the whole fleet's repairs; nothing but the ERROR lines and a Prometheus
// counter says so. An hour is time for an operator to fix the worker's role or template, or
// for throttling to pass, and short enough that a fleet is not left stuck for a day.
const maxBlindHold = time.Hour

// hookLapseMargin is how far short of the hook's heartbeat timeout, counted from its last good
// heartbeat, a holding gate whose heartbeats fail stops holding (lapsing): AWS applies the
// hook's default result (ABANDON in the fleet stack) at that timeout, so the gate's CONTINUE must
// come first, while CompleteLifecycleAction may still work, with time for its retries. A third
// of a short hook's timeout at most, so the heartbeats are given some retries first.
const hookLapseMargin = 5 * time.Minute

// lookFailureLogEvery is how often a gate whose looks keep failing on the worker's side logs it at
// ERROR again, whatever their reason (it does at once when they first fail): a scale-out of fifty
// instances during an IAM mistake would otherwise log two hundred lines a minute, and under
// throttling the reason flips between throttled and deadline from one look to the next.
const lookFailureLogEvery = 5 * time.Minute

// holdLimit is the latest a gate holds its instance while the worker cannot look at the runner:
// the hook's global timeout (AWS applies the hook's default result then, however often it is
// heartbeated) less the looks the gate may add after a last-moment look and holdMargin, at most
// maxBlindHold past the deadline, and never before the deadline. Zero when the global timeout is
// unknown (holdUntil).
func holdLimit(rec record, global time.Duration) time.Time {
	if global <= 0 {
		return time.Time{}
	}
	limit := minTime(rec.StartedAt.Add(global-addedWait(rec.Poll)-holdMargin), rec.Deadline.Add(maxBlindHold))
	if limit.Before(rec.Deadline) {
		return rec.Deadline
	}
	return limit
}

// holdUntil is the record's hold limit, at most maxBlindHold past the deadline (a record of schema
// 4 stored one up to the hook's global timeout); a record without one (the hook's global timeout
// unknown, or written by schema 3) holds for the deadline and the looks the gate may add past it,
// which resolve kept inside the hook's timeouts.
func holdUntil(rec *record) time.Time {
	if !rec.HoldUntil.IsZero() {
		return minTime(rec.HoldUntil, rec.Deadline.Add(maxBlindHold))
	}
	return rec.Deadline.Add(addedWait(rec.Poll))
}

// lapsing reports whether a gate that cannot look (a hold) must stop holding because its
// heartbeats have failed for so long that the hook's heartbeat timeout is near (hookLapseMargin).
// Unknown hook timeout (a record of schema 3): never.
func lapsing(rec *record, now time.Time) bool {
	if rec.LookFailedSince.IsZero() || rec.HookTimeout <= 0 {
		return false
	}
	return now.Sub(rec.LastHeartbeat) >= rec.HookTimeout-min(rec.HookTimeout/3, hookLapseMargin)
}

// quietHold reports whether a step's decision line is left out: a step of a hold that goes on
// (the worker could not look before it nor at it), changed nothing the line shows but its times
// and the latest failure's reason (kept in the record and look_failures_total), and logged no
// ERROR line. So a holding gate writes its decision line when something changes and with its
// ERROR line, at most every lookFailureLogEvery, not at every poll and heartbeat for an hour.
func quietHold(before, after record, now time.Time) bool {
	return after.Phase == phaseWait && !before.LookFailedSince.IsZero() && !after.LookFailedSince.IsZero() &&
		!after.LookFailureLogged.Equal(now) && before.Checks == after.Checks && before.Last == after.Last &&
		before.HeartbeatEvery == after.HeartbeatEvery && before.LateLooks == after.LateLooks
}

// cannotLook handles a look the worker could not make (we). It says nothing about the runner: it
// is not a look (Checks, Last and the runner's counters are left as they were), so it counts
// neither toward "no answer" nor toward the looks an ABANDON needs, and never ends the gate with
// ABANDON. The gate logs it at ERROR (at once, then at most every lookFailureLogEvery, whatever
// the reason), counts it (look_failures_total), heartbeats the hook (from now on, if it did not)
// and looks again a poll later — past its deadline too, up to its hold limit (holdUntil). At
// that limit it decides (holdEnds), and sooner when the hook's heartbeats keep failing (lapsing).
func (h *Handler) cannotLook(ctx context.Context, rec *record, now time.Time, we *WorkerError) {
	rec.LookFailures++
	h.m.LookFailures.WithLabelValues(rec.Fleet, we.Reason).Inc()
	if rec.LookFailedSince.IsZero() {
		rec.LookFailedSince = now
	}
	if rec.LookFailureLogged.IsZero() || now.Sub(rec.LookFailureLogged) >= lookFailureLogEvery {
		h.log.ErrorContext(ctx, fmt.Sprintf("launch gate: the worker could not look at instance %s: %s", rec.InstanceID, we.Reason),
			"fleet", rec.Fleet, "instance_id", rec.InstanceID, "token_hash", tokenHash(rec.Token), "reason", we.Reason, "error", we.Err.Error(),
			"failing_since", rec.LookFailedSince, "look_failures", rec.LookFailures, "looks_at_runner", rec.Checks,
			"deadline", rec.Deadline, "hold_until", holdUntil(rec))
		rec.LookFailureLogged = now
	}
	rec.LookFailure = we.Reason
	// Holding may outlast the hook's heartbeat timeout, which a gate whose deadline it covered
	// did not heartbeat for (resolve): without heartbeats the hook would ABANDON the instance.
	if rec.HeartbeatEvery <= 0 && rec.HookTimeout > 0 {
		rec.HeartbeatEvery = rec.HookTimeout / 3
	}
	limit := holdUntil(rec)
	if !now.Before(limit) {
		h.holdEnds(ctx, rec, now, fmt.Sprintf("at the hold limit (the latest failure: %v)", we.Err))
		return
	}
	look := now.Add(rec.Poll)
	if now.Before(rec.Deadline) {
		look = minTime(look, rec.Deadline)
	}
	if rec.LateDue.After(now) {
		look = minTime(look, rec.LateDue)
	}
	rec.Due = h.nextDue(rec, now, minTime(look, limit))
	rec.FollowUps++
}

// holdEnds decides a gate whose worker still cannot look at the runner at the hold limit (or
// whose heartbeats fail, near the hook's heartbeat timeout: lapsing), without the looks that
// reached the runner having decided it: CONTINUE, reason could-not-look, noted with what the
// last look that reached it showed and why the hold ended (why). ABANDON terminates the
// instance: its runner may be healthy and running jobs (a runner takes jobs in Pending:Wait),
// which the worker cannot count, and it would fault the instance for the worker's own failure
// (its IAM, throttling), the group launching replacements into the same. Leaving the action to
// the hook's default result would do the same (ABANDON, in the fleet stack) a little later.
func (h *Handler) holdEnds(ctx context.Context, rec *record, now time.Time, why string) {
	rec.Phase, rec.Result, rec.Reason, rec.Due = phaseComplete, ResultContinue, ReasonCouldNotLook, now
	last := "none reached the runner"
	if rec.Checks > 0 {
		last = fmt.Sprintf("%d reached the runner, the last found %s", rec.Checks, rec.Last)
	}
	rec.Note = joinNote(rec.Note, fmt.Sprintf("the worker could not look at the runner (%d failed looks, the latest %s; of the looks, %s): continued unverified %s, %s after the launch, rather than ABANDON an instance whose runner may be healthy and busy for the worker's own failure",
		rec.LookFailures, rec.LookFailure, last, why, now.Sub(rec.StartedAt).Round(time.Second)))
	h.log.ErrorContext(ctx, fmt.Sprintf("launch gate: the worker could not look at instance %s: continued unverified", rec.InstanceID),
		"fleet", rec.Fleet, "instance_id", rec.InstanceID, "token_hash", tokenHash(rec.Token), "reason", rec.LookFailure, "why", why,
		"failing_since", rec.LookFailedSince, "look_failures", rec.LookFailures, "looks_at_runner", rec.Checks, "last_look", rec.Last)
}

// lookedAgain ends a run of looks the worker could not make, logging how long it lasted. A wait
// for the runner's running jobs (awaitJobs) begun before the run is moved on by its length: the
// worker did not see the runner then, so that time does not use up the wait's polls, and the
// first look after a long blind spell does not ABANDON a runner that may be busy.
func (h *Handler) lookedAgain(ctx context.Context, rec *record, now time.Time) {
	if rec.LookFailedSince.IsZero() {
		return
	}
	blind := now.Sub(rec.LookFailedSince)
	h.log.InfoContext(ctx, "launch gate: the worker can look at the runner again", "fleet", rec.Fleet, "instance_id", rec.InstanceID,
		"token_hash", tokenHash(rec.Token), "failed_for", blind.Round(time.Second).String(), "look_failures", rec.LookFailures)
	if !rec.JobsUnknownSince.IsZero() && rec.JobsUnknownSince.Before(rec.LookFailedSince) && blind > 0 {
		rec.JobsUnknownSince = rec.JobsUnknownSince.Add(blind)
	}
	rec.LookFailedSince = time.Time{}
}

// jobsUnknownLooks is how many polls past the timeout the gate keeps looking at a runner that
// answered before but whose metrics do not tell its running jobs (awaitJobs): a metrics blip
// passes in seconds, and a few polls keep the ABANDON of a runner that really stopped answering
// close to the deadline. When the worker could not count them (a WorkerError: a throttled
// DescribeInstances, say), the gate holds instead (cannotLook), without using these polls up:
// the time it could not look is not counted (lookedAgain).
const jobsUnknownLooks = 3

// timeout decides a gate whose runner was not seen healthy by the deadline: ABANDON, unless the
// runner is running jobs (spare). A runner with every slot busy makes no job requests, so its
// counters stand still like an idle one's and only its job count tells them apart; when that
// cannot be read from a runner that answered before, the ABANDON waits (awaitJobs).
func (h *Handler) timeout(ctx context.Context, rec *record, now time.Time) {
	n, err := h.d.Jobs.RunningJobs(ctx, rec.Fleet, rec.InstanceID)
	if we := workerSide(ctx, err); we != nil {
		if !neverGotAJob(rec) {
			// The worker could not count the jobs: the runner may be busy, and ABANDON would kill
			// its jobs. Look again a poll later. A wait for a runner whose jobs its own metrics did
			// not tell (awaitJobs) is not restarted (that was seen at the runner), nor used up by
			// the time the worker cannot look (lookedAgain).
			h.cannotLook(ctx, rec, now, we)
			return
		}
		rec.LookFailures++
		h.m.LookFailures.WithLabelValues(rec.Fleet, we.Reason).Inc()
		rec.Note = joinNote(rec.Note, fmt.Sprintf("the worker could not count the running jobs at the timeout (%s), taken as 0: no job request of the runner succeeded in its looks, so it never got a job", we.Reason))
		n, err = 0, nil
	}
	if err != nil && rec.Seen && h.awaitJobs(rec, now, err) {
		return
	}
	rec.Phase, rec.Result, rec.Reason, rec.Due = phaseComplete, ResultAbandon, rec.Last, now
	spare(rec, n, err)
}

// awaitJobs keeps a gate looking, a poll apart, while the running jobs of a runner that answered
// before cannot be counted at the timeout, for up to jobsUnknownLooks polls from the first such
// look, not counting the time the worker could not look (lookedAgain), heartbeats going on:
// ABANDON terminates the instance and would kill the jobs of a busy runner whose metrics blipped.
// It reports whether the gate waits; once the window has passed, the runner is taken as no longer
// answering and the note says so.
func (h *Handler) awaitJobs(rec *record, now time.Time, err error) bool {
	window := jobsUnknownLooks * rec.Poll
	if rec.JobsUnknownSince.IsZero() {
		rec.JobsUnknownSince = now
		rec.Note = joinNote(rec.Note, fmt.Sprintf("running jobs unknown at the timeout (%v) of a runner that answered before: it may be busy, so more looks, a poll apart, for up to %s before any ABANDON",
			err, window))
	}
	if now.Sub(rec.JobsUnknownSince) >= window {
		rec.Note = joinNote(rec.Note, fmt.Sprintf("the runner answered before, but its running jobs stayed unknown for %s past the timeout: taken as no longer answering",
			now.Sub(rec.JobsUnknownSince).Round(time.Second)))
		return false
	}
	rec.LateDue = now.Add(rec.Poll)
	rec.Due = h.nextDue(rec, now, rec.LateDue)
	rec.FollowUps++
	return true
}

// neverGotAJob reports whether the runner cannot be running a job by what its looks showed: the
// latest look answered, and no job request of the runner has succeeded (its request_job success
// counter is 0; GitLab gives a job only to a request that succeeds). A runner that did not
// answer the latest look may have got one since the look before.
func neverGotAJob(rec *record) bool {
	return rec.Seen && rec.OK == 0 && rec.Last != ReasonNoAnswer
}

// spare turns a decided ABANDON into CONTINUE when the runner is running n jobs: ABANDON
// terminates the instance and would kill them. When the jobs could not be counted (err) the
// ABANDON stands and the note says the count was unknown.
func spare(rec *record, n int, err error) {
	switch {
	case err != nil:
		rec.Note = joinNote(rec.Note, fmt.Sprintf("running jobs unknown at the timeout: %v", err))
	case n > 0:
		rec.Result, rec.Reason, rec.JobsAtTimeout = ResultContinue, ReasonRunningJobs, n
		rec.Note = joinNote(rec.Note, fmt.Sprintf("not seen healthy by the timeout (last look: %s) but running %d job(s): continued, since ABANDON would kill them", rec.Last, n))
	}
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// abandonRecheck is how old an ABANDON decision may be before its completion looks for running
// jobs again (the decision itself looked, at the timeout).
const abandonRecheck = 5 * time.Second

// complete completes the action with the recorded result (safe twice: a second completion finds
// the action no longer pending) and writes the gate done. first is the attempt made by the step
// that decided (actionGone).
func (h *Handler) complete(ctx context.Context, rec record, version int64, first bool) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.StepTimeout)
	defer cancel()
	if now := h.d.Clock.Now(); rec.Result == ResultAbandon && now.Sub(rec.Due) >= abandonRecheck {
		// The ABANDON was decided a while ago and its completion failed since: the runner may
		// have taken jobs meanwhile, which ABANDON would kill. Look again.
		n, err := h.d.Jobs.RunningJobs(cctx, rec.Fleet, rec.InstanceID)
		if we := workerSide(cctx, err); we != nil {
			// The worker could not count them: that says nothing about the runner, which may have
			// got jobs since the decision, and must not kill them. Back to holding: heartbeats,
			// and a look a poll later that decides anew (cannotLook); past the hold limit,
			// CONTINUE (could-not-look).
			rec.Note = joinNote(rec.Note, fmt.Sprintf("the ABANDON (%s) decided %s before was not completed: at its retried completion the worker could not count the runner's running jobs (%s)",
				rec.Reason, now.Sub(rec.Due).Round(time.Second), we.Reason))
			rec.Phase, rec.Result, rec.Reason = phaseWait, "", ""
			h.cannotLook(cctx, &rec, now, we)
			return h.persist(cctx, rec, version, now, true)
		}
		spare(&rec, n, err)
	}
	active, err := h.d.Lifecycle.Complete(cctx, rec.Group, rec.Hook, rec.Token, rec.InstanceID, rec.Result)
	if err != nil {
		return fmt.Errorf("launch: completing %s with %s: %w", rec.InstanceID, rec.Result, err)
	}
	now := h.d.Clock.Now()
	if !active {
		actionGone(&rec, first)
	}
	rec.Phase, rec.FinishedAt, rec.Due = phaseDone, now, time.Time{}
	out, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("launch: encoding gate of %s: %w", rec.InstanceID, err)
	}
	ok, err := h.d.Store.Save(cctx, keyPrefix+rec.Token, sortKey, out, version, time.Time{}, now.Add(h.cfg.Retention))
	if err != nil {
		return fmt.Errorf("launch: saving gate of %s: %w", rec.InstanceID, err)
	}
	if ok {
		h.finished(ctx, rec, now)
	}
	return nil
}

// actionGone records a completion that found the action no longer pending. At the first attempt
// the action ended without the gate (the hook timed out and AWS applied its default result, or
// someone else completed it): the gate's result did not happen, so the record, the log line and
// finished_total say action-gone, and the note what the gate meant to do. A later attempt (the
// completion or its write failed before) most likely finds its own earlier completion, whose
// answer or write was lost, as the drain reasons: the result stands, noted.
func actionGone(rec *record, first bool) {
	if !first {
		rec.Note = joinNote(rec.Note, fmt.Sprintf("the lifecycle action was no longer pending at a retried completion: taken as completed with %s by an earlier attempt whose answer or write was lost", rec.Result))
		return
	}
	rec.Note = joinNote(rec.Note, fmt.Sprintf("the lifecycle action was no longer pending when completed: the gate's %s (%s) was not applied; the hook's default result was, or someone else's", rec.Result, rec.Reason))
	rec.Result, rec.Reason = "", ReasonActionGone
}

func (h *Handler) finished(ctx context.Context, rec record, now time.Time) {
	result := rec.Result
	if result == "" {
		result = "none"
	}
	h.m.Finished.WithLabelValues(rec.Fleet, result, rec.Reason).Inc()
	h.m.Duration.WithLabelValues(rec.Fleet, result).Observe(now.Sub(rec.StartedAt).Seconds())
	h.decision(ctx, rec, now)
}

// decision writes one JSON log line per step.
func (h *Handler) decision(ctx context.Context, rec record, now time.Time) {
	attrs := []any{"fleet", rec.Fleet, "instance_id", rec.InstanceID, "token_hash", tokenHash(rec.Token),
		"checks", rec.Checks, "last_look", rec.Last, "elapsed_s", now.Sub(rec.StartedAt).Seconds()}
	if rec.Phase == phaseDone {
		attrs = append(attrs, "result", rec.Result, "reason", rec.Reason, "next_step", "none")
	} else {
		attrs = append(attrs, "next_step", "look again", "next_in_s", max(rec.Due.Sub(now), 0).Seconds(),
			"deadline_in_s", rec.Deadline.Sub(now).Seconds())
	}
	if rec.LookFailures > 0 {
		attrs = append(attrs, "look_failures", rec.LookFailures)
	}
	if !rec.LookFailedSince.IsZero() {
		attrs = append(attrs, "could_not_look", rec.LookFailure, "hold_until", holdUntil(&rec))
	}
	if rec.Note != "" {
		attrs = append(attrs, "note", rec.Note)
	}
	h.log.InfoContext(ctx, "launch decision", attrs...)
}

// Sweep advances every unfinished gate whose next step is overdue by more than SweepGrace (a lost
// follow-up, a worker that died mid-step). Any replica may call it at any time; it returns how
// many gates it advanced.
func (h *Handler) Sweep(ctx context.Context) (int, error) {
	bodies, err := h.d.Store.Unfinished(ctx, keyPrefix)
	if err != nil {
		return 0, fmt.Errorf("launch: sweeping: %w", err)
	}
	now := h.d.Clock.Now()
	var errs []error
	n := 0
	for _, b := range bodies {
		var rec record
		if err := json.Unmarshal(b, &rec); err != nil {
			errs = append(errs, fmt.Errorf("launch: sweeping: unreadable gate record: %w", err))
			continue
		}
		f, managed := h.byGroup[rec.Group]
		if rec.Phase == phaseDone || !managed || rec.Schema > recordSchema || !rec.Due.Add(h.cfg.SweepGrace).Before(now) {
			continue
		}
		la := &messages.LifecycleAction{LifecycleActionToken: rec.Token, AutoScalingGroupName: rec.Group,
			LifecycleHookName: rec.Hook, EC2InstanceId: rec.InstanceID, LifecycleTransition: messages.TransitionLaunching}
		sctx, cancel := context.WithTimeout(ctx, h.cfg.StepTimeout)
		if err := h.advance(sctx, f, h.cfg.Gates[f.Name], la, rec.Event, true); err != nil {
			errs = append(errs, err)
		}
		cancel()
		n++
	}
	return n, errors.Join(errs...)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// hookTimeouts are the launch hook's heartbeat and global timeouts (0: unknown).
type hookTimeouts struct{ heartbeat, global time.Duration }

// resolve fills a gate's zero fields from the launch hook's heartbeat timeout (see Gate), and
// returns the hook's timeouts.
func (h *Handler) resolve(ctx context.Context, g Gate, group, hook string) (Gate, hookTimeouts, error) {
	hb, global, err := h.d.Lifecycle.HookTimeouts(ctx, group, hook)
	if err != nil {
		return g, hookTimeouts{}, fmt.Errorf("reading launch hook %s of %s: %w", hook, group, err)
	}
	derived := time.Duration(float64(hb) * hookShare)
	if g.Timeout == 0 {
		g.Timeout = DefaultTimeout
		if hb > 0 {
			g.Timeout = derived
		}
	}
	// A configured interval above a third of the hook's timeout (a stack update that lowered
	// it, a typo) would let the hook time out between heartbeats, and its ABANDON bypasses the
	// gate's check for running jobs: heartbeat at least that often, as drains are held to.
	if hb > 0 && g.HeartbeatEvery > hb/3 {
		h.log.WarnContext(ctx, "launch gate: heartbeat_interval above a third of the launch hook's heartbeat timeout; using a third of it",
			"group", group, "hook", hook, "heartbeat_interval", g.HeartbeatEvery, "hook_heartbeat_timeout", hb)
		g.HeartbeatEvery = hb / 3
	}
	if g.Poll == 0 {
		g.Poll = min(DefaultPoll, max(g.Timeout/3, time.Second))
	}
	// The hook's global timeout (100 × its heartbeat timeout, at most 48 h) ends the action with
	// its default result, ABANDON, however often it is heartbeated: a configured timeout that,
	// with the looks added past it and a minute to spare, outlasts it would have AWS decide
	// instead of the gate, busy runner or not. It is held inside it.
	if limit := global - addedWait(g.Poll) - time.Minute; global > 0 && limit > 0 && g.Timeout > limit {
		h.log.WarnContext(ctx, "launch gate: timeout beyond the launch hook's global timeout; holding it inside",
			"group", group, "hook", hook, "timeout", g.Timeout, "hook_global_timeout", global, "using", limit)
		g.Timeout = limit
	}
	// Heartbeats whenever the gate may wait longer than a third of the hook's timeout, the derived
	// timeout too: its decision can come later than its deadline (the looks added past it, a lost
	// follow-up the sweep recovers a grace and a sweep interval late), and the hook's own ABANDON
	// would then terminate an instance the gate would have continued, jobs and all.
	if g.HeartbeatEvery == 0 && hb > 0 && g.Timeout+addedWait(g.Poll) > hb/3 {
		g.HeartbeatEvery = hb / 3
	}
	return g, hookTimeouts{heartbeat: hb, global: global}, nil
}

// addedWait is how long past its deadline a gate may look at a runner that answered in time:
// MinObservation from a first answer just before the deadline, then jobsUnknownLooks polls while
// its running jobs cannot be counted.
func addedWait(poll time.Duration) time.Duration {
	return max(poll, MinObservation) + jobsUnknownLooks*poll
}
