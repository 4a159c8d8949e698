package interrupt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/messages"
)

// Notice kinds (the kind label of notices_total).
const (
	kindSpot      = "spot"
	kindRebalance = "rebalance"
)

// Handler handles spot and rebalance notices, state changes and drain commands. It is safe for
// concurrent use by any number of goroutines and replicas.
type Handler struct {
	cfg     Config
	d       Deps
	log     *slog.Logger
	m       *Metrics
	byGroup map[string]fleet.Settings
	byName  map[string]fleet.Settings
	rules   map[string]string // tick rule ARN or name → fleet
}

// New returns a Handler; it validates cfg (after defaults) and refuses nil dependencies.
func New(cfg Config, deps Deps) (*Handler, error) {
	cfg.setDefaults()
	if err := errors.Join(cfg.Validate(), deps.validate()); err != nil {
		return nil, err
	}
	if deps.Metrics == nil {
		deps.Metrics = NewMetrics(nil)
	}
	if deps.Clock == nil {
		deps.Clock = systemClock{}
	}
	h := &Handler{cfg: cfg, d: deps, log: deps.Logger.With("handler", "interrupt"), m: deps.Metrics,
		byGroup: map[string]fleet.Settings{}, byName: map[string]fleet.Settings{}, rules: map[string]string{}}
	for _, f := range cfg.Fleets {
		h.byGroup[f.GroupName], h.byName[f.Name] = f, f
		if f.TickRule != "" {
			h.rules[f.TickRule] = f.Name
			if i := strings.Index(f.TickRule, ":rule/"); i >= 0 {
				name := f.TickRule[i+len(":rule/"):]
				h.rules[name[strings.LastIndexByte(name, '/')+1:]] = f.Name
			}
		}
	}
	return h, nil
}

// Handle is the router's entry point for KindSpotInterruption, KindRebalance, KindStateChange and
// drain commands (KindCommand of type drain). It returns nil when done (duplicates included), a
// messages.Reject error for a message that can never succeed, any other error to be retried.
func (h *Handler) Handle(ctx context.Context, msg *messages.Message) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.StepTimeout)
	defer cancel()
	switch p := msg.Payload.(type) {
	case *messages.SpotInterruption:
		return h.notice(ctx, p.InstanceID, msg.Time, kindSpot)
	case *messages.Rebalance:
		return h.notice(ctx, p.InstanceID, msg.Time, kindRebalance)
	case *messages.StateChange:
		return h.StateChange(ctx, p)
	case *messages.Command:
		return h.Retire(ctx, p)
	}
	return messages.Reject("interrupt: cannot handle a message of kind %s", msg.Kind)
}

func (h *Handler) rebalanceMode(fleetName string) RebalanceMode {
	if m, ok := h.cfg.Rebalance[fleetName]; ok {
		return m
	}
	return RebalanceAct
}

// notice marks an instance after a spot or rebalance notice and stops its intake (spot always,
// rebalance when the fleet acts on them).
func (h *Handler) notice(ctx context.Context, id string, at time.Time, kind string) error {
	now := h.d.Clock.Now()
	if at.IsZero() || at.After(now) {
		at = now
	}
	group, state, found, err := h.d.Groups.GroupOf(ctx, id)
	if err != nil {
		return fmt.Errorf("interrupt: %s notice for %s: finding its group: %w", kind, id, err)
	}
	f, managed := h.byGroup[group]
	if !found || !managed {
		h.m.Notices.WithLabelValues("", kind, "unmanaged").Inc()
		h.log.InfoContext(ctx, "interrupt decision", "notice", kind, "instance_id", id, "group", group,
			"action", "none", "note", "the instance is not in a managed fleet's group")
		return nil
	}
	stop := kind == kindSpot || h.rebalanceMode(f.Name) == RebalanceAct
	jobs := -1
	if n, err := h.d.Jobs.RunningJobs(ctx, f.Name, id); err == nil {
		jobs = n
	}
	m, err := h.d.Marks.Update(ctx, id, func(m *Mark) bool {
		fresh := m.Fleet == ""
		m.Fleet, m.Group = f.Name, f.GroupName
		if fresh {
			m.JobsAtNotice, m.Lost = -1, -1
		}
		if jobs >= 0 {
			m.JobsAtNotice = jobs
		}
		switch kind {
		case kindSpot:
			if !m.SpotInterrupted {
				m.SpotInterrupted, m.SpotAt = true, at
			}
		case kindRebalance:
			if !m.RebalanceRecommended {
				m.RebalanceRecommended, m.RebalanceAt = true, at
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("interrupt: marking %s after a %s notice: %w", id, kind, err)
	}
	action, note := "reported", ""
	switch {
	case !stop:
		note = "rebalance mode is report: intake stays open"
	case m.IntakeStopped:
		action, note = "stopped", "intake already stopped by command "+m.StopCommandID
	default:
		cmdID, err := h.d.Commands.Send(ctx, f.Documents.StopIntake, id)
		if errors.Is(err, ErrUnreachable) {
			// Already shutting down, or never reachable: a retry cannot send it either, and the
			// mark is written (the jobs it loses are counted when it goes).
			action, note = "unreachable", "intake not stopped: "+err.Error()
			break
		}
		if err != nil {
			h.m.Errors.WithLabelValues(f.Name, "stop_intake").Inc()
			return fmt.Errorf("interrupt: stopping intake on %s after a %s notice: %w", id, kind, err)
		}
		m, err = h.d.Marks.Update(ctx, id, func(m *Mark) bool {
			if m.IntakeStopped {
				return false
			}
			m.IntakeStopped, m.StopCommandID, m.StoppedAt = true, cmdID, h.d.Clock.Now()
			return true
		})
		if err != nil {
			return fmt.Errorf("interrupt: recording stopped intake on %s: %w", id, err)
		}
		action = "stopped"
	}
	h.m.Notices.WithLabelValues(f.Name, kind, action).Inc()
	h.log.InfoContext(ctx, "interrupt decision", "notice", kind, "fleet", f.Name, "instance_id", id,
		"lifecycle_state", state, "jobs_running", m.JobsAtNotice, "intake_stopped", m.IntakeStopped,
		"action", action, "next_step", nextStep(kind, stop), "note", note)
	return nil
}

func nextStep(kind string, stop bool) string {
	switch {
	case kind == kindSpot:
		return "next tick replaces it through its group (one launch); its terminate hook drains it until EC2 reclaims it"
	case stop:
		return "next tick replaces it; its terminate hook drains it"
	}
	return "none"
}

// StateChange handles an EC2 Instance State-change Notification: for an instance leaving
// (stopping, stopped, shutting-down, terminated) it finishes a drain in progress as lost and
// reports the jobs lost by a reclaimed spot instance. Other states and other instances do nothing.
func (h *Handler) StateChange(ctx context.Context, s *messages.StateChange) error {
	if !s.Leaving() {
		return nil
	}
	id := s.InstanceID
	if h.d.Owners != nil {
		// Only instances of a managed fleet have drains or marks. A failed look falls through to
		// the full lookup: never miss one of ours because EC2 did not answer.
		if group, tagged, err := h.d.Owners.GroupTag(ctx, id); err == nil {
			if _, ours := h.byGroup[group]; !tagged || !ours {
				h.m.StateChanges.WithLabelValues("not_managed").Inc()
				return nil
			}
		}
	}
	h.m.StateChanges.WithLabelValues("looked_up").Inc()
	found, fleetName, lost, err := h.d.Drains.FinishLost(ctx, id, s.State, -1)
	if err != nil {
		return fmt.Errorf("interrupt: instance %s %s: finishing its drain as lost: %w", id, s.State, err)
	}
	if found {
		h.m.DrainsLost.WithLabelValues(fleetName).Inc()
		if lost > 0 {
			h.m.JobsLost.WithLabelValues(fleetName, "drain").Add(float64(lost))
		}
		h.log.InfoContext(ctx, "interrupt decision", "event", "state-change", "fleet", fleetName, "instance_id", id,
			"state", s.State, "action", "drain finished as lost", "jobs_lost", lost)
	}
	m, ok, err := h.d.Marks.Get(ctx, id)
	if err != nil {
		return fmt.Errorf("interrupt: instance %s %s: reading its mark: %w", id, s.State, err)
	}
	if !ok || m.Gone {
		return nil
	}
	// Jobs are lost only where nothing waited for them: a reclaimed spot instance outside a drain.
	// One replaced through its group had a drain, which counts its jobs: finished lost (now, or by
	// an earlier try of this message), or completed with none left.
	n := -1
	spotLoss := m.SpotInterrupted && !found && !m.Replaced
	if spotLoss {
		if c, err := h.d.Jobs.RunningJobs(ctx, m.Fleet, id); err == nil {
			n = c
		} else {
			n = m.JobsAtNotice
		}
	}
	flipped := false
	m, err = h.d.Marks.Update(ctx, id, func(m *Mark) bool {
		flipped = !m.Gone
		if m.Gone {
			return false
		}
		m.Gone, m.State, m.GoneAt, m.Lost = true, s.State, h.d.Clock.Now(), n
		return true
	})
	if err != nil {
		return fmt.Errorf("interrupt: instance %s %s: recording it gone: %w", id, s.State, err)
	}
	if !flipped {
		return nil
	}
	attrs := []any{"event", "state-change", "fleet", m.Fleet, "instance_id", id, "state", s.State,
		"spot_interrupted", m.SpotInterrupted, "rebalance_recommended", m.RebalanceRecommended}
	if spotLoss {
		if n > 0 {
			h.m.JobsLost.WithLabelValues(m.Fleet, "spot").Add(float64(n))
		}
		attrs = append(attrs, "action", "spot reclaim reported", "jobs_lost", n)
	} else {
		attrs = append(attrs, "action", "mark closed")
	}
	h.log.InfoContext(ctx, "interrupt decision", attrs...)
	return nil
}

// Retire follows a drain command: it checks the instance belongs to the fleet's group and
// terminates it through the group (decrementing the desired capacity unless Replace), so the
// terminate hook drains it. An instance outside the fleet's group is refused (dead-lettered with
// the reason); one already leaving its group is done.
func (h *Handler) Retire(ctx context.Context, c *messages.Command) error {
	if c.Type != messages.CommandDrain || c.Drain == nil {
		return messages.Reject("interrupt: command %s of type %s is not a drain", c.ID, c.Type)
	}
	f, ok := h.byName[c.Fleet]
	if !ok {
		return messages.Reject("drain command %s: unknown fleet %q", c.ID, c.Fleet)
	}
	id := c.Drain.InstanceID
	group, state, found, err := h.d.Groups.GroupOf(ctx, id)
	if err != nil {
		return fmt.Errorf("drain command %s: finding the group of %s: %w", c.ID, id, err)
	}
	if err := Refusal(f, id, group, found); err != nil {
		return messages.Reject("drain command %s: %v", c.ID, err)
	}
	log := h.log.With("command_id", c.ID, "issuer", c.Issuer, "fleet", f.Name, "instance_id", id, "replace", c.Drain.Replace)
	st := fleet.LifecycleState(state)
	if strings.Contains(state, "Standby") || strings.HasPrefix(state, "Warmed") {
		// Not leaving: set aside by an operator, or in the warm pool. Acking it would say the
		// drain was done when nothing happened.
		return messages.Reject("drain command %s: instance %s is %s, set aside from the group's capacity: "+
			"put it back in service first (aws autoscaling exit-standby) or terminate it yourself", c.ID, id, state)
	}
	if !st.InService() && !st.Booting() {
		log.InfoContext(ctx, "retire decision", "lifecycle_state", state, "action", "none", "note", "already leaving its group")
		return nil
	}
	if err := h.d.Groups.Terminate(ctx, id, !c.Drain.Replace); err != nil {
		h.m.Errors.WithLabelValues(f.Name, "terminate").Inc()
		if errors.Is(err, ErrRefused) {
			return messages.Reject("drain command %s: %v", c.ID, err)
		}
		return fmt.Errorf("drain command %s: %w", c.ID, err)
	}
	h.m.Retired.WithLabelValues(f.Name, strconv.FormatBool(c.Drain.Replace)).Inc()
	log.InfoContext(ctx, "retire decision", "lifecycle_state", state, "action", "terminate through the group",
		"decrement_desired", !c.Drain.Replace, "next_step", "the terminate hook drains it")
	return nil
}

// Refusal says why an instance may not be retired as part of fleet f: found and group are what
// DescribeAutoScalingInstances said. nil when it is a member of f's group. The publisher and the
// worker both use it, so they refuse with the same words.
func Refusal(f fleet.Settings, instanceID, group string, found bool) error {
	switch {
	case !found:
		return fmt.Errorf("instance %s is not in any Auto Scaling group; fleet %q is group %s", instanceID, f.Name, f.GroupName)
	case group != f.GroupName:
		return fmt.Errorf("instance %s belongs to Auto Scaling group %s, not to fleet %q (group %s)", instanceID, group, f.Name, f.GroupName)
	}
	return nil
}

// ReplaceMarked retires, through the group and with a replacement, every instance of the fleet
// still in service that a spot interruption warning marked, or a rebalance recommendation when the
// fleet's rebalance mode is act. It is a fleet-level step: call it on the fleet's FIFO message
// group, before the scaling decision (PrepareTick does, for the worker's tick and BeforeTick).
// An instance already leaving is only recorded. It returns how many it replaced and every
// failure joined.
//
// A spot instance goes this way too, not by raising the desired capacity for it: when EC2
// reclaims it, the group would replace it on its own, one launch too many for one instance lost.
// Terminated without decrement, it gets exactly one replacement, at once, and its terminate hook
// drains it until the reclaim (a state change then finishes that drain as lost, jobs counted).
func (h *Handler) ReplaceMarked(ctx context.Context, fleetName string) (int, error) {
	f, ok := h.byName[fleetName]
	if !ok {
		return 0, nil
	}
	marks, err := h.listMarks(ctx, f)
	if err != nil {
		return 0, err
	}
	return h.replaceMarked(ctx, f, marks)
}

// listMarks lists the fleet's unfinished marks.
func (h *Handler) listMarks(ctx context.Context, f fleet.Settings) ([]Mark, error) {
	marks, err := h.d.Marks.List(ctx, f.GroupName)
	if err != nil {
		return nil, fmt.Errorf("interrupt: listing marks of fleet %s: %w", f.Name, err)
	}
	return marks, nil
}

// replaceMarked is ReplaceMarked on marks already listed.
func (h *Handler) replaceMarked(ctx context.Context, f fleet.Settings, marks []Mark) (int, error) {
	var errs []error
	replaced := 0
	act := h.rebalanceMode(f.Name) == RebalanceAct
	for _, m := range marks {
		if m.Replaced || m.Gone || !m.SpotInterrupted && !(act && m.RebalanceRecommended) {
			continue
		}
		group, state, found, err := h.d.Groups.GroupOf(ctx, m.InstanceID)
		if err != nil {
			errs = append(errs, fmt.Errorf("finding the group of %s: %w", m.InstanceID, err))
			continue
		}
		st := fleet.LifecycleState(state)
		if found && group == f.GroupName && st.Booting() {
			continue // not in service yet: next tick
		}
		if m.SpotInterrupted && !(found && group == f.GroupName && (st.InService() || st.Terminating())) {
			// Gone from its group (reclaimed before this tick), or set aside: not replaced by us
			// and with no drain of ours to count its jobs. Its state change (or CloseStale)
			// closes the mark and reports them.
			continue
		}
		action := "none: already leaving its group"
		if found && group == f.GroupName && st.InService() {
			if err := h.d.Groups.Terminate(ctx, m.InstanceID, false); err != nil {
				h.m.Errors.WithLabelValues(f.Name, "replace").Inc()
				errs = append(errs, fmt.Errorf("replacing %s: %w", m.InstanceID, err))
				continue
			}
			action = "terminate through the group without decrement: a replacement launches, the hook drains it"
			replaced++
			h.m.Replaced.WithLabelValues(f.Name).Inc()
		}
		if _, err := h.d.Marks.Update(ctx, m.InstanceID, func(m *Mark) bool {
			if m.Replaced {
				return false
			}
			m.Replaced, m.ReplacedAt = true, h.d.Clock.Now()
			return true
		}); err != nil {
			errs = append(errs, fmt.Errorf("recording %s replaced: %w", m.InstanceID, err))
		}
		h.log.InfoContext(ctx, "interrupt decision", "event", "tick", "fleet", f.Name, "instance_id", m.InstanceID,
			"spot_interrupted", m.SpotInterrupted, "rebalance_recommended", m.RebalanceRecommended, "lifecycle_state", state, "action", action)
	}
	return replaced, errors.Join(errs...)
}

// StaleMarkAge is how long a mark whose instance has left its group waits for the instance's
// state change before CloseStale closes it. EC2 sends the state change within minutes of the
// instance leaving, and a worker back from an outage handles the queued one within minutes; one
// dead-lettered, or lost in an outage longer than the queue's retention, never comes, and the
// mark would stay open in every tick's listing for ever.
const StaleMarkAge = time.Hour

// StateLeftUnseen is a closed mark's State when CloseStale closed it.
const StateLeftUnseen = "left-group-unseen"

// CloseStale closes the fleet's marks whose instance has been out of the fleet's group for
// StaleMarkAge without a state change closing the mark: the first tick that finds the instance
// gone from its group records when (LeftAt), a tick StaleMarkAge later closes the mark as a state
// change would have (Gone, State "left-group-unseen"). A spot-interrupted instance's lost jobs
// are the count seen at its notice, as StateChange reports when the instance cannot be scraped.
// A mark whose instance is still in the group, in any lifecycle state, stays. One batched
// lookup per tick, none without marks. It is a fleet-level step, run on each tick like
// ReplaceMarked; it returns how many marks it closed and every failure joined.
func (h *Handler) CloseStale(ctx context.Context, fleetName string) (int, error) {
	f, ok := h.byName[fleetName]
	if !ok {
		return 0, nil
	}
	marks, err := h.listMarks(ctx, f)
	if err != nil {
		return 0, err
	}
	return h.closeStale(ctx, f, marks)
}

// closeStale is CloseStale on marks already listed.
func (h *Handler) closeStale(ctx context.Context, f fleet.Settings, marks []Mark) (int, error) {
	if len(marks) == 0 {
		return 0, nil
	}
	ids := make([]string, 0, len(marks))
	for _, m := range marks {
		ids = append(ids, m.InstanceID)
	}
	groups, err := h.d.Groups.GroupsOf(ctx, ids)
	if err != nil {
		return 0, fmt.Errorf("interrupt: finding the groups of fleet %s's marked instances: %w", f.Name, err)
	}
	now := h.d.Clock.Now()
	var errs []error
	closed := 0
	for _, m := range marks {
		if m.Gone {
			continue
		}
		if groups[m.InstanceID] == f.GroupName {
			if !m.LeftAt.IsZero() {
				// Back in its group (a lookup that missed it): its hour starts again when it
				// really leaves.
				if _, err := h.d.Marks.Update(ctx, m.InstanceID, func(m *Mark) bool {
					changed := !m.LeftAt.IsZero()
					m.LeftAt = time.Time{}
					return changed
				}); err != nil {
					errs = append(errs, fmt.Errorf("recording %s back in its group: %w", m.InstanceID, err))
				}
			}
			continue
		}
		if m.LeftAt.IsZero() {
			if _, err := h.d.Marks.Update(ctx, m.InstanceID, func(m *Mark) bool {
				if m.Gone || !m.LeftAt.IsZero() {
					return false
				}
				m.LeftAt = now
				return true
			}); err != nil {
				errs = append(errs, fmt.Errorf("recording %s out of its group: %w", m.InstanceID, err))
			}
			continue
		}
		if now.Sub(m.LeftAt) < StaleMarkAge {
			continue
		}
		flipped := false
		id := m.InstanceID
		m, err := h.d.Marks.Update(ctx, id, func(m *Mark) bool {
			flipped = !m.Gone
			if m.Gone {
				return false
			}
			m.Gone, m.State, m.GoneAt, m.Lost = true, StateLeftUnseen, now, -1
			if m.SpotInterrupted && !m.Replaced { // replaced: its drain accounted for its jobs
				m.Lost = m.JobsAtNotice
			}
			return true
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("closing the mark of %s: %w", id, err))
			continue
		}
		if !flipped {
			continue // a state change closed it meanwhile
		}
		closed++
		if m.Lost > 0 {
			h.m.JobsLost.WithLabelValues(f.Name, "spot").Add(float64(m.Lost))
		}
		h.log.InfoContext(ctx, "interrupt decision", "event", "tick", "fleet", f.Name, "instance_id", m.InstanceID,
			"spot_interrupted", m.SpotInterrupted, "rebalance_recommended", m.RebalanceRecommended, "left_at", m.LeftAt,
			"action", "mark closed", "jobs_lost", m.Lost,
			"note", fmt.Sprintf("the instance left group %s and no state change came within %s", f.GroupName, StaleMarkAge))
	}
	return closed, errors.Join(errs...)
}

// TickFleet names the fleet a tick is for: a Scheduled Event of a fleet's tick rule, or a tick
// or scale command; "" for anything else.
func (h *Handler) TickFleet(msg *messages.Message) string {
	switch p := msg.Payload.(type) {
	case *messages.Scheduled:
		if name, ok := h.rules[p.RuleARN]; ok {
			return name
		}
		return h.rules[p.RuleName]
	case *messages.Command:
		if p.Type == messages.CommandTick || p.Type == messages.CommandScale {
			return p.Fleet
		}
	}
	return ""
}

// BeforeTick wraps a tick handler (the scale handler's Handle): for a tick of a fleet it first
// runs PrepareTick, then calls next, which then sees the replaced instances leaving and their
// replacements booting.
func (h *Handler) BeforeTick(next func(ctx context.Context, msg *messages.Message) error) func(ctx context.Context, msg *messages.Message) error {
	return func(ctx context.Context, msg *messages.Message) error {
		if name := h.TickFleet(msg); name != "" {
			h.PrepareTick(ctx, name)
		}
		return next(ctx, msg)
	}
}

// PrepareTick is the marks' part of a fleet's tick, run before its scaling decision (the
// worker's tick and BeforeTick both call it): it replaces the fleet's spot- and rebalance-marked
// instances (ReplaceMarked) and closes its stale marks (CloseStale), bounded together by the
// step timeout. A failure is logged and left to the next tick; it never holds the scaling
// decision back.
func (h *Handler) PrepareTick(ctx context.Context, fleetName string) {
	f, ok := h.byName[fleetName]
	if !ok {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, h.cfg.StepTimeout)
	defer cancel()
	marks, err := h.listMarks(rctx, f) // once for both steps
	if err != nil {
		h.log.WarnContext(ctx, "preparing the tick", "fleet", fleetName, "error", err.Error())
		return
	}
	if _, err := h.replaceMarked(rctx, f, marks); err != nil {
		h.log.WarnContext(ctx, "replacing marked instances", "fleet", fleetName, "error", err.Error())
	}
	if _, err := h.closeStale(rctx, f, marks); err != nil {
		h.log.WarnContext(ctx, "closing stale marks", "fleet", fleetName, "error", err.Error())
	}
}
