package cycle

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/messages"
)

// Defaults of Config and FleetConfig, with why.
const (
	// DefaultMaxUnavailable and DefaultSurge: one at a time, a replacement first — the safest
	// cycle that still moves.
	DefaultMaxUnavailable = 1
	DefaultSurge          = 1
	// DefaultHealthTimeout: an instance boots, installs and registers its runner in a few
	// minutes, but with the fleet stack's launch hook on (900 s) the launch gate may hold it for
	// 13.5 minutes and a few added looks before deciding: the cycle must not fail a replacement
	// the gate still waits for (infra/config derives a longer one from a longer gate timeout).
	DefaultHealthTimeout = 20 * time.Minute
	// DefaultApplyTimeout bounds the Auto Scaling calls of one claimed step, on a context of its
	// own so a claimed step is applied even if the message's context ends.
	DefaultApplyTimeout = 30 * time.Second
	// DefaultMaxCommandAge refuses cycle commands older than this: an hour-old "cycle" is no
	// longer what its sender meant.
	DefaultMaxCommandAge = 15 * time.Minute
	// DefaultKeepFinished is how long a finished cycle's record stays for publisher status.
	DefaultKeepFinished = 7 * 24 * time.Hour
)

// What a fleet does when its token parameter changes.
const (
	OnTokenCycle  = "cycle"
	OnTokenReport = "report"
)

// saveRetries bounds re-reads when a command loses a conditional write to a tick.
const saveRetries = 5

// FleetConfig is a fleet with its cycle settings.
type FleetConfig struct {
	fleet.Settings
	// MaxUnavailable and Surge are the defaults of a cycle whose command leaves them 0.
	MaxUnavailable int
	Surge          int
	// HealthTimeout is how long a replacement may take to become healthy.
	HealthTimeout time.Duration
	// OnTokenChange is OnTokenCycle (default) or OnTokenReport.
	OnTokenChange string
}

func (f *FleetConfig) setDefaults() {
	if f.MaxUnavailable == 0 && f.Surge == 0 {
		f.MaxUnavailable, f.Surge = DefaultMaxUnavailable, DefaultSurge
	}
	if f.HealthTimeout == 0 {
		f.HealthTimeout = DefaultHealthTimeout
	}
	if f.OnTokenChange == "" {
		f.OnTokenChange = OnTokenCycle
	}
	if f.MetricsURL == "" {
		f.MetricsURL = fleet.DefaultMetricsURL
	}
}

// Config configures a Handler.
type Config struct {
	Fleets        []FleetConfig
	ApplyTimeout  time.Duration
	MaxCommandAge time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	for i := range c.Fleets {
		c.Fleets[i].setDefaults()
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
			errs = append(errs, fmt.Errorf("cycle: fleets[%d]: empty name", i))
		case seen[f.Name]:
			errs = append(errs, fmt.Errorf("cycle: fleets[%d]: duplicate name %q", i, f.Name))
		}
		seen[f.Name] = true
		if f.GroupName == "" {
			errs = append(errs, fmt.Errorf("cycle: fleet %q: empty group", f.Name))
		}
		if f.MaxUnavailable < 0 || f.Surge < 0 {
			errs = append(errs, fmt.Errorf("cycle: fleet %q: max_unavailable and surge must not be negative", f.Name))
		}
		if f.MaxUnavailable+f.Surge < 1 {
			errs = append(errs, fmt.Errorf("cycle: fleet %q: max_unavailable + surge must be at least 1, or a cycle never moves", f.Name))
		}
		if f.HealthTimeout < 0 {
			errs = append(errs, fmt.Errorf("cycle: fleet %q: health timeout must not be negative", f.Name))
		}
		if f.OnTokenChange != OnTokenCycle && f.OnTokenChange != OnTokenReport {
			errs = append(errs, fmt.Errorf("cycle: fleet %q: on_token_change %q: want %q or %q", f.Name, f.OnTokenChange, OnTokenCycle, OnTokenReport))
		}
	}
	if c.ApplyTimeout < 0 || c.MaxCommandAge < 0 {
		errs = append(errs, errors.New("cycle: timeouts must not be negative"))
	}
	return errors.Join(errs...)
}

// Deps are the handler's adapters; none may be nil.
type Deps struct {
	Group  Group
	Health Health
	State  StateStore
	// Marks, optional, names instances whose intake a spot or rebalance notice stopped.
	Marks      Marks
	Registerer prometheus.Registerer
}

// Handler runs cycles. It is safe for concurrent use; the control queue serializes each fleet,
// and the record's conditional writes make a second replica harmless anyway.
type Handler struct {
	cfg    Config
	deps   Deps
	log    *slog.Logger
	m      *metrics
	fleets map[string]FleetConfig
}

// New returns a Handler. It refuses nil dependencies and an invalid Config.
func New(cfg Config, deps Deps, logger *slog.Logger) (*Handler, error) {
	cfg.Fleets = slices.Clone(cfg.Fleets)
	cfg.setDefaults()
	var errs []error
	if deps.Group == nil {
		errs = append(errs, errors.New("cycle: nil Group"))
	}
	if deps.Health == nil {
		errs = append(errs, errors.New("cycle: nil Health"))
	}
	if deps.State == nil {
		errs = append(errs, errors.New("cycle: nil StateStore"))
	}
	if deps.Registerer == nil {
		errs = append(errs, errors.New("cycle: nil prometheus Registerer"))
	}
	if logger == nil {
		errs = append(errs, errors.New("cycle: nil logger"))
	}
	errs = append(errs, cfg.Validate())
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, fmt.Errorf("cycle: registering metrics: %w", err)
	}
	h := &Handler{cfg: cfg, deps: deps, log: logger.With("handler", "cycle"), m: m, fleets: map[string]FleetConfig{}}
	for _, f := range cfg.Fleets {
		h.fleets[f.Name] = f
	}
	return h, nil
}

// Handles reports whether msg is this handler's: a cycle command, a fleet step of a cycle, or a
// Parameter Store Change of a fleet's token parameter.
func (h *Handler) Handles(msg *messages.Message) bool {
	switch p := msg.Payload.(type) {
	case *messages.Command:
		return p.Type == messages.CommandCycle
	case *messages.FleetStep:
		return p.Work == "" || p.Work == messages.FleetWorkCycle
	case *messages.ParameterChange:
		return len(h.fleetsOfParameter(p.Name)) > 0
	}
	return false
}

// Handle dispatches msg: see Command, Advance and ParameterChange.
func (h *Handler) Handle(ctx context.Context, msg *messages.Message) error {
	switch p := msg.Payload.(type) {
	case *messages.Command:
		return h.Command(ctx, p)
	case *messages.FleetStep:
		_, err := h.Advance(ctx, p.Fleet, msg.ID)
		return err
	case *messages.ParameterChange:
		return h.ParameterChange(ctx, p, msg.ID)
	}
	return messages.Reject("message %s of kind %s is not the cycle handler's", msg.ID, msg.Kind)
}

// Command starts a cycle (and takes its first step) or aborts the one in progress. A redelivered
// command changes nothing. Unknown fleets, stale commands, a second cycle while one runs, and a
// surge and max-unavailable both 0 are rejected (permanent). Errors reading or writing the state
// or describing the group are transient.
func (h *Handler) Command(ctx context.Context, c *messages.Command) error {
	f, ok := h.fleets[c.Fleet]
	if !ok {
		return messages.Reject("cycle command %s: unknown fleet %q", c.ID, c.Fleet)
	}
	if c.Type != messages.CommandCycle || c.Cycle == nil {
		return messages.Reject("command %s: type %q is not the cycle handler's", c.ID, c.Type)
	}
	if age := h.cfg.Now().Sub(c.IssuedAt); age > h.cfg.MaxCommandAge {
		return messages.Reject("cycle command %s: issued %s ago, more than %s: refusing a stale command", c.ID, age.Round(time.Second), h.cfg.MaxCommandAge)
	}
	if c.Cycle.Abort {
		return h.abort(ctx, f, c)
	}
	return h.start(ctx, f, start{id: c.ID, trigger: TriggerCommand, issuer: c.Issuer,
		maxUnavailable: c.Cycle.MaxUnavailable, surge: c.Cycle.Surge, all: c.Cycle.All})
}

type start struct {
	id, trigger, issuer   string
	maxUnavailable, surge int
	all                   bool
}

func (h *Handler) start(ctx context.Context, f FleetConfig, s start) error {
	log := h.log.With("fleet", f.Name, "cycle_id", s.id, "trigger", s.trigger)
	rec, ver, err := h.deps.State.Load(ctx, f.Name)
	if err != nil {
		return fmt.Errorf("loading cycle of fleet %s: %w", f.Name, err)
	}
	if err := h.newer(f, rec); err != nil {
		return err
	}
	if rec.ID == s.id {
		if rec.Active() {
			_, err := h.Advance(ctx, f.Name, "") // redelivered: carry on
			return err
		}
		return nil
	}
	if rec.Active() {
		if s.trigger == TriggerToken {
			// The token changed under a running cycle: instances it launched may hold either
			// token, so a token cycle of everything follows when this one ends.
			rec.TokenChangedAt = h.cfg.Now()
			rec.event(rec.TokenChangedAt, "token parameter changed: a cycle of every instance follows this one")
			ok, err := h.save(ctx, f.Name, rec, ver)
			if err != nil {
				return fmt.Errorf("saving cycle of fleet %s: %w", f.Name, err)
			}
			if !ok {
				return fmt.Errorf("saving cycle of fleet %s: lost a conditional write; retrying", f.Name)
			}
			h.m.tokens.WithLabelValues(f.Name, "deferred").Inc()
			log.WarnContext(ctx, "token parameter changed during a cycle; a token cycle follows it", "running_cycle", rec.ID)
			return nil
		}
		return messages.Reject("cycle %s of fleet %s: cycle %s is in progress since %s; abort it first (publisher cycle --fleet %s --abort)",
			s.id, f.Name, rec.ID, rec.StartedAt.Format(time.RFC3339), f.Name)
	}
	mu, surge := s.maxUnavailable, s.surge
	if mu == 0 && surge == 0 {
		mu, surge = f.MaxUnavailable, f.Surge
	}
	if mu+surge < 1 {
		return messages.Reject("cycle %s of fleet %s: surge and max-unavailable are both 0: nothing could ever be replaced", s.id, f.Name)
	}
	g, err := h.deps.Group.Describe(ctx, f.GroupName)
	if errors.Is(err, ErrGroupNotFound) {
		return messages.Reject("cycle %s of fleet %s: %v", s.id, f.Name, err)
	}
	if err != nil {
		return fmt.Errorf("describing group %s of fleet %s: %w", f.GroupName, f.Name, err)
	}
	now := h.cfg.Now()
	next := Record{
		ID: s.id, Trigger: s.trigger, Issuer: s.issuer, Status: StatusRunning, StartedAt: now, UpdatedAt: now, MovedAt: now,
		MaxUnavailable: mu, All: s.all, HealthTimeout: f.HealthTimeout,
		TargetVersion: g.CurrentVersion, Desired: g.Desired, OriginalMax: g.Max,
	}
	leftover := surgeLeft(rec, g)
	if leftover {
		next.Desired, next.OriginalMax, next.RaisedMax = min(g.Desired, rec.OriginalMax), rec.OriginalMax, rec.RaisedMax
	}
	for _, m := range g.Members {
		if m.State.Leaving() {
			continue
		}
		if s.all || (g.CurrentVersion != "" && m.Version != g.CurrentVersion) {
			next.Old = append(next.Old, m.ID)
		} else {
			next.Kept = append(next.Kept, m.ID)
		}
	}
	next.Surge = min(surge, len(next.Old))
	next.Progress = Progress{Total: len(next.Old), Floor: max(next.Desired-mu, 0)}
	what := fmt.Sprintf("%d of %d instances not on launch template version %s", len(next.Old), len(next.Old)+len(next.Kept), g.CurrentVersion)
	if s.all {
		what = fmt.Sprintf("all %d instances", len(next.Old))
	}
	next.event(now, fmt.Sprintf("cycle started (%s): replacing %s; desired %d, surge %d, max-unavailable %d",
		s.trigger, what, next.Desired, next.Surge, mu))
	if leftover {
		next.event(now, fmt.Sprintf("cycle %s's surge still holds MaxSize at %d (desired %d): this cycle ends at desired %d and gives MaxSize back to %d",
			rec.ID, g.Max, g.Desired, next.Desired, next.OriginalMax))
	}
	if len(next.Old) == 0 {
		next.finish(now, StatusSucceeded, "nothing to replace: every instance runs launch template version "+g.CurrentVersion)
	}
	ok, err := h.save(ctx, f.Name, next, ver)
	if err != nil {
		return fmt.Errorf("saving cycle of fleet %s: %w", f.Name, err)
	}
	if !ok {
		return fmt.Errorf("saving cycle of fleet %s: lost a conditional write; retrying", f.Name)
	}
	h.m.started.WithLabelValues(f.Name, s.trigger).Inc()
	log.InfoContext(ctx, "cycle started", "issuer", s.issuer, "old", next.Old, "kept", next.Kept,
		"desired", next.Desired, "surge", next.Surge, "max_unavailable", mu, "target_version", g.CurrentVersion, "all", s.all)
	if next.Status.Final() {
		h.m.finished.WithLabelValues(f.Name, string(next.Status)).Inc()
		return nil
	}
	h.m.active.WithLabelValues(f.Name).Set(1)
	_, err = h.Advance(ctx, f.Name, "") // the command takes its first step at once
	return err
}

// surgeLeft reports whether the last cycle's surge still holds the group's MaxSize (not given
// back yet: a tick gives it back once the desired capacity is down, or its RestoreMax failed).
// A cycle starting then takes it over rather than refuse to start — a refused token cycle would
// leave the fleet on a rotated token — and rather than record the raised values as the group's
// own, which would make the earlier surge permanent: it keeps the earlier cycle's OriginalMax
// (and its RaisedMax, so it gives MaxSize back at its end), and the fleet's size is the desired
// capacity within that MaxSize. What the surge still holds above it goes; a desired capacity
// scaling chose within it since the earlier cycle ended is kept.
func surgeLeft(last Record, g GroupState) bool {
	return last.Status.Final() && last.RaisedMax > 0 && !last.MaxGivenBack && restorable(g, last)
}

func (h *Handler) abort(ctx context.Context, f FleetConfig, c *messages.Command) error {
	for range saveRetries {
		rec, ver, err := h.deps.State.Load(ctx, f.Name)
		if err != nil {
			return fmt.Errorf("loading cycle of fleet %s: %w", f.Name, err)
		}
		if err := h.newer(f, rec); err != nil {
			return err
		}
		if !rec.Active() {
			h.log.InfoContext(ctx, "cycle abort: no cycle in progress", "fleet", f.Name, "command_id", c.ID, "last_cycle", rec.ID, "last_status", rec.Status)
			return nil
		}
		now := h.cfg.Now()
		if !rec.TokenChangedAt.IsZero() {
			// An abort means stop: the token cycle that was to follow is not started by itself.
			rec.TokenChangedAt = time.Time{}
			rec.event(now, "the token cycle that was to follow is dropped by the abort: start it with publisher cycle --fleet "+f.Name+" --all")
		}
		rec.finish(now, StatusAborted, fmt.Sprintf("aborted by %s (command %s) after %d of %d replaced",
			orUnknown(c.Issuer), c.ID, rec.Progress.Replaced, rec.Progress.Total))
		ok, err := h.save(ctx, f.Name, rec, ver)
		if err != nil {
			return fmt.Errorf("saving cycle of fleet %s: %w", f.Name, err)
		}
		if ok {
			h.m.finished.WithLabelValues(f.Name, string(StatusAborted)).Inc()
			h.m.active.WithLabelValues(f.Name).Set(0)
			h.log.InfoContext(ctx, "cycle aborted", "fleet", f.Name, "cycle_id", rec.ID, "command_id", c.ID, "issuer", c.Issuer)
			h.undoAborted(ctx, f, rec)
			return nil
		}
	}
	return fmt.Errorf("aborting cycle of fleet %s: lost %d conditional writes in a row", f.Name, saveRetries)
}

// undoAborted gives back an aborted cycle's surge (planUndo; a failed cycle's end does it in
// apply). No runners are read: old instances go oldest first, each counted as serving. It only
// logs a failure: the abort itself stands.
func (h *Handler) undoAborted(ctx context.Context, f FleetConfig, rec Record) {
	g, err := h.deps.Group.Describe(ctx, f.GroupName)
	if err == nil {
		var order []undoCandidate
		for _, id := range oldInService(rec, g) {
			order = append(order, undoCandidate{id: id, serving: true})
		}
		u := planUndo(rec, g, order)
		h.log.InfoContext(ctx, "cycle aborted: "+undoText(rec, u), "fleet", f.Name, "cycle_id", rec.ID)
		err = h.giveBack(ctx, f, g, rec, u)
	}
	if err != nil {
		h.m.applyErrs.WithLabelValues(f.Name, "give_back").Inc()
		h.log.WarnContext(ctx, "cycle aborted: its surge not given back in full; set the desired capacity and MaxSize back by hand",
			"fleet", f.Name, "group", f.GroupName, "desired", rec.Desired, "original_max", rec.OriginalMax, "error", err.Error())
	}
}

// newer refuses a record a newer worker wrote (a rolling deploy runs old and new replicas side
// by side): saving it with this code would drop what it does not know. The error is transient,
// so the message is retried, by a newer replica in the end.
func (h *Handler) newer(f FleetConfig, rec Record) error {
	if rec.Schema <= recordSchema {
		return nil
	}
	return fmt.Errorf("cycle %s of fleet %s was written by a newer worker (schema %d, this one knows %d): left to a newer replica",
		rec.ID, f.Name, rec.Schema, recordSchema)
}

// save writes rec with this code's schema, conditioned on version.
func (h *Handler) save(ctx context.Context, fleetName string, rec Record, version int64) (bool, error) {
	rec.Schema = recordSchema
	return h.deps.State.Save(ctx, fleetName, rec, version)
}

// restorable reports whether the cycle gives back the room its surge took: MaxSize is what the
// surge set it to, above the original. A MaxSize someone changed since is theirs: it is left, and
// the decision logged.
func restorable(g GroupState, rec Record) bool {
	return rec.OriginalMax > 0 && rec.RaisedMax > 0 && g.Max > rec.OriginalMax && g.Max == rec.RaisedMax
}

func orUnknown(s string) string {
	if s == "" {
		return "an unnamed issuer"
	}
	return s
}

// Active reports whether a cycle of the fleet owns its desired capacity: from its start until
// its tail, when only drains are left (Record.HoldsCapacity). It is the scale handler's Hold:
// while it is true, ticks still decide and report but resize nothing.
func (h *Handler) Active(ctx context.Context, fleetName string) (bool, error) {
	rec, _, err := h.deps.State.Load(ctx, fleetName)
	if err != nil {
		return false, fmt.Errorf("loading cycle of fleet %s: %w", fleetName, err)
	}
	return rec.HoldsCapacity(), nil
}

// Advance takes one step of the fleet's cycle in progress, if any, and reports whether the cycle
// owns the fleet's capacity after it (Active). messageID dedupes redeliveries ("" never dedupes). The step is
// claimed with a conditional write before any Auto Scaling call: a step lost to another writer
// does nothing. A failed Auto Scaling call is logged and counted; the next step decides again
// from what the group then is.
func (h *Handler) Advance(ctx context.Context, fleetName, messageID string) (bool, error) {
	f, ok := h.fleets[fleetName]
	if !ok {
		return false, messages.Reject("cycle step: unknown fleet %q", fleetName)
	}
	rec, ver, err := h.deps.State.Load(ctx, f.Name)
	if err != nil {
		return false, fmt.Errorf("loading cycle of fleet %s: %w", f.Name, err)
	}
	if err := h.newer(f, rec); err != nil {
		// A newer replica's cycle: this tick takes no step (it would drop what it does not know),
		// and holds the capacity as the record says; the next tick may reach a newer replica.
		h.log.WarnContext(ctx, err.Error())
		return rec.HoldsCapacity(), nil
	}
	if !rec.Active() {
		h.m.active.WithLabelValues(f.Name).Set(0)
		if rec.Status.Final() && rec.RaisedMax > 0 && !rec.MaxGivenBack && h.cfg.Now().Sub(rec.FinishedAt) < restoreWindow {
			h.giveBackLater(ctx, f, rec, ver)
		}
		if !rec.TokenChangedAt.IsZero() && rec.Status.Final() {
			// A token change arrived during the last cycle: its own cycle starts now.
			err := h.start(ctx, f, start{id: "token-after-" + rec.ID, trigger: TriggerToken, all: true})
			if err != nil {
				return false, err
			}
			return h.Active(ctx, f.Name)
		}
		return false, nil
	}
	log := h.log.With("fleet", f.Name, "cycle_id", rec.ID, "message_id", messageID)
	if messageID != "" && rec.LastMessageID == messageID {
		h.m.steps.WithLabelValues(f.Name, "duplicate").Inc()
		return rec.HoldsCapacity(), nil
	}
	g, err := h.deps.Group.Describe(ctx, f.GroupName)
	if errors.Is(err, ErrGroupNotFound) {
		return true, messages.Reject("cycle step of fleet %s: %v", f.Name, err)
	}
	if err != nil {
		return true, fmt.Errorf("describing group %s of fleet %s: %w", f.GroupName, f.Name, err)
	}
	runners, err := h.check(ctx, f, g)
	if err != nil {
		return true, messages.Reject("cycle step of fleet %s: %v", f.Name, err)
	}
	if h.deps.Marks != nil {
		// A runner told to stop by a notice still answers, with its cumulative counters and its
		// configured slots, while its jobs finish: it serves nothing, and counting it as
		// serving could retire another serving instance below the floor.
		stopped, err := h.deps.Marks.IntakeStopped(ctx, f.GroupName)
		if err != nil {
			return true, fmt.Errorf("reading instance marks of fleet %s: %w", f.Name, err)
		}
		for id, why := range stopped {
			if r, ok := runners[id]; ok {
				r.Healthy, r.Stopped = false, why
				runners[id] = r
			}
		}
	}
	now := h.cfg.Now()
	before, prev := len(rec.Events), rec.Progress
	p := decide(now, &rec, g, runners)
	rec.Steps++
	rec.LastMessageID = messageID
	rec.UpdatedAt = now
	if p.finish != "" {
		rec.finish(now, p.finish, p.reason)
	} else if rec.Progress != prev || rec.Steps == 1 {
		rec.event(now, progressLine(rec.Progress))
	}
	claimed, err := h.save(ctx, f.Name, rec, ver)
	if err != nil {
		return true, fmt.Errorf("saving cycle of fleet %s: %w", f.Name, err)
	}
	if !claimed {
		h.m.steps.WithLabelValues(f.Name, "lost_race").Inc()
		log.InfoContext(ctx, "cycle step taken by another worker; not applying")
		return true, nil
	}
	h.m.steps.WithLabelValues(f.Name, "advanced").Inc()
	applyErrs, answers := h.apply(ctx, log, f, g, rec, p)
	h.noteAnswers(ctx, log, f, rec, ver+1, answers)
	if p.finish != "" {
		h.m.finished.WithLabelValues(f.Name, string(p.finish)).Inc()
		h.m.active.WithLabelValues(f.Name).Set(0)
	} else {
		h.m.active.WithLabelValues(f.Name).Set(1)
	}
	var texts []string
	for _, e := range rec.Events[min(before, len(rec.Events)):] {
		texts = append(texts, e.Text)
	}
	log.InfoContext(ctx, "cycle step",
		"step", rec.Steps, "status", rec.Status, "reason", rec.Reason,
		"desired_before", g.Desired, "set_desired", p.desired, "retire", p.retire,
		"replaced", rec.Progress.Replaced, "total", rec.Progress.Total, "draining", rec.Progress.Draining,
		"waiting_for_health", rec.Progress.WaitingForHealth, "serving", rec.Progress.Serving,
		"floor", rec.Progress.Floor, "rejected", rec.Progress.Rejected,
		"tail", rec.Tail, "events", texts, "apply_errors", applyErrs)
	return rec.HoldsCapacity(), nil
}

func progressLine(p Progress) string {
	return fmt.Sprintf("replaced %d of %d, draining %d, waiting for health %d, serving %d (floor %d)",
		p.Replaced, p.Total, p.Draining, p.WaitingForHealth, p.Serving, p.Floor)
}

// check reads the runners of the group's InService instances.
func (h *Handler) check(ctx context.Context, f FleetConfig, g GroupState) (map[string]Runner, error) {
	var targets []Target
	for _, m := range g.Members {
		if m.State.InService() {
			targets = append(targets, Target{InstanceID: m.ID, PrivateIP: m.PrivateIP})
		}
	}
	out := make(map[string]Runner, len(targets))
	if len(targets) == 0 {
		return out, nil
	}
	rs, err := h.deps.Health.Check(ctx, f.MetricsURL, targets)
	if err != nil {
		return nil, fmt.Errorf("checking runners: %w", err)
	}
	if len(rs) != len(targets) {
		return nil, fmt.Errorf("checking runners: %d results for %d targets", len(rs), len(targets))
	}
	for i, r := range rs {
		r.InstanceID = targets[i].InstanceID
		out[r.InstanceID] = r
	}
	return out, nil
}

// apply carries out a claimed step: raise the capacity, retire, and at the end undo what is left
// of a failed cycle's surge and restore MaxSize. Every call is tried even when an earlier one
// failed; failures are returned in words, and what Auto Scaling answered to each retirement
// (answerOf, "" when it accepted) by instance.
func (h *Handler) apply(ctx context.Context, log *slog.Logger, f FleetConfig, g GroupState, rec Record, p plan) ([]string, map[string]string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.ApplyTimeout)
	defer cancel()
	var failed []string
	answers := map[string]string{}
	fail := func(op string, err error) {
		h.m.applyErrs.WithLabelValues(f.Name, op).Inc()
		failed = append(failed, op+": "+err.Error())
		log.WarnContext(ctx, "applying cycle step", "op", op, "error", err.Error())
	}
	desired := g.Desired
	if p.desired > 0 {
		if err := h.deps.Group.SetCapacity(ctx, g.Name, p.desired, p.max); err != nil {
			fail("set_capacity", err)
		} else {
			desired = p.desired
		}
	}
	for _, id := range p.retire {
		if !slices.ContainsFunc(g.Members, func(m Member) bool { return m.ID == id }) {
			continue // never terminate what is not a member of this group
		}
		// A decrement below the group's MinSize is refused by Auto Scaling, for ever: a cycle
		// without surge at the group's minimum replaces in place instead (the group launches the
		// replacement now, as the next step would have asked it to).
		if desired-1 < g.Min {
			if err := h.deps.Group.ReplaceInstance(ctx, id); err != nil {
				answers[id] = answerOf(err)
				fail("terminate", fmt.Errorf("%s (in place, the group is at its MinSize %d): %w", id, g.Min, err))
				continue
			}
		} else {
			if err := h.deps.Group.TerminateInstance(ctx, id); err != nil {
				answers[id] = answerOf(err)
				fail("terminate", fmt.Errorf("%s: %w", id, err))
				continue
			}
			desired--
		}
		answers[id] = ""
		h.m.retired.WithLabelValues(f.Name).Inc()
	}
	// Every end gives back the surge: a failed cycle that kept it would leave a broken replacement
	// running, and MaxSize raised for good (the next cycle would record the raised value as the
	// original). The surge's room goes back when the cycle hands the capacity to scaling (on every
	// step of its tail until it can: a retirement retried in the tail may only now bring the
	// desired capacity down) or ends; a failed cycle first undoes what is left of its surge.
	if p.finish.Final() || rec.Tail {
		if err := h.giveBack(ctx, f, g, rec, p.undo); err != nil {
			fail("give_back", err)
		}
	}
	return failed, answers
}

// noteAnswers records in the cycle's record what Auto Scaling answered to the step's
// retirements when that is news (Record.noteAnswers: a refusal, or an ask again accepted), with a
// second write conditioned on the version the step's claim wrote. Lost or failed, it costs only
// the answer: the next ask notes it again.
func (h *Handler) noteAnswers(ctx context.Context, log *slog.Logger, f FleetConfig, rec Record, version int64, answers map[string]string) {
	if !rec.noteAnswers(answers) {
		return
	}
	if _, err := h.save(ctx, f.Name, rec, version); err != nil {
		log.WarnContext(ctx, "recording Auto Scaling's answers to the step's retirements", "error", err.Error())
	}
}

// maxAnswer bounds an answer kept in the record (Stuck.Error) and repeated in its reason.
const maxAnswer = 300

// answerOf is what the record keeps of an Auto Scaling error: the API's code and message (or the
// error's text), cut at maxAnswer, and never the encoded authorization message an AccessDenied
// may carry — AWS encodes it because it can hold privileged detail, meant for
// sts:DecodeAuthorizationMessage, not for a status page.
func answerOf(err error) string {
	text := err.Error()
	var apiErr interface {
		ErrorCode() string
		ErrorMessage() string
	}
	if errors.As(err, &apiErr) {
		text = apiErr.ErrorCode() + ": " + apiErr.ErrorMessage()
	}
	if i := strings.Index(strings.ToLower(text), "encoded authorization failure message"); i >= 0 {
		text = strings.TrimRight(text[:i], " .:") + " (encoded authorization message left out)"
	}
	if len(text) > maxAnswer {
		cut := maxAnswer
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = text[:cut] + "…"
	}
	return text
}

// giveBack gives back a cycle's surge when it hands the capacity to scaling (its tail) or ends,
// and on the ticks after it (restoreWindow) should that fail. A cycle that failed or was aborted
// first carries out the undo of its surge (planUndo), whatever MaxSize is: the group may have had
// room for the surge. A retirement that fails leaves more instances live than the plan counted,
// so the launches to cancel are counted again from what is live, never below it: Auto Scaling
// never chooses what goes.
//
// Then MaxSize goes back, unless someone changed it meanwhile (theirs, logged).
func (h *Handler) giveBack(ctx context.Context, f FleetConfig, g GroupState, rec Record, u undo) error {
	desired, live := g.Desired, liveMembers(g)
	var errs []error
	for _, s := range u.steps {
		if s.id == "" {
			if to := max(live, rec.Desired, g.Min); to < desired {
				if err := h.deps.Group.SetCapacity(ctx, g.Name, to, 0); err != nil {
					errs = append(errs, fmt.Errorf("cancelling the surge's launches not made (desired %d → %d): %w", desired, to, err))
				} else {
					desired = to
				}
			}
			continue
		}
		if err := h.deps.Group.TerminateInstance(ctx, s.id); err != nil {
			errs = append(errs, fmt.Errorf("retiring %s (%s): %w", s.id, s.why, err))
			continue
		}
		desired--
		live--
		h.log.InfoContext(ctx, "cycle ended: giving back the surge", "fleet", f.Name, "group", g.Name, "instance_id", s.id, "why", s.why)
	}
	if rec.RaisedMax > 0 && g.Max > rec.OriginalMax && g.Max != rec.RaisedMax {
		h.log.WarnContext(ctx, "cycle: MaxSize changed during the cycle, left as it is",
			"fleet", f.Name, "group", g.Name, "max_size", g.Max, "raised_to", rec.RaisedMax, "original_max", rec.OriginalMax)
	}
	if !restorable(g, rec) {
		return errors.Join(errs...)
	}
	if desired > rec.OriginalMax {
		h.log.InfoContext(ctx, "cycle: MaxSize stays raised until the desired capacity is back at the original MaxSize",
			"fleet", f.Name, "group", g.Name, "desired", desired, "max_size", g.Max, "original_max", rec.OriginalMax)
		return errors.Join(errs...)
	}
	if err := h.deps.Group.RestoreMax(ctx, g.Name, rec.OriginalMax); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// oldInService lists the cycle's old instances still in service and not retired, oldest first.
func oldInService(rec Record, g GroupState) []string {
	old, retired := set(rec.Old), set(rec.Retired)
	var ms []Member
	for _, m := range g.Members {
		if old[m.ID] && !retired[m.ID] && m.State.InService() {
			ms = append(ms, m)
		}
	}
	slices.SortFunc(ms, func(a, b Member) int { return cmp.Or(a.LaunchedAt.Compare(b.LaunchedAt), cmp.Compare(a.ID, b.ID)) })
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// giveBackLater gives back the surge's MaxSize on a tick after the cycle ended, once the desired
// capacity allows (the cycle ended while a surge instance kept it above the original). Once
// MaxSize is back, or is no longer the surge's (someone changed it), the record says so and
// later ticks look no more.
func (h *Handler) giveBackLater(ctx context.Context, f FleetConfig, rec Record, ver int64) {
	g, err := h.deps.Group.Describe(ctx, f.GroupName)
	if err != nil {
		return
	}
	if restorable(g, rec) {
		if g.Desired > rec.OriginalMax {
			return // not yet
		}
		if err := h.deps.Group.RestoreMax(ctx, f.GroupName, rec.OriginalMax); err != nil {
			h.log.WarnContext(ctx, "restoring MaxSize after the cycle", "fleet", f.Name, "error", err.Error())
			return
		}
		h.log.InfoContext(ctx, "cycle's surge MaxSize given back", "fleet", f.Name, "group", f.GroupName, "max_size", rec.OriginalMax)
	}
	rec.MaxGivenBack = true
	if _, err := h.save(ctx, f.Name, rec, ver); err != nil { // a lost write only means one more look
		h.log.WarnContext(ctx, "recording the surge's MaxSize given back", "fleet", f.Name, "error", err.Error())
	}
}

// restoreWindow is how long after a cycle ends its ticks still try to give back the surge's
// MaxSize (giveBack), once the desired capacity allows.
const restoreWindow = 24 * time.Hour

// unservedReplacements lists the cycle's replacements in the group that never served (not in
// rec.Healthy), booting or in service, not leaving.
func unservedReplacements(rec Record, g GroupState) []string {
	var out []string
	for _, m := range g.Members {
		if _, ours := rec.Seen[m.ID]; !ours || slices.Contains(rec.Healthy, m.ID) || m.State.Leaving() {
			continue
		}
		out = append(out, m.ID)
	}
	slices.Sort(out)
	return out
}

// ParameterChange starts a cycle of every instance of each fleet whose token parameter changed
// (Create or Update), or only reports it (OnTokenReport). The cycle's id derives from the event's
// id, so a redelivered event starts nothing twice. A Delete is reported: the fleet cannot launch
// working runners until the parameter is back.
func (h *Handler) ParameterChange(ctx context.Context, p *messages.ParameterChange, messageID string) error {
	var errs []error
	for _, f := range h.fleetsOfParameter(p.Name) {
		log := h.log.With("fleet", f.Name, "operation", p.Operation, "message_id", messageID)
		switch {
		case p.Operation == messages.ParameterDelete:
			log.WarnContext(ctx, "the fleet's token parameter was deleted: new instances cannot register")
			h.m.tokens.WithLabelValues(f.Name, "report").Inc()
		case p.Operation != messages.ParameterCreate && p.Operation != messages.ParameterUpdate:
			log.InfoContext(ctx, "token parameter event ignored")
		case f.OnTokenChange == OnTokenReport:
			log.WarnContext(ctx, "the fleet's token parameter changed; on_token_change is report: no cycle started. Runners keep the old token until replaced: publisher cycle --fleet "+f.Name+" --all")
			h.m.tokens.WithLabelValues(f.Name, "report").Inc()
		default:
			h.m.tokens.WithLabelValues(f.Name, "cycle").Inc()
			if err := h.start(ctx, f, start{id: "token-" + messageID, trigger: TriggerToken, all: true}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (h *Handler) fleetsOfParameter(name string) []FleetConfig {
	norm := func(s string) string {
		if i := strings.Index(s, ":parameter/"); i >= 0 {
			s = s[i+len(":parameter/"):]
		}
		return strings.TrimPrefix(s, "/")
	}
	var out []FleetConfig
	for _, f := range h.cfg.Fleets {
		if f.TokenParameter != "" && norm(f.TokenParameter) == norm(name) {
			out = append(out, f)
		}
	}
	return out
}
