package drain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/messages"
)

// terminating is the LifecycleTransition of a terminate hook.
const terminating = "autoscaling:EC2_INSTANCE_TERMINATING"

// Handler drains instances of the configured fleets. It is safe for concurrent use by any
// number of goroutines and replicas.
type Handler struct {
	cfg     Config
	byGroup map[string]fleet.Settings
	byName  map[string]fleet.Settings
	d       Deps
	log     *slog.Logger
	m       *Metrics

	// lanes holds a token per follow-up step in progress (Config.StepConcurrency).
	lanes chan struct{}
	// lastStart is when (unix nanoseconds) this replica last began a drain's first step; while
	// one began within startPriority, follow-ups also take the one token of narrow, so a wave of
	// terminations gets its stop commands out ahead of the polling of the drains already running.
	lastStart atomic.Int64
	narrow    chan struct{}

	mu    sync.Mutex
	hooks map[string]hookTimeouts
	// warned holds, per fleet and kind, the last warning CheckFleet logged (warnOnce).
	warned map[string]string
	// keptAlive is when this replica last heartbeated, by token, a drain a newer worker wrote
	// (keepAlive): it does not write those records, so their LastHeartbeat stays behind.
	keptAlive map[string]time.Time
	// unpublished counts, per fleet, what the Sink has not been told yet.
	unpublished map[string]*tally
}

type tally struct {
	finished   map[string]int
	heartbeats int
}

func (h *Handler) count(fleet, outcome string, heartbeats int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.unpublished[fleet]
	if t == nil {
		t = &tally{finished: map[string]int{}}
		h.unpublished[fleet] = t
	}
	if outcome != "" {
		t.finished[outcome]++
	}
	t.heartbeats += heartbeats
}

type hookTimeouts struct {
	heartbeat, global time.Duration
	read              time.Time // when DescribeLifecycleHooks said so
}

// hookReread is how long a hook's timeouts are used before they are read again: a stack
// update may lower a heartbeat timeout, and drains started afterwards must heartbeat in time.
const hookReread = 5 * time.Minute

// New returns a drain handler. It validates cfg (after defaults) and refuses nil dependencies.
func New(cfg Config, deps Deps) (*Handler, error) {
	cfg.setDefaults()
	if err := errors.Join(cfg.Validate(), deps.validate()); err != nil {
		return nil, err
	}
	if deps.Clock == nil {
		deps.Clock = SystemClock{}
	}
	if deps.Metrics == nil {
		deps.Metrics = NewMetrics(nil)
	}
	h := &Handler{
		cfg: cfg, d: deps, log: deps.Logger.With("handler", "drain"), m: deps.Metrics,
		byGroup: map[string]fleet.Settings{}, byName: map[string]fleet.Settings{},
		hooks: map[string]hookTimeouts{}, warned: map[string]string{}, unpublished: map[string]*tally{}, keptAlive: map[string]time.Time{},
		lanes: make(chan struct{}, cfg.StepConcurrency), narrow: make(chan struct{}, 1),
	}
	for _, f := range cfg.Fleets {
		h.byGroup[f.GroupName] = f
		h.byName[f.Name] = f
	}
	return h, nil
}

// Handle is the router's entry point for KindTerminateAction and KindDrainStep. It returns nil
// when the message is done with (including duplicates, which do nothing, and actions of another
// tool's terminate hook, left to that tool: see Start), a messages.Reject error for a message
// that can never succeed, and any other error for a transient failure (the message is retried).
func (h *Handler) Handle(ctx context.Context, msg *messages.Message) error {
	switch p := msg.Payload.(type) {
	case *messages.LifecycleAction:
		if msg.Kind != messages.KindTerminateAction {
			return messages.Reject("drain: lifecycle action of kind %s is not a termination", msg.Kind)
		}
		return h.Start(ctx, p, msg.Time)
	case *messages.DrainStep:
		return h.Advance(ctx, p)
	default:
		return messages.Reject("drain: cannot handle a message of kind %s", msg.Kind)
	}
}

// CheckFleets checks, at start-up, what the drains of every fleet depend on (CheckFleet). A
// fleet whose group does not exist is not a problem but an absence: its name is returned in
// missing and the worker runs without it (a fleet stack not created yet, or deleted before the
// fleet left the config) — refusing to start would stop the drains of every other fleet. err
// joins every problem of the fleets whose group exists.
func (h *Handler) CheckFleets(ctx context.Context) (missing []string, err error) {
	var errs []error
	for _, f := range h.cfg.Fleets {
		present, err := h.CheckFleet(ctx, f.Name)
		if !present && err == nil {
			missing = append(missing, f.Name)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return missing, errors.Join(errs...)
}

// CheckFleet checks one fleet: its group exists (present false and a nil error when it does
// not), has a terminate hook of the fleet's name (Hooks.Terminate), the heartbeat interval is at
// most a third of that hook's heartbeat timeout, and the fleet's three drain documents exist. It
// returns every problem found; a missing hook's problem names the terminate hooks the group does
// have, so a name that does not match is plain. Other terminate hooks are another tool's: their
// actions are left alone (Start), and they are logged as such. It warns when a drain orphaned by
// a dead worker could be recovered only after its hook timed out.
func (h *Handler) CheckFleet(ctx context.Context, name string) (present bool, err error) {
	f, ok := h.byName[name]
	if !ok {
		return false, fmt.Errorf("drain: no fleet %q", name)
	}
	exists, err := h.d.Lifecycle.GroupExists(ctx, f.GroupName)
	if err != nil {
		return false, fmt.Errorf("drain: fleet %q: %w", f.Name, err)
	}
	if !exists {
		return false, nil
	}
	var errs []error
	names, err := h.d.Lifecycle.TerminateHooks(ctx, f.GroupName)
	hook := f.Hooks.Terminate
	var found bool
	var others []string
	for _, n := range names {
		if n == hook {
			found = true
		} else {
			others = append(others, n)
		}
	}
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("drain: fleet %q: listing terminate hooks of %s: %w", f.Name, f.GroupName, err))
	case !found:
		has := "none"
		if len(names) > 0 {
			has = strings.Join(names, ", ")
		}
		errs = append(errs, fmt.Errorf("drain: fleet %q: group %s has no terminate lifecycle hook named %s (hooks.terminate): instances would terminate without a drain; its terminate hooks: %s",
			f.Name, f.GroupName, hook, has))
	}
	if len(others) > 0 {
		h.warnOnce(f.Name, "other terminate hooks", "drain: the group has other terminate lifecycle hooks: their actions are left to their own tool (not claimed, heartbeated or completed)",
			"fleet", f.Name, "group", f.GroupName, "hook", hook, "other_hooks", others)
	}
	if found {
		h.checkHeartbeat(ctx, f, hook, &errs)
	}
	launch, err := h.d.Lifecycle.LaunchHooks(ctx, f.GroupName)
	if err != nil {
		errs = append(errs, fmt.Errorf("drain: fleet %q: listing launch hooks of %s: %w", f.Name, f.GroupName, err))
	}
	var otherLaunch []string
	for _, n := range launch {
		if n != f.Hooks.Launch {
			otherLaunch = append(otherLaunch, n)
		}
	}
	if len(otherLaunch) > 0 {
		// Legitimate when another tool gates launches too; a typo when one was meant to be
		// RunnerFleet's gate (its instances then wait out that hook's timeout at every launch).
		h.warnOnce(f.Name, "other launch hooks", "drain: the group has other launch lifecycle hooks: their actions are left to their own tool, and each launch waits for them",
			"fleet", f.Name, "group", f.GroupName, "hook", f.Hooks.Launch, "other_hooks", otherLaunch,
			"hint", "if one of them is meant to be RunnerFleet's launch gate, set hooks.launch to its name")
	}
	for _, doc := range []struct{ key, name string }{
		{"stop_intake", f.Documents.StopIntake}, {"status", f.Documents.Status}, {"unregister", f.Documents.Unregister},
	} {
		ok, err := h.d.Commands.DocumentExists(ctx, doc.name)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("drain: fleet %q: documents.%s: %w", f.Name, doc.key, err))
		case !ok:
			errs = append(errs, fmt.Errorf("drain: fleet %q: documents.%s: SSM document %s does not exist: no drain could stop a runner", f.Name, doc.key, doc.name))
		}
	}
	return true, errors.Join(errs...)
}

// warnOnce logs a CheckFleet warning unless the same one (kind, message and attributes) was
// the last logged for the fleet: the worker checks fleets again on an interval, and a warning
// that stands would otherwise repeat every round.
func (h *Handler) warnOnce(fleetName, kind, msg string, args ...any) {
	said := msg + fmt.Sprint(args...)
	h.mu.Lock()
	same := h.warned[fleetName+"\x00"+kind] == said
	h.warned[fleetName+"\x00"+kind] = said
	h.mu.Unlock()
	if !same {
		h.log.Warn(msg, args...)
	}
}

// checkHeartbeat checks the fleet's heartbeat interval against its terminate hook's heartbeat
// timeout (at most a third), adding a problem to errs, and warns when a drain orphaned by a dead
// worker could be recovered only after the hook timed out.
func (h *Handler) checkHeartbeat(ctx context.Context, f fleet.Settings, hook string, errs *[]error) {
	t, err := h.hookTimeouts(ctx, f.GroupName, hook)
	if err != nil {
		*errs = append(*errs, fmt.Errorf("drain: fleet %q: %w", f.Name, err))
		return
	}
	iv := f.Drain.HeartbeatInterval
	if iv > t.heartbeat/3 {
		*errs = append(*errs, fmt.Errorf("drain: fleet %q: heartbeat_interval %s exceeds a third of hook %s's heartbeat timeout %s", f.Name, iv, hook, t.heartbeat))
	}
	if iv <= 0 {
		iv = t.heartbeat / 3
	}
	// A drain whose worker died mid-step, just before its heartbeat was due, is found by the
	// first sweep after its lease and the grace have passed, and that sweep's step heartbeats
	// within a step's time: if all that outlasts the hook's heartbeat timeout, the instance may
	// go with its jobs.
	if worst := iv + h.cfg.Lease + h.cfg.SweepGrace + h.cfg.SweepInterval + h.cfg.StepTimeout; worst >= t.heartbeat {
		h.warnOnce(f.Name, "orphan gap", "drain: a drain orphaned by a dead worker may be recovered only after its hook timed out",
			"fleet", f.Name, "hook", hook, "heartbeat_timeout", t.heartbeat.String(),
			"worst_gap", worst.String(), "heartbeat_interval", iv.String(), "lease", h.cfg.Lease.String(),
			"sweep_grace", h.cfg.SweepGrace.String(), "sweep_interval", h.cfg.SweepInterval.String(), "step_timeout", h.cfg.StepTimeout.String(),
			"hint", "raise the hook's heartbeat timeout (AWS: up to 7200 s), or lower heartbeat_interval or sweep_interval")
	}
}

func (h *Handler) hookTimeouts(ctx context.Context, group, hook string) (hookTimeouts, error) {
	key := group + "\x00" + hook
	now := h.d.Clock.Now()
	h.mu.Lock()
	cached, ok := h.hooks[key]
	h.mu.Unlock()
	if ok && now.Sub(cached.read) < hookReread {
		return cached, nil
	}
	hb, global, err := h.d.Lifecycle.HookTimeouts(ctx, group, hook)
	if err != nil && ok {
		// The last answer is better than no drain: keep it until a read succeeds.
		h.log.Warn("drain: re-reading a lifecycle hook failed: using its last timeouts",
			"group", group, "hook", hook, "read_at", cached.read, "error", err.Error())
		return cached, nil
	}
	if err != nil {
		return hookTimeouts{}, fmt.Errorf("reading lifecycle hook %s of %s: %w", hook, group, err)
	}
	if hb <= 0 {
		return hookTimeouts{}, fmt.Errorf("lifecycle hook %s of %s has no heartbeat timeout", hook, group)
	}
	if global <= 0 {
		global = min(maxHookTimeout, 100*hb)
	}
	t := hookTimeouts{heartbeat: hb, global: global, read: now}
	h.mu.Lock()
	h.hooks[key] = t
	h.mu.Unlock()
	return t, nil
}

// Start claims the drain of a terminating instance and takes its first step. at is when the
// instance entered Terminating:Wait (the event's time; zero: now), from which the hook's
// heartbeat timeout runs. A second Start for the same token does nothing, and so does an action
// of a hook other than the fleet's terminate hook (Hooks.Terminate): that hook is another tool's,
// and its action is left to it (logged, returns nil). A drain already claimed is stepped to its
// end by Advance whatever its hook (one claimed by an older worker, before this check).
func (h *Handler) Start(ctx context.Context, la *messages.LifecycleAction, at time.Time) error {
	if la == nil {
		return messages.Reject("drain: no lifecycle action")
	}
	switch {
	case la.LifecycleTransition != terminating:
		return messages.Reject("drain: lifecycle transition %q is not %s", la.LifecycleTransition, terminating)
	case la.LifecycleActionToken == "", la.EC2InstanceId == "", la.AutoScalingGroupName == "", la.LifecycleHookName == "":
		return messages.Reject("drain: lifecycle action without token, instance, group or hook")
	}
	f, ok := h.byGroup[la.AutoScalingGroupName]
	if !ok {
		return messages.Reject("drain: group %s is not a managed fleet's", la.AutoScalingGroupName)
	}
	if la.LifecycleHookName != f.Hooks.Terminate {
		// Another tool's terminate hook on the fleet's group (a log shipper's, say): its action
		// is that tool's to complete. Claimed here, it would be heartbeated and completed past
		// the tool. Nothing is wrong with the message: it is acked, not retried or dead-lettered.
		h.log.Info("drain: terminate action of another lifecycle hook: left to its own tool (not claimed, heartbeated or completed)",
			"fleet", f.Name, "group", la.AutoScalingGroupName, "hook", la.LifecycleHookName, "fleet_hook", f.Hooks.Terminate,
			"instance_id", la.EC2InstanceId, "token_hash", tokenHash(la.LifecycleActionToken))
		return nil
	}
	h.lastStart.Store(time.Now().UnixNano())
	t, err := h.hookTimeouts(ctx, la.AutoScalingGroupName, la.LifecycleHookName)
	if err != nil {
		return fmt.Errorf("drain: starting drain of %s: %w", la.EC2InstanceId, err)
	}
	now := h.d.Clock.Now()
	began := time.Now() // the step's time runs from before its claim (see run)
	if at.IsZero() || at.After(now) {
		at = now
	}
	every := f.Drain.HeartbeatInterval
	if every <= 0 || every > t.heartbeat/3 {
		every = t.heartbeat / 3
	}
	maxDrain := f.Drain.MaxDrain
	if maxDrain <= 0 || maxDrain > t.global {
		maxDrain = t.global
	}
	rec := record{
		Schema: recordSchema, Token: la.LifecycleActionToken, Fleet: f.Name, Group: la.AutoScalingGroupName,
		Hook: la.LifecycleHookName, InstanceID: la.EC2InstanceId,
		Phase: phaseStopIntake, StartedAt: at, Deadline: at.Add(maxDrain),
		HeartbeatEvery: every, LastHeartbeat: at, Jobs: -1,
		Lease: &lease{Owner: h.cfg.Owner, Until: now.Add(h.cfg.Lease)},
	}
	rec.Due = rec.Lease.Until
	body, err := leasedBody(rec, now)
	if err != nil {
		return fmt.Errorf("drain: encoding drain of %s: %w", la.EC2InstanceId, err)
	}
	claimCtx, cancel := h.stepContext(ctx, began)
	claimed, err := h.d.Store.Save(claimCtx, partitionKey(rec.Token), sortKey, body, 0, rec.Due, time.Time{})
	cancel()
	if err != nil {
		return fmt.Errorf("drain: claiming drain of %s: %w", la.EC2InstanceId, err)
	}
	if !claimed {
		h.decision(rec, now, "claim", "duplicate: drain already claimed; nothing to do")
		return nil
	}
	_, err = h.run(ctx, rec, 1, began)
	return err
}

// Advance takes the next step of a drain when it is due. Only the follow-up scheduled by the
// latest step (its Attempt is the record's version) is acted on: a duplicate, a follow-up for a
// step already taken, or one for a drain another replica is stepping, does nothing.
func (h *Handler) Advance(ctx context.Context, s *messages.DrainStep) error {
	if s == nil || s.ActionToken == "" {
		return messages.Reject("drain: follow-up without an action token")
	}
	return h.advance(ctx, s.ActionToken, int64(s.Attempt), false)
}

func (h *Handler) advance(ctx context.Context, token string, attempt int64, sweeping bool) error {
	select {
	case h.lanes <- struct{}{}:
		defer func() { <-h.lanes }()
	case <-ctx.Done():
		return fmt.Errorf("drain: waiting for a free step lane for drain %s: %w", tokenHash(token), ctx.Err())
	}
	body, version, found, err := h.d.Store.Load(ctx, partitionKey(token), sortKey)
	if err != nil {
		return fmt.Errorf("drain: loading drain %s: %w", tokenHash(token), err)
	}
	if !found {
		h.log.Info("drain follow-up for no drain record", "token_hash", tokenHash(token))
		return nil
	}
	var rec record
	if err := json.Unmarshal(body, &rec); err != nil {
		return messages.Reject("drain: drain record %s unreadable: %v", tokenHash(token), err)
	}
	if rec.Schema > recordSchema {
		return h.passOn(ctx, rec, version, attempt, sweeping, "drain record written by a newer worker: left to a newer replica")
	}
	if _, ok := h.byName[rec.Fleet]; !ok {
		// A rolling deploy that adds the fleet (or removes it with drains in flight): stepping
		// with no settings would send documents without names and never end. Leave it to a
		// replica that knows the fleet, keeping its action alive meanwhile; past its maximum
		// drain (a fleet removed for good), finish it as any drain ends there.
		if now := h.d.Clock.Now(); !rec.heartbeating(now) && rec.Phase != phaseDone {
			return h.finishUnknown(ctx, rec, version, now)
		}
		return h.passOn(ctx, rec, version, attempt, sweeping, "drain of a fleet this worker's config does not have: left to a replica that has it")
	}
	if rec.Phase == phaseDone {
		return nil
	}
	now := h.d.Clock.Now()
	switch {
	case rec.Lease != nil && rec.Lease.Until.After(now):
		return nil // another replica is taking a step; it schedules the next one
	case !sweeping && attempt != version:
		// A duplicate, or a follow-up overtaken by a step already taken: the writer of the
		// latest step scheduled the next one. (A drain whose step died with its worker is
		// picked up by Sweep once its lease and the grace have passed.)
		return nil
	case rec.Due.After(now.Add(clockSkew)):
		if sweeping {
			return nil
		}
		// Early (replicas' clocks differ): keep the chain alive.
		return h.schedule(ctx, rec, version, rec.Due.Sub(now))
	}
	if time.Since(time.Unix(0, h.lastStart.Load())) < startPriority && !rec.heartbeatSoon(now) {
		// New drains are starting: polls go one at a time (a heartbeat soon due does not wait).
		select {
		case h.narrow <- struct{}{}:
			defer func() { <-h.narrow }()
		case <-ctx.Done():
			return fmt.Errorf("drain: waiting for the one step lane open while new drains start, for drain %s: %w", tokenHash(token), ctx.Err())
		}
		now = h.d.Clock.Now()
	}
	began := time.Now() // the step's time runs from before its lease (see run)
	rec.Lease = nil     // expired (or none): in run, a lease is one this replica holds
	if rec.Phase.leased() {
		leaseCtx, cancel := h.stepContext(ctx, began)
		ok, err := h.lease(leaseCtx, &rec, version, now)
		cancel()
		if err != nil || !ok {
			return err // !ok: another replica took this step
		}
		version++
	}
	saved, err := h.run(ctx, rec, version, began)
	if saved && sweeping {
		h.m.Recovered.WithLabelValues(rec.Fleet).Inc()
	}
	return err
}

// passOn leaves a drain whose record a newer worker wrote (a rolling deploy runs old and new
// replicas side by side) to a newer replica: this version's code would drop what it does not
// know when it saves the record, so it neither steps nor writes it. The same for a drain of a
// fleet this replica's config lacks (why says which). It does keep the action
// alive (keepAlive). The latest follow-up is sent again (any replica may receive it), so the
// chain survives until a newer replica takes it; stale follow-ups and sweeps do nothing.
func (h *Handler) passOn(ctx context.Context, rec record, version, attempt int64, sweeping bool, why string) error {
	h.log.Warn(why,
		"fleet", rec.Fleet, "instance_id", rec.InstanceID, "token_hash", tokenHash(rec.Token),
		"schema", rec.Schema, "known_schema", recordSchema)
	h.keepAlive(ctx, rec)
	if sweeping || attempt != version || !rec.heartbeating(h.d.Clock.Now()) {
		return nil // past its maximum drain nothing is due: a newer replica's sweep finds it
	}
	return h.schedule(ctx, rec, version, passOnDelay)
}

// finishUnknown ends, as max-drain, a drain of a fleet this replica's config does not have once
// its maximum drain has passed: heartbeats stop there for every drain, and the record would
// otherwise stay in the sweep's listing (and the in-progress gauges) for ever. The record is of
// this replica's schema, so writing it loses nothing.
func (h *Handler) finishUnknown(ctx context.Context, rec record, version int64, now time.Time) error {
	h.finish(&rec, now, OutcomeMaxDrain, fmt.Sprintf("fleet %q is not in this worker's config and the maximum drain passed: heartbeats stop, the hook's timeout ends the action", rec.Fleet))
	_, err := h.write(ctx, rec, version, "unknown-fleet", 0, now)
	return err
}

// keepAlive heartbeats the action of a drain this worker cannot step, when one is due by the
// record and by this replica's own last heartbeat of it. After a rollback to an older worker no
// replica steps the newer records: without heartbeats their hooks would time out, and their
// instances go with their jobs. The record is not written; the heartbeats end at its deadline.
func (h *Handler) keepAlive(ctx context.Context, rec record) {
	if rec.Phase == phaseDone || rec.HeartbeatEvery <= 0 {
		return
	}
	now := h.d.Clock.Now()
	h.mu.Lock()
	if last, ok := h.keptAlive[rec.Token]; ok && last.After(rec.LastHeartbeat) {
		rec.LastHeartbeat = last
	}
	h.mu.Unlock()
	before := rec.LastHeartbeat
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.StepTimeout)
	defer cancel()
	h.heartbeat(hctx, &rec, now)
	if rec.LastHeartbeat.Equal(before) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.keptAlive[rec.Token] = rec.LastHeartbeat
	if len(h.keptAlive) > keptAliveMax {
		for token, at := range h.keptAlive {
			if now.Sub(at) > time.Hour { // past any heartbeat interval (a third of ≤ 7200 s)
				delete(h.keptAlive, token)
			}
		}
	}
}

// keptAliveMax is how many kept-alive drains are remembered before old entries are pruned.
const keptAliveMax = 256

// startPriority is how long after a drain's first step began the follow-ups of this replica run
// one at a time instead of on all their lanes. A terminate event's first step (claim, stop
// intake) takes no lane; what it waits on is the emulator's or AWS's answer, and every poll of a
// running drain in flight at the same moment slows that answer down. A wave of terminations
// keeps the window open while its events arrive; polls are not urgent (the next one, and every
// heartbeat, has at least two thirds of the hook's timeout to spare), and once the wave has passed
// they have their lanes back.
const startPriority = 2 * time.Second

// passOnDelay is how soon a follow-up passed on to a newer replica comes back.
const passOnDelay = 5 * time.Second

// lease writes rec with this replica's lease, conditioned on version: from then until the lease
// ends, only this replica steps the drain. It returns false when another replica moved the
// drain first. The record written carries whatever the step has found so far.
func (h *Handler) lease(ctx context.Context, rec *record, version int64, now time.Time) (bool, error) {
	rec.Lease = &lease{Owner: h.cfg.Owner, Until: now.Add(h.cfg.Lease)}
	rec.Due = rec.Lease.Until
	body, err := leasedBody(*rec, now)
	if err != nil {
		return false, fmt.Errorf("drain: encoding drain %s: %w", tokenHash(rec.Token), err)
	}
	ok, err := h.d.Store.Save(ctx, partitionKey(rec.Token), sortKey, body, version, rec.Due, time.Time{})
	if err != nil {
		return false, fmt.Errorf("drain: leasing drain %s: %w", tokenHash(rec.Token), err)
	}
	return ok, nil
}

// stepContext is the context of a step that began (real time) when it read the clock its lease
// is reckoned from. The step's calls run on their own bounded context: a cancelled message
// context (worker shutting down) must not cut a step in half, and the deadline — StepTimeout
// after began, well before the lease written from that moment ends — fences a replica that was
// paused mid-step. Counting from before the lease write, not after it, keeps the fence inside
// the lease however long that write took (SDK retries of a throttled write can take seconds).
func (h *Handler) stepContext(ctx context.Context, began time.Time) (context.Context, context.CancelFunc) {
	return context.WithDeadline(context.WithoutCancel(ctx), began.Add(h.cfg.StepTimeout))
}

// run takes the step of a record at version, writes the result conditioned on that version, and
// schedules the follow-up. It takes the lease before a phase that needs one (phase.leased) if
// the record does not hold it yet. saved reports whether the step's result was written.
func (h *Handler) run(ctx context.Context, rec record, version int64, began time.Time) (saved bool, err error) {
	stepCtx, cancel := h.stepContext(ctx, began)
	defer cancel()
	f := h.byName[rec.Fleet]
	ran := rec.Phase
	heartbeatsBefore := rec.Heartbeats
	rec.Note = ""
	now := h.d.Clock.Now()
	for range maxPhasesPerStep {
		if rec.Lease == nil && rec.Phase.leased() {
			// A polling step found the drain ready for its next side effect.
			note := rec.Note
			ok, err := h.lease(stepCtx, &rec, version, now)
			if err != nil {
				return false, err
			}
			if !ok {
				h.decision(rec, now, string(ran), "lost the drain to another replica; this step's result is dropped")
				return false, nil
			}
			version++
			rec.Note = note
		}
		before := rec.Phase
		h.step(stepCtx, &rec, f, now)
		h.m.Steps.WithLabelValues(rec.Fleet, string(before)).Inc()
		if rec.Phase != before {
			rec.CallFailures = 0
		}
		if rec.Phase == phaseDone || rec.Phase == before || rec.Due.After(now) || stepCtx.Err() != nil {
			break
		}
		now = h.d.Clock.Now()
	}
	return h.write(ctx, rec, version, string(ran), rec.Heartbeats-heartbeatsBefore, now)
}

// write saves the result of a step (ran) taken at version, conditioned on it, then records the
// decision and the figures and, unless the drain is done, schedules its next step. saved reports
// whether the write landed (false: another replica moved the drain first).
func (h *Handler) write(ctx context.Context, rec record, version int64, ran string, heartbeats int, now time.Time) (saved bool, err error) {
	rec.Lease = nil
	rec.Steps++
	var expires time.Time
	if rec.Phase == phaseDone {
		expires = now.Add(h.cfg.Retention)
		rec.Due = time.Time{}
	} else {
		rec.Due = clampDue(rec.Due, now)
	}
	body, err := json.Marshal(rec)
	if err != nil {
		return false, fmt.Errorf("drain: encoding drain %s: %w", tokenHash(rec.Token), err)
	}
	saveCtx, cancelSave := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	defer cancelSave()
	ok, err := h.d.Store.Save(saveCtx, partitionKey(rec.Token), sortKey, body, version, rec.Due, expires)
	if err != nil {
		return false, fmt.Errorf("drain: saving drain %s after %s: %w", tokenHash(rec.Token), ran, err)
	}
	if !ok {
		h.decision(rec, now, ran, "lost the drain to another replica; this step's result is dropped")
		return false, nil
	}
	h.decision(rec, now, ran, "")
	outcome := ""
	if rec.Phase == phaseDone {
		outcome = rec.Outcome
	}
	h.count(rec.Fleet, outcome, heartbeats)
	if rec.Phase == phaseDone {
		h.m.Finished.WithLabelValues(rec.Fleet, rec.Outcome).Inc()
		h.m.Duration.WithLabelValues(rec.Fleet, rec.Outcome).Observe(rec.FinishedAt.Sub(rec.StartedAt).Seconds())
		if rec.Outcome != OutcomeCompleted {
			h.m.Errors.WithLabelValues(rec.Fleet, rec.Outcome).Inc()
		}
		return true, nil
	}
	// The step is written: only its follow-up carries the drain on (a redelivery of this
	// message is stale now and does nothing), so it is sent on its own bounded context, not the
	// message's, which a worker shutting down cancels; and sent again once if SQS fails it.
	// What still fails is left to the sweep.
	sctx, cancelSchedule := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	defer cancelSchedule()
	err = h.schedule(sctx, rec, version+1, rec.Due.Sub(now))
	if err != nil && sctx.Err() == nil {
		err = h.schedule(sctx, rec, version+1, max(rec.Due.Sub(h.d.Clock.Now()), 0))
	}
	return true, err
}

// clampDue keeps a next step within what one delayed message can reach.
func clampDue(due, now time.Time) time.Time {
	switch {
	case due.Before(now):
		return now
	case due.After(now.Add(MaxDelay)):
		return now.Add(MaxDelay)
	}
	return due
}

func (h *Handler) schedule(ctx context.Context, rec record, version int64, delay time.Duration) error {
	delay = min(max(delay, 0), MaxDelay)
	step := messages.DrainStep{
		Fleet: rec.Fleet, InstanceID: rec.InstanceID, ActionToken: rec.Token, GroupName: rec.Group,
		Attempt: int(version), Step: string(rec.Phase), IssuedAt: h.d.Clock.Now(),
	}
	if err := h.d.FollowUps.Schedule(ctx, step, delay); err != nil {
		return fmt.Errorf("drain: scheduling the next step of drain %s: %w", tokenHash(rec.Token), err)
	}
	return nil
}

// decision writes the decision record of a step: one JSON log line.
func (h *Handler) decision(rec record, now time.Time, ran, note string) {
	if note == "" {
		note = rec.Note
	}
	attrs := []any{
		"fleet", rec.Fleet, "instance_id", rec.InstanceID, "token_hash", tokenHash(rec.Token),
		"step", ran, "jobs_remaining", rec.Jobs, "elapsed_s", now.Sub(rec.StartedAt).Seconds(),
		"heartbeats", rec.Heartbeats,
	}
	if rec.Phase == phaseDone {
		attrs = append(attrs, "next_step", "none", "outcome", rec.Outcome)
	} else {
		attrs = append(attrs, "next_step", string(rec.Phase), "next_in_s", max(rec.Due.Sub(now), 0).Seconds())
	}
	if note != "" {
		attrs = append(attrs, "note", note)
	}
	h.log.Info("drain decision", attrs...)
}
