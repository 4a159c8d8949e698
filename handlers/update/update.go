// Package update applies a CloudFormation template to a fleet's stack through a change set: the
// worker's side of `publisher update`.
//
// An update is a small state machine kept in the state table (Key: pk "fleet#<name>", sk
// "update"), one step per message on the fleet's FIFO message group:
//
//   - The update command records its intent, creates the change set (type CREATE when the stack
//     does not exist, UPDATE otherwise; parameters absent from the command keep their previous
//     values through UsePreviousValue, never the template's defaults; the fleet's CloudFormation
//     service role when one is configured) and waits a bounded time for it to be created.
//   - A created change set's changes are recorded per resource (action, and replacement where the
//     service says so). A plan ends there (outcome "planned"); otherwise it is executed.
//   - Each tick of the fleet (Advance), or a Stack Status Change event of its stack
//     (HandleStackStatus), takes one more step: follow the stack until a final status. The tick
//     is the clock: a failing step is retried at the next one, and a stack event is acked even
//     when its step fails, so it never holds up the fleet's message group.
//   - "No changes" (AWS: a FAILED change set saying it contains no changes; the emulator: an error
//     "No updates are to be performed") is a clean success, outcome "no_changes". A stack that ends
//     failed or rolled back is outcome "failed", with the first failing resource's reason.
//   - An update that cannot go on ends "failed" with the reason rather than retrying forever: a
//     change set or stack that is gone, an execution the service refuses for good, and any
//     update still unfinished Deadline after its command (DefaultDeadline), so a stuck update
//     never blocks the fleet's next one.
//
// Every step is idempotent: a redelivered command continues its own update; versions of the
// record make concurrent steps safe. The handler never reads or logs parameter values.
package update

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnerfleet/runnerfleet/messages"
)

// Defaults, with why.
const (
	// DefaultChangeSetWait bounds how long the command's step waits for its change set to be
	// created (usually seconds); if it takes longer, the next tick carries on.
	DefaultChangeSetWait = 30 * time.Second
	// DefaultPollInterval is the wait between two looks at a change set being created.
	DefaultPollInterval = 2 * time.Second
	// DefaultRetention keeps a finished record (for publisher status and --wait) a week.
	DefaultRetention = 7 * 24 * time.Hour
	// eventSlack widens the window of stack events read after execution, for clock skew between
	// the worker and CloudFormation.
	eventSlack = 5 * time.Second
	// noEchoMask is what DescribeStacks shows for a NoEcho parameter's value.
	noEchoMask = "****"
	// DefaultDeadline bounds an update from its command to its outcome. An update still
	// unfinished by then (a stack or change set no call reaches any more, CloudFormation hung)
	// ends failed, telling the operator to look at the stack, so that the fleet's next update is
	// not refused for ever. The runner stack's longest path is well inside it: the template has no
	// WaitCondition, CreationPolicy or rolling UpdatePolicy, so CloudFormation waits at most for
	// the group's new instances to pass the launch hook (LaunchHookTimeout ≤ 7200 s, 2 h) and, if
	// that fails, about as long again to roll back (new instances run no jobs, so their drains are
	// short): 4 h, plus a minute of tick granularity. 6 h leaves 2 h of margin. Ending the record
	// leaves the stack alone: while it is still *_IN_PROGRESS, a new update is refused as busy.
	DefaultDeadline = 6 * time.Hour
)

// Fleet is what the handler needs to know of one fleet.
type Fleet struct {
	Name  string
	Stack string
	// RoleARN is the CloudFormation service role to pass ("" none).
	RoleARN string
	// AllowTemplateBody accepts commands that carry their own template (fleet.Settings'
	// AllowCustomTemplate); without it they are rejected.
	AllowTemplateBody bool
}

// Config tunes the handler.
type Config struct {
	// Template is the runner template the worker was built with (deploy/runner), used unless a
	// command carries its own.
	Template []byte
	// TemplateParameters returns the parameter names of a template (infra/properties does it).
	TemplateParameters func(template []byte) ([]string, error)
	// Fleets are the managed fleets. A fleet without a Stack cannot be updated (its update
	// commands are rejected).
	Fleets []Fleet
	// ChangeSetWait and PollInterval: see the defaults.
	ChangeSetWait time.Duration
	PollInterval  time.Duration
	// Retention is the TTL of a finished record.
	Retention time.Duration
	// Deadline bounds an update from its command to its outcome (see DefaultDeadline).
	Deadline time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Sleep waits d or until ctx ends (default: a timer).
	Sleep func(ctx context.Context, d time.Duration) error
}

func (c *Config) setDefaults() {
	if c.ChangeSetWait == 0 {
		c.ChangeSetWait = DefaultChangeSetWait
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.Deadline == 0 {
		c.Deadline = DefaultDeadline
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Sleep == nil {
		c.Sleep = sleep
	}
}

// Validate reports every problem of the (defaulted) configuration.
func (c Config) Validate() error {
	var errs []error
	if len(c.Template) == 0 {
		errs = append(errs, errors.New("update: no runner template"))
	}
	if len(c.Template) > messages.MaxTemplateBody {
		errs = append(errs, fmt.Errorf("update: the runner template's %d bytes exceed CloudFormation's %d-byte body limit", len(c.Template), messages.MaxTemplateBody))
	}
	if c.TemplateParameters == nil {
		errs = append(errs, errors.New("update: nil TemplateParameters"))
	}
	seen := map[string]bool{}
	// Two fleets on one stack would update it under two records, neither knowing of the other's
	// change sets, and a stack event would advance only the first fleet's update.
	stacks := map[string]string{}
	for i, f := range c.Fleets {
		if f.Name == "" {
			errs = append(errs, fmt.Errorf("update: fleet %d has no name", i))
		}
		if seen[f.Name] {
			errs = append(errs, fmt.Errorf("update: fleet %q is listed twice", f.Name))
		}
		seen[f.Name] = true
		if f.Stack == "" {
			continue
		}
		if other, dup := stacks[f.Stack]; dup {
			errs = append(errs, fmt.Errorf("update: fleet %q has stack %q, as fleet %q does", f.Name, f.Stack, other))
			continue
		}
		stacks[f.Stack] = f.Name
	}
	if c.ChangeSetWait < 0 || c.PollInterval <= 0 || c.Retention <= 0 || c.Deadline <= 0 {
		errs = append(errs, errors.New("update: change set wait must be ≥ 0, poll interval, retention and deadline > 0"))
	}
	return errors.Join(errs...)
}

// Handler runs fleet updates.
type Handler struct {
	cfg    Config
	stacks Stacks
	store  Store
	log    *slog.Logger
	m      *metrics
	fleets map[string]Fleet
}

// New returns a handler. It refuses nil dependencies and an invalid config.
func New(cfg Config, stacks Stacks, store Store, reg prometheus.Registerer, logger *slog.Logger) (*Handler, error) {
	cfg.setDefaults()
	var errs []error
	if stacks == nil {
		errs = append(errs, errors.New("update: nil Stacks"))
	}
	if store == nil {
		errs = append(errs, errors.New("update: nil Store"))
	}
	if reg == nil {
		errs = append(errs, errors.New("update: nil prometheus Registerer"))
	}
	if logger == nil {
		errs = append(errs, errors.New("update: nil logger"))
	}
	errs = append(errs, cfg.Validate())
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("update: registering metrics: %w", err)
	}
	h := &Handler{cfg: cfg, stacks: stacks, store: store, log: logger.With("handler", "update"), m: m, fleets: map[string]Fleet{}}
	for _, f := range cfg.Fleets {
		h.fleets[f.Name] = f
	}
	return h, nil
}

// HandleCommand starts the update a command asks for, or continues it when the command is
// redelivered. It rejects (dead-letters) a command for an unknown fleet, one whose template
// cannot be read or sets parameters the template does not have, and one arriving while another
// update of the fleet is unfinished.
func (h *Handler) HandleCommand(ctx context.Context, c *messages.Command) error {
	if c == nil || c.Type != messages.CommandUpdate || c.Update == nil {
		return messages.Reject("update: not an update command")
	}
	f, ok := h.fleets[c.Fleet]
	if !ok {
		return messages.Reject("update: unknown fleet %q", c.Fleet)
	}
	if f.Stack == "" {
		return messages.Reject("update: fleet %q has no stack in the worker's config (fleets[].stack)", c.Fleet)
	}
	log := h.log.With("fleet", f.Name, "stack", f.Stack, "command_id", c.ID)
	pk, sk := Key(f.Name)
	rec, version, found, err := h.load(ctx, pk, sk)
	if err != nil {
		return err
	}
	if found && rec.CommandID == c.ID && (rec.Finished() || rec.ChangeSetID != "") {
		// A redelivery: carry on with this command's update.
		if rec.Finished() {
			return nil
		}
		return h.waitChangeSet(ctx, f, rec, version, log)
	}
	if found && rec.CommandID != c.ID && !rec.Finished() {
		return messages.Reject("update: update %s of fleet %s is still in progress (phase %s); retry when it has finished", rec.CommandID, f.Name, rec.Phase)
	}

	template := h.cfg.Template
	if c.Update.TemplateBody != "" {
		if !f.AllowTemplateBody {
			return messages.Reject("update %s of fleet %s carries its own template, which this fleet does not accept: "+
				"the worker applies the runner template it was built with. To allow custom templates, set "+
				"allow_custom_template: true on the fleet in the worker's config", c.ID, f.Name)
		}
		template = []byte(c.Update.TemplateBody)
	}
	names, err := h.cfg.TemplateParameters(template)
	if err != nil {
		return messages.Reject("update: reading the template's parameters: %v", err)
	}
	known := map[string]bool{}
	for _, n := range names {
		known[n] = true
	}
	var unknown []string
	for k := range c.Update.Parameters {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return messages.Reject("update: the template has no parameter %s", strings.Join(unknown, ", "))
	}

	st, exists, err := h.stacks.Describe(ctx, f.Stack)
	if err != nil {
		return fmt.Errorf("describing stack %s: %w", f.Stack, err)
	}
	csType := "CREATE"
	if exists && st.Status != "REVIEW_IN_PROGRESS" {
		csType = "UPDATE"
		switch {
		case st.Status == "ROLLBACK_COMPLETE" || st.Status == "ROLLBACK_FAILED" || st.Status == "DELETE_FAILED":
			return messages.Reject("update: stack %s is %s: it cannot be updated; delete it and create it again", f.Stack, st.Status)
		case strings.HasSuffix(st.Status, "_IN_PROGRESS"):
			return messages.Reject("update: stack %s is busy (%s); retry when it has settled", f.Stack, st.Status)
		}
	}
	set := make([]string, 0, len(c.Update.Parameters))
	for k := range c.Update.Parameters {
		set = append(set, k)
	}
	sort.Strings(set)
	// Parameters absent from the command keep their previous values; so do those given with the
	// value the stack has already (the same request to AWS, and the emulator then recognises a
	// repeated update as "no changes": it compares numbers as numbers).
	var previous []string
	send := map[string]string{}
	for k, v := range c.Update.Parameters {
		send[k] = v
	}
	if csType == "UPDATE" {
		for _, n := range names {
			cur, had := st.Parameters[n]
			v, given := c.Update.Parameters[n]
			switch {
			case !had:
			case !given:
				previous = append(previous, n)
			case v == cur && cur != noEchoMask:
				previous = append(previous, n)
				delete(send, n)
			}
		}
		sort.Strings(previous)
	}

	now := h.cfg.Now()
	rec = Record{
		CommandID: c.ID, Issuer: c.Issuer, Fleet: f.Name, Stack: f.Stack, Type: csType, Plan: c.Update.Plan,
		Set: set, Previous: previous, ChangeSetName: changeSetName(c.ID), Phase: PhaseChangeSet, StartedAt: now, Steps: 1,
	}
	id, err := h.stacks.CreateChangeSet(ctx, ChangeSetInput{
		Stack: f.Stack, Name: rec.ChangeSetName, Type: csType, TemplateBody: string(template),
		Parameters: send, Previous: previous, RoleARN: f.RoleARN,
		Description: "RunnerFleet update " + c.ID,
	})
	switch {
	case errors.Is(err, ErrNoChanges):
		log.InfoContext(ctx, "update: no changes", "type", csType)
		return h.finish(ctx, f, rec, version, OutcomeNoChanges, "", "", log)
	case errors.Is(err, ErrChangeSetExists):
		id = rec.ChangeSetName
	case errors.Is(err, ErrRefused):
		log.WarnContext(ctx, "update: change set refused", "type", csType, "error", err.Error())
		return h.finish(ctx, f, rec, version, OutcomeFailed, err.Error(), "", log)
	case err != nil:
		return fmt.Errorf("creating change set %s of stack %s: %w", rec.ChangeSetName, f.Stack, err)
	}
	rec.ChangeSetID = id
	ok, err = h.save(ctx, pk, sk, rec, version, time.Time{})
	if err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("update record of fleet %s changed under us", f.Name)
		}
		return err
	}
	log.InfoContext(ctx, "update: change set created", "type", csType, "change_set", rec.ChangeSetName,
		"plan", rec.Plan, "parameters_set", len(set), "parameters_kept", len(previous), "service_role", f.RoleARN != "")
	return h.waitChangeSet(ctx, f, rec, version+1, log)
}

// waitChangeSet steps while the change set is being created, up to ChangeSetWait.
func (h *Handler) waitChangeSet(ctx context.Context, f Fleet, rec Record, version int64, log *slog.Logger) error {
	deadline := h.cfg.Now().Add(h.cfg.ChangeSetWait)
	for {
		next, nextVersion, err := h.step(ctx, f, rec, version, log)
		if err != nil {
			return err
		}
		if next.Phase != PhaseChangeSet || !h.cfg.Now().Before(deadline) {
			return nil
		}
		if err := h.cfg.Sleep(ctx, h.cfg.PollInterval); err != nil {
			return nil // the next tick carries on
		}
		rec, version = next, nextVersion
	}
}

// Advance takes one step of the fleet's unfinished update, if any: the fleet's tick calls it.
func (h *Handler) Advance(ctx context.Context, fleetName string) error {
	f, ok := h.fleets[fleetName]
	if !ok || f.Stack == "" {
		return nil
	}
	pk, sk := Key(f.Name)
	rec, version, found, err := h.load(ctx, pk, sk)
	if err != nil || !found || rec.Finished() || rec.ChangeSetID == "" {
		return err
	}
	_, _, err = h.step(ctx, f, rec, version, h.log.With("fleet", f.Name, "stack", f.Stack, "command_id", rec.CommandID))
	return err
}

// HandleStackStatus advances the update of the fleet whose stack changed status. The event only
// nudges the update sooner than the next tick: it is acked even when the step fails (the error
// is logged, and the tick, the update's clock, takes the step again), since a retried event
// would hold up the fleet's FIFO message group (its ticks and commands) and end in the DLQ.
// Events of stacks no fleet has are acked.
func (h *Handler) HandleStackStatus(ctx context.Context, m *messages.Message) error {
	s, ok := m.Payload.(*messages.StackStatus)
	if !ok {
		return messages.Reject("update: not a stack status event")
	}
	name := h.FleetOfStack(s.StackName)
	if name == "" {
		return nil
	}
	if err := h.Advance(ctx, name); err != nil {
		h.log.WarnContext(ctx, "update: step on a stack event failed; the next tick takes it again",
			"fleet", name, "stack", s.StackName, "stack_status", s.Status, "error", err.Error())
	}
	return nil
}

// FleetOfStack names the fleet whose stack is stack ("" none).
func (h *Handler) FleetOfStack(stack string) string {
	for _, f := range h.cfg.Fleets {
		if f.Stack != "" && f.Stack == stack {
			return f.Name
		}
	}
	return ""
}

// step takes one step of rec and returns the record as saved.
func (h *Handler) step(ctx context.Context, f Fleet, rec Record, version int64, log *slog.Logger) (Record, int64, error) {
	pk, sk := Key(f.Name)
	h.m.steps.WithLabelValues(f.Name, rec.Phase).Inc()
	// Past the deadline, a step that would retry or wait ends the update instead (expire).
	overdue := !h.cfg.Now().Before(rec.StartedAt.Add(h.cfg.Deadline))
	switch rec.Phase {
	case PhaseChangeSet:
		if overdue { // a change set still being created hours later is not to be executed now
			return h.expire(ctx, f, rec, version, nil, log)
		}
		cs, err := h.describeChangeSet(ctx, f, rec)
		if errors.Is(err, ErrChangeSetNotFound) {
			return h.finishStep(ctx, f, rec, version, OutcomeFailed, "the change set is gone (it, or its stack, was deleted before it was executed)", "", log)
		}
		if err != nil {
			return rec, version, err
		}
		switch cs.Status {
		case "CREATE_COMPLETE":
		case "FAILED":
			if NoChangesReason(cs.StatusReason) {
				return h.finishStep(ctx, f, rec, version, OutcomeNoChanges, "", "", log)
			}
			return h.finishStep(ctx, f, rec, version, OutcomeFailed, "change set failed: "+cs.StatusReason, "", log)
		case "DELETE_COMPLETE", "DELETE_PENDING", "DELETE_IN_PROGRESS", "DELETE_FAILED":
			return h.finishStep(ctx, f, rec, version, OutcomeFailed, "the change set was deleted before it was executed", "", log)
		default: // CREATE_PENDING, CREATE_IN_PROGRESS
			return rec, version, nil
		}
		rec.Changes = cs.Changes
		rec.Steps++
		log.InfoContext(ctx, "update: change set ready", "changes", len(cs.Changes), "summary", Summary(cs.Changes))
		if rec.Plan {
			return h.finishStep(ctx, f, rec, version, OutcomePlanned, "", "", log)
		}
		rec.Phase = PhaseExecuting
		rec.ExecutedAt = h.cfg.Now()
		// Save the intent first: a crash after Execute replays it, and ExecuteChangeSet on an
		// executed change set fails (answered below), never runs twice.
		ok, err := h.save(ctx, pk, sk, rec, version, rec.ExecutedAt)
		if err != nil || !ok {
			return rec, version, err
		}
		version++
		return h.execute(ctx, f, rec, version, log)

	case PhaseExecuting:
		// The intent was saved before ExecuteChangeSet: if that call failed (throttled, the
		// worker died), the stack's status says nothing about this change set (an earlier
		// update's UPDATE_COMPLETE would read as success). Until the change set is seen
		// executing, ask it, and execute it when it is still waiting.
		cs, err := h.describeChangeSet(ctx, f, rec)
		// A stack read just after the execution began can still show what an earlier update
		// left (UPDATE_COMPLETE, UPDATE_ROLLBACK_COMPLETE): while the change set says it is
		// executing, a final stack status is not this update's result.
		executing := err == nil && cs.ExecutionStatus == "EXECUTE_IN_PROGRESS"
		switch {
		case errors.Is(err, ErrChangeSetNotFound):
			// Executed change sets can be gone (CloudFormation removes a stack's change sets
			// once one is executed): follow the stack.
		case err != nil && overdue:
			return h.expire(ctx, f, rec, version, err, log)
		case err != nil:
			return rec, version, err
		case cs.ExecutionStatus == "AVAILABLE" && overdue:
			return h.expire(ctx, f, rec, version, errors.New("the change set was never executed"), log)
		case cs.ExecutionStatus == "AVAILABLE":
			return h.execute(ctx, f, rec, version, log)
		case cs.ExecutionStatus == "UNAVAILABLE" || cs.ExecutionStatus == "OBSOLETE":
			return h.finishStep(ctx, f, rec, version, OutcomeFailed,
				"the change set was never executed: it became "+cs.ExecutionStatus+" (the stack changed meanwhile?)", "", log)
		}
		st, found, err := h.stacks.Describe(ctx, f.Stack)
		if err != nil {
			err = fmt.Errorf("describing stack %s: %w", f.Stack, err)
			if overdue {
				return h.expire(ctx, f, rec, version, err, log)
			}
			return rec, version, err
		}
		if !found {
			return h.finishStep(ctx, f, rec, version, OutcomeFailed, "the stack is gone (a failed creation is deleted)", "", log)
		}
		switch {
		case executing && !strings.HasSuffix(st.Status, "_IN_PROGRESS"):
			if overdue {
				rec.StackStatus = st.Status
				return h.expire(ctx, f, rec, version, errors.New("the change set still reads as executing"), log)
			}
			return rec, version, nil
		case st.Status == "CREATE_COMPLETE" || st.Status == "UPDATE_COMPLETE" || st.Status == "IMPORT_COMPLETE":
			rec.StackStatus = st.Status
			return h.finishStep(ctx, f, rec, version, OutcomeSucceeded, "", "", log)
		case st.Status == "REVIEW_IN_PROGRESS" || strings.HasSuffix(st.Status, "_IN_PROGRESS"):
			if overdue {
				rec.StackStatus = st.Status
				return h.expire(ctx, f, rec, version, nil, log)
			}
			if st.Status == rec.StackStatus {
				return rec, version, nil
			}
			rec.StackStatus = st.Status
			rec.Steps++
			ok, err := h.save(ctx, pk, sk, rec, version, h.cfg.Now())
			if err != nil || !ok {
				return rec, version, err
			}
			log.InfoContext(ctx, "update: stack in progress", "stack_status", st.Status)
			return rec, version + 1, nil
		default: // *_FAILED, *ROLLBACK_COMPLETE
			rec.StackStatus = st.Status
			resource, reason, err := h.firstFailure(ctx, f.Stack, rec.ExecutedAt)
			if err != nil && !overdue && !errors.Is(err, ErrRefused) {
				// Without the events the record would lose its failing resource: the next
				// tick reads them again (a throttled read; one refused for good is not).
				return rec, version, err
			}
			if err != nil {
				log.WarnContext(ctx, "update: stack events unreadable; reporting the stack's status reason", "error", err.Error())
			}
			if reason == "" {
				reason = st.StatusReason
			}
			if reason == "" {
				reason = "the stack ended " + st.Status
			}
			return h.finishStep(ctx, f, rec, version, OutcomeFailed, reason, resource, log)
		}
	}
	return rec, version, nil
}

// describeChangeSet describes rec's change set; ErrChangeSetNotFound (the change set, or its
// stack, is gone) is passed on as it is.
func (h *Handler) describeChangeSet(ctx context.Context, f Fleet, rec Record) (ChangeSet, error) {
	cs, err := h.stacks.DescribeChangeSet(ctx, f.Stack, rec.ChangeSetID)
	if err != nil && !errors.Is(err, ErrChangeSetNotFound) {
		return ChangeSet{}, fmt.Errorf("describing change set %s of stack %s: %w", rec.ChangeSetName, f.Stack, err)
	}
	return cs, err
}

// execute runs the change set of rec (saved at version) and returns the record as saved. A second
// executor (a replayed step) finds it executing or executed: that is not an error. An execution
// the service refuses for good (ErrRefused: access denied, a validation error) while the change
// set still waits ends the update failed with the service's reason; retrying would not help.
func (h *Handler) execute(ctx context.Context, f Fleet, rec Record, version int64, log *slog.Logger) (Record, int64, error) {
	err := h.stacks.ExecuteChangeSet(ctx, f.Stack, rec.ChangeSetID)
	if err == nil {
		log.InfoContext(ctx, "update: change set executing")
		return rec, version, nil
	}
	cs, derr := h.stacks.DescribeChangeSet(ctx, f.Stack, rec.ChangeSetID)
	switch {
	case derr == nil && (cs.ExecutionStatus == "EXECUTE_IN_PROGRESS" || cs.ExecutionStatus == "EXECUTE_COMPLETE" || cs.ExecutionStatus == "EXECUTE_FAILED"):
		return rec, version, nil
	case derr == nil && cs.ExecutionStatus == "AVAILABLE" && errors.Is(err, ErrRefused):
		log.WarnContext(ctx, "update: change set execution refused", "error", err.Error())
		return h.finishStep(ctx, f, rec, version, OutcomeFailed, "executing the change set: "+err.Error(), "", log)
	}
	return rec, version, fmt.Errorf("executing change set %s of stack %s: %w", rec.ChangeSetName, f.Stack, err)
}

// expire ends an update that is past its deadline (Config.Deadline), with why it was still
// unfinished (cause, the step's last error; nil when it was waiting) and where to look. The stack
// itself is left as it is.
func (h *Handler) expire(ctx context.Context, f Fleet, rec Record, version int64, cause error, log *slog.Logger) (Record, int64, error) {
	reason := fmt.Sprintf("the update did not finish within %s of its command", h.cfg.Deadline)
	if rec.StackStatus != "" {
		reason += "; the stack was last seen " + rec.StackStatus
	} else {
		reason += " (phase " + rec.Phase + ")"
	}
	if cause != nil {
		reason += "; last error: " + cause.Error()
	}
	reason += ". Look at stack " + f.Stack + " in CloudFormation (its status and events) before updating again"
	return h.finishStep(ctx, f, rec, version, OutcomeFailed, reason, "", log)
}

// firstFailure returns the first resource that failed after since, and why ("" when no event
// says so), or the error of reading the events.
func (h *Handler) firstFailure(ctx context.Context, stack string, since time.Time) (string, string, error) {
	events, err := h.stacks.Events(ctx, stack, since.Add(-eventSlack))
	if err != nil {
		return "", "", fmt.Errorf("reading the events of stack %s: %w", stack, err)
	}
	for _, e := range events {
		if strings.HasSuffix(e.Status, "_FAILED") && e.LogicalID != stack && !strings.Contains(e.Reason, "Resource creation cancelled") &&
			!strings.Contains(e.Reason, "Resource update cancelled") {
			return e.LogicalID, e.Reason, nil
		}
	}
	for _, e := range events {
		if strings.HasSuffix(e.Status, "_FAILED") {
			return e.LogicalID, e.Reason, nil
		}
	}
	return "", "", nil
}

func (h *Handler) finishStep(ctx context.Context, f Fleet, rec Record, version int64, outcome, reason, resource string, log *slog.Logger) (Record, int64, error) {
	rec.Phase, rec.Outcome, rec.Reason, rec.FailedResource = PhaseDone, outcome, reason, resource
	rec.FinishedAt = h.cfg.Now()
	rec.Steps++
	pk, sk := Key(f.Name)
	ok, err := h.saveFinished(ctx, pk, sk, rec, version)
	if err != nil || !ok {
		return rec, version, err
	}
	h.report(ctx, rec, log)
	return rec, version + 1, nil
}

func (h *Handler) finish(ctx context.Context, f Fleet, rec Record, version int64, outcome, reason, resource string, log *slog.Logger) error {
	_, _, err := h.finishStep(ctx, f, rec, version, outcome, reason, resource, log)
	return err
}

func (h *Handler) report(ctx context.Context, rec Record, log *slog.Logger) {
	h.m.outcomes.WithLabelValues(rec.Fleet, rec.Outcome).Inc()
	attrs := []any{"outcome", rec.Outcome, "type", rec.Type, "changes", len(rec.Changes), "steps", rec.Steps}
	if rec.Reason != "" {
		attrs = append(attrs, "reason", rec.Reason)
	}
	if rec.FailedResource != "" {
		attrs = append(attrs, "failed_resource", rec.FailedResource)
	}
	if rec.Outcome == OutcomeFailed {
		log.WarnContext(ctx, "update: finished", attrs...)
		return
	}
	log.InfoContext(ctx, "update: finished", attrs...)
}

// NoChangesReason reports whether a FAILED change set's reason (or a CreateChangeSet error) says
// it changes nothing: AWS's "The submitted information didn't contain changes. Submit different
// information to create a change set." and "No updates are to be performed."
func NoChangesReason(reason string) bool {
	r := strings.ToLower(reason)
	return strings.Contains(r, "didn't contain changes") || strings.Contains(r, "did not contain changes") ||
		strings.Contains(r, "no updates are to be performed")
}

// Summary renders changes on one line: "Add Queue (AWS::SQS::Queue); Modify LaunchTemplate
// (AWS::EC2::LaunchTemplate, replacement True)".
func Summary(changes []Change) string {
	if len(changes) == 0 {
		return "no resource changes listed"
	}
	parts := make([]string, len(changes))
	for i, c := range changes {
		s := c.Action + " " + c.LogicalID + " (" + c.ResourceType
		if c.Replacement != "" && c.Action == "Modify" {
			s += ", replacement " + c.Replacement
		}
		parts[i] = s + ")"
	}
	return strings.Join(parts, "; ")
}

// changeSetName derives a valid change set name ([a-zA-Z][-a-zA-Z0-9]*, ≤ 128) from a command id.
func changeSetName(id string) string {
	var b strings.Builder
	b.WriteString("runnerfleet-")
	for _, r := range id {
		if (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '-' {
			b.WriteRune(r)
		}
		if b.Len() >= 128 {
			break
		}
	}
	return b.String()
}

func (h *Handler) load(ctx context.Context, pk, sk string) (Record, int64, bool, error) {
	body, version, found, err := h.store.Load(ctx, pk, sk)
	if err != nil || !found {
		return Record{}, 0, false, err
	}
	rec, err := DecodeRecord(body)
	if err != nil {
		return Record{}, 0, false, err
	}
	return rec, version, true, nil
}

func (h *Handler) save(ctx context.Context, pk, sk string, rec Record, version int64, due time.Time) (bool, error) {
	body, err := encode(rec)
	if err != nil {
		return false, err
	}
	ok, err := h.store.Save(ctx, pk, sk, body, version, due, time.Time{})
	if err != nil {
		return false, fmt.Errorf("saving the update record of fleet %s: %w", rec.Fleet, err)
	}
	if !ok {
		h.m.lostRaces.WithLabelValues(rec.Fleet).Inc()
	}
	return ok, nil
}

func (h *Handler) saveFinished(ctx context.Context, pk, sk string, rec Record, version int64) (bool, error) {
	body, err := encode(rec)
	if err != nil {
		return false, err
	}
	ok, err := h.store.Save(ctx, pk, sk, body, version, time.Time{}, rec.FinishedAt.Add(h.cfg.Retention))
	if err != nil {
		return false, fmt.Errorf("saving the update record of fleet %s: %w", rec.Fleet, err)
	}
	if !ok {
		h.m.lostRaces.WithLabelValues(rec.Fleet).Inc()
	}
	return ok, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
