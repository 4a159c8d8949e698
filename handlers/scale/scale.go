// Package scale is the scaling handler: on each tick of a fleet it describes the Auto Scaling
// group, reads every in-service runner's metrics, asks the policy (scaling.Decide) what to do and
// applies it — scale-out with SetDesiredCapacity, scale-in only by terminating idle instances it
// chose (busy ones carry scale-in protection). It also follows `publisher scale` pins.
//
// Contract with the router: Handle is called with messages of the fleet's FIFO message group, one
// at a time per fleet. A tick is decided at most once: the decision is claimed with a conditional
// write of the fleet's Record before anything is applied, so a redelivered tick or a second
// replica deciding the same tick does nothing. Errors returned are transient (describe, state
// store) unless made with messages.Reject (unknown fleet, bad command); a failed Auto Scaling call
// while applying is logged and counted, not retried (the next tick decides again from what the
// group then is). Metrics are published to CloudWatch concurrently with applying, on their own
// deadline; a failed publish never blocks or fails a decision.
//
// Held ticks. While Deps.Hold says a fleet-level operation (a cycle) owns the fleet's capacity,
// a tick still describes, scrapes, decides, publishes its metrics and logs its decision (action
// "held", the reason saying why, in the hold's words, and what the policy would have done), but
// it changes no capacity and removes nothing: no SetDesiredCapacity, no TerminateInstance, and no
// unprotecting of idle instances (which would offer them to the group's own scale-in). Scale-in
// protection of busy instances is still applied: it only shields running jobs from the group's
// own choices, changes no capacity, and cannot block the cycle, which retires instances with
// TerminateInstanceInAutoScalingGroup (scale-in protection does not apply to it). Spare capacity
// seen while held (a surge makes it) does not count towards the scale-in window, which starts
// afresh after the hold.
package scale

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/messages"
	"github.com/runnerfleet/runnerfleet/scaling"
)

// Defaults of Config.
const (
	// DefaultPublishTimeout bounds one CloudWatch publish: PutMetricData answers in tens of
	// milliseconds; a tick must not wait long on a monitoring hiccup.
	DefaultPublishTimeout = 5 * time.Second
	// DefaultApplyTimeout bounds applying one decision (a few Auto Scaling calls), on a context of
	// its own so a decision that was claimed is applied even if the message's context ends.
	DefaultApplyTimeout = 30 * time.Second
	// DefaultMaxCommandAge refuses scale commands older than this: an operator's pin that sat in a
	// queue for an hour is no longer what they meant.
	DefaultMaxCommandAge = 15 * time.Minute
)

// saveRetries bounds re-reads when a pin or resume loses a conditional write to a tick.
const saveRetries = 5

// Config configures a Handler.
type Config struct {
	// Fleets are the fleets this worker scales; ticks map to them by TickRule (ARN or name).
	Fleets []fleet.Settings
	// PublishTimeout bounds a CloudWatch publish; default DefaultPublishTimeout.
	PublishTimeout time.Duration
	// ApplyTimeout bounds applying a decision; default DefaultApplyTimeout.
	ApplyTimeout time.Duration
	// MaxCommandAge refuses older scale commands; default DefaultMaxCommandAge.
	MaxCommandAge time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = DefaultApplyTimeout
	}
	if c.MaxCommandAge == 0 {
		c.MaxCommandAge = DefaultMaxCommandAge
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, f := range c.Fleets {
		switch {
		case f.Name == "":
			errs = append(errs, fmt.Errorf("scale: fleets[%d]: empty name", i))
		case seen[f.Name]:
			errs = append(errs, fmt.Errorf("scale: fleets[%d]: duplicate name %q", i, f.Name))
		}
		seen[f.Name] = true
		if f.GroupName == "" {
			errs = append(errs, fmt.Errorf("scale: fleet %q: empty group", f.Name))
		}
		if f.MetricsURL != "" {
			if _, err := template.New("metrics_url").Parse(f.MetricsURL); err != nil {
				errs = append(errs, fmt.Errorf("scale: fleet %q: metrics_url: %w", f.Name, err))
			}
		}
		if err := scaling.ValidatePolicy(f.Policy.WithDefaults()); err != nil {
			errs = append(errs, fmt.Errorf("scale: fleet %q: %w", f.Name, err))
		}
	}
	if c.PublishTimeout < 0 || c.ApplyTimeout < 0 || c.MaxCommandAge < 0 {
		errs = append(errs, errors.New("scale: timeouts must not be negative"))
	}
	return errors.Join(errs...)
}

// Deps are the handler's adapters; none may be nil.
type Deps struct {
	Group   Group
	Scraper Scraper
	Metrics MetricsSink
	State   StateStore
	// Registerer receives the handler's Prometheus series (the worker's /metrics registry).
	Registerer prometheus.Registerer
	// Hold, optional, holds ticks while a fleet-level operation owns the capacity (see the
	// package doc). nil: ticks are never held. Leave it nil rather than passing a nil pointer.
	Hold Hold
}

// Handler scales fleets. It is safe for concurrent use (different fleets at once; the control
// queue already serializes each fleet).
type Handler struct {
	cfg    Config
	deps   Deps
	log    *slog.Logger
	m      *metrics
	fleets map[string]fleet.Settings
	rules  map[string]string // tick rule ARN or name → fleet name
}

// New returns a Handler. It refuses nil dependencies and an invalid Config.
func New(cfg Config, deps Deps, logger *slog.Logger) (*Handler, error) {
	cfg.setDefaults()
	var errs []error
	if deps.Group == nil {
		errs = append(errs, errors.New("scale: nil Group"))
	}
	if deps.Scraper == nil {
		errs = append(errs, errors.New("scale: nil Scraper"))
	}
	if deps.Metrics == nil {
		errs = append(errs, errors.New("scale: nil MetricsSink"))
	}
	if deps.State == nil {
		errs = append(errs, errors.New("scale: nil StateStore"))
	}
	if deps.Registerer == nil {
		errs = append(errs, errors.New("scale: nil prometheus Registerer"))
	}
	if logger == nil {
		errs = append(errs, errors.New("scale: nil logger"))
	}
	errs = append(errs, cfg.Validate())
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, fmt.Errorf("scale: registering metrics: %w", err)
	}
	h := &Handler{cfg: cfg, deps: deps, log: logger.With("handler", "scale"), m: m,
		fleets: map[string]fleet.Settings{}, rules: map[string]string{}}
	for _, f := range cfg.Fleets {
		if f.MetricsURL == "" {
			f.MetricsURL = fleet.DefaultMetricsURL
		}
		h.fleets[f.Name] = f
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

// Handles reports whether msg is for this handler: a Scheduled Event of a configured fleet's
// tick rule, or a tick or scale command.
func (h *Handler) Handles(msg *messages.Message) bool {
	switch p := msg.Payload.(type) {
	case *messages.Scheduled:
		_, ok := h.fleetOfRule(p)
		return ok
	case *messages.Command:
		return p.Type == messages.CommandTick || p.Type == messages.CommandScale
	}
	return false
}

// Handle decides one tick (a Scheduled Event or a tick command) or follows a scale command, then
// ticks. See the package doc for what is retried.
func (h *Handler) Handle(ctx context.Context, msg *messages.Message) error {
	switch p := msg.Payload.(type) {
	case *messages.Scheduled:
		name, ok := h.fleetOfRule(p)
		if !ok {
			return messages.Reject("scheduled event of rule %s: no fleet has this tick rule", p.RuleARN)
		}
		return h.Tick(ctx, name, msg.ID)
	case *messages.Command:
		return h.Command(ctx, p)
	}
	return messages.Reject("message %s of kind %s is not the scale handler's", msg.ID, msg.Kind)
}

// Command follows a tick command (one tick now, deduped by the command's ID) or a scale command
// (pin or resume, then a tick). Other types, unknown fleets, stale or malformed scale commands are
// rejected (permanent).
func (h *Handler) Command(ctx context.Context, c *messages.Command) error {
	f, ok := h.fleets[c.Fleet]
	if !ok {
		return messages.Reject("%s command %s: unknown fleet %q", c.Type, c.ID, c.Fleet)
	}
	switch c.Type {
	case messages.CommandTick:
		return h.Tick(ctx, f.Name, c.ID)
	case messages.CommandScale:
		return h.scaleCommand(ctx, f, c)
	}
	return messages.Reject("command %s: type %q is not the scale handler's", c.ID, c.Type)
}

func (h *Handler) fleetOfRule(s *messages.Scheduled) (string, bool) {
	if name, ok := h.rules[s.RuleARN]; ok {
		return name, true
	}
	name, ok := h.rules[s.RuleName]
	return name, ok
}

func (h *Handler) scaleCommand(ctx context.Context, f fleet.Settings, c *messages.Command) error {
	now := h.cfg.Now()
	if c.Scale == nil || (c.Scale.Desired == nil) == !c.Scale.Resume {
		return messages.Reject("scale command %s: exactly one of desired and resume is needed", c.ID)
	}
	what := "pin"
	if c.Scale.Resume {
		what = "resume"
	}
	if age := now.Sub(c.IssuedAt); age > h.cfg.MaxCommandAge {
		return messages.Reject("scale command %s: issued %s ago, more than %s: refusing a stale %s", c.ID, age.Round(time.Second), h.cfg.MaxCommandAge, what)
	}
	if c.Scale.For > 0 && !now.Before(c.IssuedAt.Add(c.Scale.For)) {
		// Accepted, it would be logged as pinned and never take effect.
		return messages.Reject("scale command %s: its pin for %s, issued %s ago, has already run out", c.ID, c.Scale.For, now.Sub(c.IssuedAt).Round(time.Second))
	}
	var pin *Pin
	if c.Scale.Desired != nil {
		if *c.Scale.Desired < 0 {
			return messages.Reject("scale command %s: desired %d is negative", c.ID, *c.Scale.Desired)
		}
		pin = &Pin{Desired: *c.Scale.Desired, CommandID: c.ID, Issuer: c.Issuer}
		if c.Scale.For > 0 {
			pin.Until = c.IssuedAt.Add(c.Scale.For)
		}
	}
	for range saveRetries {
		rec, ver, err := h.deps.State.Load(ctx, f.Name)
		if err != nil {
			return fmt.Errorf("loading scale state of fleet %s: %w", f.Name, err)
		}
		if rec.Pin != nil && pin != nil && rec.Pin.CommandID == c.ID {
			return h.Tick(ctx, f.Name, c.ID) // redelivered: already pinned; the tick dedupes too
		}
		rec.Pin = pin
		ok, err := h.deps.State.Save(ctx, f.Name, rec, ver)
		if err != nil {
			return fmt.Errorf("saving pin of fleet %s: %w", f.Name, err)
		}
		if ok {
			h.log.InfoContext(ctx, "scale pin", "fleet", f.Name, "command_id", c.ID, "issuer", c.Issuer,
				"pinned", pin != nil, "desired", pinDesired(pin), "until", pinUntil(pin))
			// The command takes its first step at once.
			return h.Tick(ctx, f.Name, c.ID)
		}
	}
	return fmt.Errorf("saving pin of fleet %s: lost %d conditional writes in a row", f.Name, saveRetries)
}

func pinDesired(p *Pin) int {
	if p == nil {
		return -1
	}
	return p.Desired
}

func pinUntil(p *Pin) any {
	if p == nil || p.Until.IsZero() {
		return nil
	}
	return p.Until
}

// Tick decides and applies one tick of the named fleet. messageID dedupes redeliveries ("" never
// dedupes).
func (h *Handler) Tick(ctx context.Context, fleetName, messageID string) error {
	f, ok := h.fleets[fleetName]
	if !ok {
		return messages.Reject("tick: unknown fleet %q", fleetName)
	}
	start := h.cfg.Now()
	log := h.log.With("fleet", f.Name, "group", f.GroupName, "message_id", messageID)

	rec, ver, err := h.deps.State.Load(ctx, f.Name)
	if err != nil {
		return fmt.Errorf("loading scale state of fleet %s: %w", f.Name, err)
	}
	if messageID != "" && rec.LastMessageID == messageID {
		h.m.lostRaces.WithLabelValues(f.Name, "duplicate").Inc()
		log.InfoContext(ctx, "scale tick already decided", "decided_at", rec.LastDecision)
		return nil
	}
	group, err := h.deps.Group.Describe(ctx, f.GroupName)
	if errors.Is(err, ErrGroupNotFound) {
		return messages.Reject("tick of fleet %s: %w", f.Name, err)
	}
	if err != nil {
		return fmt.Errorf("describing group %s of fleet %s: %w", f.GroupName, f.Name, err)
	}
	instances, err := h.observe(ctx, f, group)
	if err != nil {
		return messages.Reject("fleet %s: %v", f.Name, err)
	}

	now := h.cfg.Now()
	in := scaling.Input{Instances: instances, Desired: group.Desired, GroupMin: group.Min, GroupMax: group.Max, State: rec.Scaling}
	if rec.Pin.ActiveAt(now) {
		in.Pinned = &rec.Pin.Desired
	}
	off := group.Max == 0
	if off {
		// Someone switched the fleet off in Auto Scaling (MaxSize 0): launching would be refused
		// every tick. Pinned at 0, idle instances are unprotected so the group can terminate
		// them (each drained) and busy ones stay protected until their jobs end.
		in.Pinned = new(0)
	}
	d := scaling.Decide(now, f.Policy, in)
	if off {
		d.Reason = "switched off: the group's MaxSize is 0; " + d.Reason
	}
	policyAction, policyDesired := actionOf(d, group.Desired), d.Desired
	held := false
	if why := h.held(ctx, log, f.Name); why != "" {
		held = true
		d = hold(d, rec.Scaling, group.Desired, why)
	}

	fm := fleetMetrics(f.Name, now, instances, d)
	h.m.observe(fm)
	// Publishing runs beside the claim and the apply, on its own deadline. A worker that lost the
	// claim leaves it to the winner (one datapoint per tick); one whose claim failed publishes,
	// since nobody else will.
	var published sync.WaitGroup
	defer published.Wait()
	publish := func() { published.Go(func() { h.publish(ctx, log, fm) }) }

	next := rec
	next.Scaling = d.State
	if rec.Pin != nil && !rec.Pin.ActiveAt(now) {
		next.Pin = nil // expired
	}
	next.LastMessageID = messageID
	next.LastDecision = now
	next.LastReason = d.Reason
	action := policyAction
	if held {
		action = actionHeld
	}
	next.LastDesired, next.LastAction = new(d.Desired), action
	next.LastApplyErrors = nil
	claimed, err := h.deps.State.Save(ctx, f.Name, next, ver)
	if err != nil {
		publish()
		return fmt.Errorf("saving scale state of fleet %s: %w", f.Name, err)
	}
	if !claimed {
		h.m.lostRaces.WithLabelValues(f.Name, "concurrent").Inc()
		log.InfoContext(ctx, "scale tick decided by another worker; not applying")
		return nil
	}
	publish()

	h.m.decisions.WithLabelValues(f.Name, action).Inc()
	applyErrs := h.apply(ctx, log, f, group, d)
	if len(applyErrs) > 0 {
		// Said in the record too, for publisher scale --wait; conditioned on the decision's own
		// write, so a later tick's record is never overwritten. Best effort: the log has them.
		next.LastApplyErrors = applyErrs
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.ApplyTimeout)
		if _, err := h.deps.State.Save(sctx, f.Name, next, ver+1); err != nil {
			log.WarnContext(ctx, "recording the failed Auto Scaling calls in the scale record", "error", err.Error())
		}
		cancel()
	}
	h.m.tickSeconds.WithLabelValues(f.Name).Observe(h.cfg.Now().Sub(start).Seconds())
	log.InfoContext(ctx, "scale decision",
		"action", action,
		"reason", d.Reason,
		"desired_before", group.Desired,
		"desired", d.Desired,
		"held", held,
		"policy_action", policyAction,
		"policy_desired", policyDesired,
		"group_min", group.Min,
		"group_max", group.Max,
		"pinned", in.Pinned,
		"protect", d.Protect,
		"unprotect", d.Unprotect,
		"remove", d.Remove,
		"replace", d.Replace,
		"observation", d.Observation,
		"unknown", unknownReasons(instances),
		"apply_errors", applyErrs,
		"took_ms", h.cfg.Now().Sub(start).Milliseconds(),
	)
	return nil
}

// actionHeld is the decisions_total action of a held tick.
const actionHeld = "held"

// ActionHeld is Record.LastAction of a held tick.
const ActionHeld = actionHeld

// actionOf names what a decision does to the group: scale_out, scale_in or steady.
func actionOf(d scaling.Decision, desiredBefore int) string {
	switch {
	case d.Desired > desiredBefore:
		return "scale_out"
	case len(d.Remove) > 0 || d.Desired < desiredBefore: // removals, or launches cancelled
		return "scale_in"
	}
	return "steady"
}

// held asks Deps.Hold whether the fleet's capacity is held and returns why in words, or "" when
// it is not. When Hold cannot tell, the tick holds: resizing in the middle of a cycle is worse
// than one tick without scaling.
func (h *Handler) held(ctx context.Context, log *slog.Logger, fleetName string) string {
	if h.deps.Hold == nil {
		return ""
	}
	why, err := h.deps.Hold.Holding(ctx, fleetName)
	switch {
	case err != nil:
		log.WarnContext(ctx, "cannot tell whether a cycle is in progress; holding scaling this tick", "error", err.Error())
		return "held: cannot tell whether a cycle is in progress (" + err.Error() + ")"
	case why != "":
		return "held: " + why
	}
	return ""
}

// hold turns the policy's decision into a held one: the desired capacity stays, nothing is
// removed or unprotected, busy instances are still protected; the reason says why and what the
// policy would have done. The scaling state keeps the last scale-out and scale-in times of prev
// and restarts the scale-in window (spare capacity during a hold is the operation's doing).
func hold(d scaling.Decision, prev scaling.State, desiredBefore int, why string) scaling.Decision {
	d.Reason = why + "; nothing resized or removed (busy instances still protected); the policy says: " + d.Reason
	d.Desired = desiredBefore
	d.Remove, d.Unprotect, d.Replace = nil, nil, nil
	d.State.LastScaleOut, d.State.LastScaleIn = prev.LastScaleOut, prev.LastScaleIn
	d.State.SpareSince = time.Time{}
	return d
}

// observe merges the group's members with their runners' scrapes.
func (h *Handler) observe(ctx context.Context, f fleet.Settings, g GroupState) ([]fleet.Instance, error) {
	instances := make([]fleet.Instance, len(g.Members))
	var targets []Target
	var at []int
	for i, m := range g.Members {
		instances[i] = m.Instance
		if m.Instance.State.InService() {
			targets = append(targets, Target{InstanceID: m.Instance.ID, PrivateIP: m.PrivateIP})
			at = append(at, i)
		}
	}
	if len(targets) == 0 {
		return instances, nil
	}
	scraped, err := h.deps.Scraper.ScrapeRunners(ctx, f.MetricsURL, targets)
	if err != nil {
		return nil, fmt.Errorf("scraping runners: %w", err)
	}
	if len(scraped) != len(targets) {
		return nil, fmt.Errorf("scraping runners: %d results for %d targets", len(scraped), len(targets))
	}
	for k, s := range scraped {
		inst := &instances[at[k]]
		inst.Unknown, inst.UnknownReason = s.Unknown, s.UnknownReason
		inst.Healthy, inst.Capacity, inst.RunningJobs = s.Healthy, s.Capacity, s.RunningJobs
		inst.QueueSize, inst.QueueDepth, inst.QueueAge, inst.QueueStale = s.QueueSize, s.QueueDepth, s.QueueAge, s.QueueStale
		inst.QueuingExceededRate = s.QueuingExceededRate
		if s.Unknown {
			h.m.unknownScrape.WithLabelValues(f.Name, s.UnknownReason).Inc()
		}
	}
	return instances, nil
}

func fleetMetrics(name string, now time.Time, instances []fleet.Instance, d scaling.Decision) FleetMetrics {
	fm := FleetMetrics{Fleet: name, At: now, ActiveJobs: d.Observation.RunningJobs, Capacity: d.Observation.Capacity,
		DesiredCapacity: d.Desired, UnknownInstances: d.Observation.Unknown, QueuedJobs: d.Observation.Queued}
	for _, inst := range instances {
		if inst.State.InService() {
			fm.InServiceInstances++
		}
	}
	return fm
}

func (h *Handler) publish(ctx context.Context, log *slog.Logger, fm FleetMetrics) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.PublishTimeout)
	defer cancel()
	if err := h.deps.Metrics.Publish(ctx, fm); err != nil {
		h.m.publishFails.WithLabelValues(fm.Fleet).Inc()
		log.WarnContext(ctx, "publishing fleet metrics failed; scaling goes on", "error", err.Error())
	}
}

// apply carries out a claimed decision: protect, unprotect, then raise desired, cancel launches
// the group has not made (lower desired, never below the members listed) or remove idle
// instances. Every call is tried even when an earlier one failed; failures are returned in words.
func (h *Handler) apply(ctx context.Context, log *slog.Logger, f fleet.Settings, g GroupState, d scaling.Decision) []string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.ApplyTimeout)
	defer cancel()
	var failed []string
	fail := func(op string, err error) {
		h.m.applyErrors.WithLabelValues(f.Name, op).Inc()
		failed = append(failed, op+": "+err.Error())
		log.WarnContext(ctx, "applying scale decision", "op", op, "error", err.Error())
	}
	if len(d.Protect) > 0 {
		if err := h.deps.Group.SetProtection(ctx, g.Name, d.Protect, true); err != nil {
			fail("protect", err)
		}
	}
	if len(d.Unprotect) > 0 {
		if err := h.deps.Group.SetProtection(ctx, g.Name, d.Unprotect, false); err != nil {
			fail("unprotect", err)
		}
	}
	for _, id := range d.Replace {
		// Before any change of desired: the group launches its replacement whatever follows.
		if !slices.ContainsFunc(g.Members, func(m Member) bool { return m.Instance.ID == id }) {
			continue // never terminate what is not a member of this group
		}
		if err := h.deps.Group.ReplaceInstance(ctx, id); err != nil {
			fail("replace", fmt.Errorf("%s: %w", id, err))
		}
	}
	if d.Desired > g.Desired {
		if err := h.deps.Group.SetDesiredCapacity(ctx, g.Name, d.Desired); err != nil {
			fail("set_desired", err)
		}
		return failed
	}
	if d.Desired < g.Desired && len(d.Remove) == 0 {
		// Cancelling launches the group has not made: never below the members it lists, which
		// would let Auto Scaling pick an instance to terminate.
		if live := liveMembers(g); d.Desired < live {
			fail("set_desired", fmt.Errorf("refusing to lower the desired capacity to %d below the %d instances listed", d.Desired, live))
			return failed
		}
		if err := h.deps.Group.SetDesiredCapacity(ctx, g.Name, d.Desired); err != nil {
			fail("set_desired", err)
		}
		return failed
	}
	for _, id := range d.Remove {
		if !slices.ContainsFunc(g.Members, func(m Member) bool { return m.Instance.ID == id }) {
			continue // never terminate what is not a member of this group
		}
		if err := h.deps.Group.TerminateInstance(ctx, id); err != nil {
			fail("terminate", fmt.Errorf("%s: %w", id, err))
		}
	}
	return failed
}

// liveMembers counts the group's members that are not leaving.
func liveMembers(g GroupState) int {
	n := 0
	for _, m := range g.Members {
		if !m.Instance.State.Leaving() {
			n++
		}
	}
	return n
}

func unknownReasons(instances []fleet.Instance) map[string]string {
	var out map[string]string
	for _, inst := range instances {
		if inst.State.InService() && inst.Unknown {
			if out == nil {
				out = map[string]string{}
			}
			out[inst.ID] = inst.UnknownReason
		}
	}
	return out
}
