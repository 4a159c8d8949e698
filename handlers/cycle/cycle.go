package cycle

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	// DefaultApplyTimeout bounds the Auto Scaling calls of one claimed step — a few calls, each
	// answering in well under a second when AWS is healthy, with room for the SDK's retries — on
	// a context of its own, so a claimed step is applied even if the message's context ends. It
	// is counted from before the claim is written, and a claim lasts twice as long
	// (DefaultClaimFor): the calls of a replica paused mid-step die before any other step can
	// begin. Well under the fleet's tick (a minute), so the claim of a replica that died
	// mid-step has lapsed by the next tick.
	DefaultApplyTimeout = 20 * time.Second
	// DefaultClaimFor is how long a step's claim holds the fleet: twice the apply timeout, the
	// margin covering a late answer to a call sent just before its deadline and the replicas'
	// clock skew (a claim's end is read by another replica's clock).
	DefaultClaimFor = 2 * DefaultApplyTimeout
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
	Fleets []FleetConfig
	// ApplyTimeout bounds the Auto Scaling calls of one claimed step, counted from before its
	// claim is written.
	ApplyTimeout time.Duration
	// ClaimFor is how long a step's claim holds the fleet against every other step; at least
	// twice ApplyTimeout (the default), so a claimed step's calls always end before its claim.
	ClaimFor      time.Duration
	MaxCommandAge time.Duration
	// Owner names this replica in claims (Record.Claim), so that a claim in the record, in a log
	// line or in publisher status leads to a task: default DefaultOwner.
	Owner string
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
	if c.ClaimFor == 0 {
		c.ClaimFor = 2 * c.ApplyTimeout
	}
	if c.Owner == "" {
		c.Owner = DefaultOwner()
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
	if c.ApplyTimeout < 0 || c.ClaimFor < 0 || c.MaxCommandAge < 0 {
		errs = append(errs, errors.New("cycle: timeouts must not be negative"))
	}
	if c.ClaimFor > 0 && c.ClaimFor < 2*c.ApplyTimeout {
		errs = append(errs, fmt.Errorf("cycle: claim_for %s must be at least twice the apply timeout %s", c.ClaimFor, c.ApplyTimeout))
	}
	return errors.Join(errs...)
}

// DefaultOwner names this replica in claims (Config.Owner): the ECS task it runs in — the last
// path segment of $ECS_CONTAINER_METADATA_URI_V4 (the task's id and its container's), read
// from the environment, with no call to the endpoint — or else its host name and process id.
func DefaultOwner() string {
	if uri := strings.TrimRight(os.Getenv("ECS_CONTAINER_METADATA_URI_V4"), "/"); uri != "" {
		if seg := uri[strings.LastIndexByte(uri, '/')+1:]; seg != "" && !strings.Contains(seg, ":") {
			return "ecs-task/" + seg
		}
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return host + ":" + strconv.Itoa(os.Getpid())
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
// and the record's conditional writes and claims make a second replica harmless anyway.
type Handler struct {
	cfg    Config
	deps   Deps
	log    *slog.Logger
	m      *metrics
	fleets map[string]FleetConfig
	// sleep waits d, or until ctx ends (its error then): a cycle command waiting out a claim
	// (waitOut). A timer; tests move their clock instead.
	sleep func(ctx context.Context, d time.Duration) error

	// lookMu guards lookLogs: per fleet, the reason and time of the last log line saying the
	// worker could not look (logCannotLook).
	lookMu   sync.Mutex
	lookLogs map[string]lookLog
}

// lookLog is the last log line of a fleet's cycle saying the worker could not look.
type lookLog struct {
	reason string
	at     time.Time
}

// lookLogEvery is how often a cycle whose worker keeps failing to look logs it again (it does at
// once when a spell begins and whenever the reason changes): a tick a minute would otherwise log a
// line a minute for as long as an IAM mistake or a throttling storm lasts.
const lookLogEvery = 5 * time.Minute

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
	h := &Handler{cfg: cfg, deps: deps, log: logger.With("handler", "cycle"), m: m, fleets: map[string]FleetConfig{}, sleep: sleep,
		lookLogs: map[string]lookLog{}}
	for _, f := range cfg.Fleets {
		h.fleets[f.Name] = f
	}
	return h, nil
}

// Owner is the name this replica's claims carry (Config.Owner).
func (h *Handler) Owner() string { return h.cfg.Owner }

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
// surge and max-unavailable both 0 are rejected (permanent). The claim of a step in flight is
// waited out in the handler (at most ClaimFor), not returned as an error. Errors reading or
// writing the state or describing the group are transient.
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
	// claimWaits counts the claims this start has waited out (at most maxClaimWaits).
	claimWaits int
}

// maxClaimWaits bounds the claims a cycle command waits out before it fails (transient). One
// wait ends a claim (waitOut waits until its end); a second covers a claim whose end a skewed
// clock put more than ClaimFor ahead, or one another step took meanwhile. The handler's timeout
// ends a longer wait anyway.
const maxClaimWaits = 2

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
	claim := rec.Claim
	claimed := claim.holds(h.cfg.Now())
	if rec.Active() || rec.UndoPending || claimed && s.trigger == TriggerToken {
		if s.trigger == TriggerToken {
			// The token changed under a running cycle: instances it launched may hold either
			// token, so a token cycle of everything follows when this one ends (or, once ended,
			// when the undo of its surge is done). Under a step in flight (its claim holds the
			// fleet) the token cycle is recorded the same way, and the first tick after the claim
			// starts it (Advance): an error here would be retried while the claim holds, then
			// nacked, and past the queue's maxReceiveCount the change would be lost to the DLQ.
			// The write changes nothing outside the table: a step in flight keeps its claim.
			rec.TokenChangedAt = h.cfg.Now()
			text := "token parameter changed: a cycle of every instance follows this one"
			if !rec.Active() && !rec.UndoPending {
				text = fmt.Sprintf("token parameter changed: a cycle of every instance starts on the first tick after the step in flight (claimed by %s until %s)",
					claim.Owner, claim.Until.UTC().Format(time.RFC3339))
			}
			rec.event(rec.TokenChangedAt, text)
			ok, err := h.save(ctx, f.Name, rec, ver)
			if err != nil {
				return fmt.Errorf("saving cycle of fleet %s: %w", f.Name, err)
			}
			if !ok {
				return fmt.Errorf("saving cycle of fleet %s: lost a conditional write; retrying", f.Name)
			}
			h.m.tokens.WithLabelValues(f.Name, "deferred").Inc()
			log.WarnContext(ctx, "token parameter changed during a cycle or a step in flight; a token cycle follows it", "running_cycle", rec.ID, "claimed", claimed)
			return nil
		}
		if !rec.Active() {
			// Refused rather than retried: retries would hold the fleet's message group, and with
			// it the ticks that carry the undo out.
			return messages.Reject("cycle %s of fleet %s: cycle %s %s and the undo of its surge is not done yet (ticks take it up again until %s): send the cycle again after",
				s.id, f.Name, rec.ID, rec.Status, rec.UndoUntil().Format(time.RFC3339))
		}
		return messages.Reject("cycle %s of fleet %s: cycle %s is in progress since %s; abort it first (publisher cycle --fleet %s --abort)",
			s.id, f.Name, rec.ID, rec.StartedAt.Format(time.RFC3339), f.Name)
	}
	if claimed {
		// A step in flight (the surge's MaxSize given back after the last cycle) calls Auto
		// Scaling until its claim ends: a cycle started now could have its first step undone. The
		// command waits the claim out — at most ClaimFor, well inside the handler's timeout — and
		// reads the record again. An error would be retried at once while the claim holds, then
		// nacked, and past the queue's maxReceiveCount SQS would move the command to the DLQ by
		// itself, without a reason. Only a message whose deadline comes first fails (transient:
		// the next attempt waits for what is left of the claim).
		if s.claimWaits >= maxClaimWaits {
			return fmt.Errorf("cycle %s of fleet %s: a step claimed by %s holds the fleet until %s, after %d waits for claims; retrying",
				s.id, f.Name, claim.Owner, claim.Until.Format(time.RFC3339Nano), s.claimWaits)
		}
		if err := h.waitOut(ctx, claim); err != nil {
			return fmt.Errorf("cycle %s of fleet %s: a step claimed by %s holds the fleet until %s: %w; retrying",
				s.id, f.Name, claim.Owner, claim.Until.Format(time.RFC3339Nano), err)
		}
		s.claimWaits++
		return h.start(ctx, f, s) // read the record again: the step in flight wrote it, or lapsed
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
		TargetTemplate: g.CurrentTemplate, TargetVersion: g.CurrentVersion, Desired: g.Desired, OriginalMax: g.Max,
	}
	leftover := surgeLeft(rec, g)
	if leftover {
		next.Desired, next.OriginalMax, next.RaisedMax = min(g.Desired, rec.OriginalMax), rec.OriginalMax, rec.RaisedMax
	}
	for _, m := range g.Members {
		if m.State.Leaving() {
			continue
		}
		// Old: launched from another launch template or version than a launch uses now (or from
		// a launch configuration, when the group now has a template).
		if s.all || (g.hasTemplate() && !g.Current(m)) {
			next.Old = append(next.Old, m.ID)
		} else {
			next.Kept = append(next.Kept, m.ID)
		}
	}
	next.Surge = min(surge, len(next.Old))
	next.Progress = Progress{Total: len(next.Old), Floor: max(next.Desired-mu, 0)}
	what := fmt.Sprintf("%d of %d instances not on %s", len(next.Old), len(next.Old)+len(next.Kept), g.launchText())
	switch {
	case s.all:
		what = fmt.Sprintf("all %d instances", len(next.Old))
	case !g.hasTemplate():
		what = fmt.Sprintf("none of %d instances: the group has no launch template (a launch configuration), and only a cycle of every instance (--all) replaces them", len(next.Kept))
	}
	next.event(now, fmt.Sprintf("cycle started (%s): replacing %s; desired %d, surge %d, max-unavailable %d",
		s.trigger, what, next.Desired, next.Surge, mu))
	if leftover {
		next.event(now, fmt.Sprintf("cycle %s's surge still holds MaxSize at %d (desired %d): this cycle ends at desired %d and gives MaxSize back to %d",
			rec.ID, g.Max, g.Desired, next.Desired, next.OriginalMax))
	}
	if !rec.TokenChangedAt.IsZero() && rec.Status.Final() && s.trigger != TriggerToken {
		// The token changed during the last cycle, or under a step in flight after it, and its
		// token cycle has not started yet: this cycle takes the change over rather than drop it.
		if s.all {
			next.event(now, fmt.Sprintf("the token parameter changed during cycle %s: this cycle of every instance takes the change up", rec.ID))
		} else {
			next.TokenChangedAt = rec.TokenChangedAt
			next.event(now, fmt.Sprintf("the token parameter changed during cycle %s: a cycle of every instance follows this one", rec.ID))
		}
	}
	if len(next.Old) == 0 {
		why := "every instance runs " + g.launchText()
		if !g.hasTemplate() {
			why = "the group has no launch template: only a cycle of every instance (--all) replaces its instances"
		}
		next.finish(now, StatusSucceeded, "nothing to replace: "+why)
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
		"desired", next.Desired, "surge", next.Surge, "max_unavailable", mu, "target_template", g.CurrentTemplate, "target_version", g.CurrentVersion, "all", s.all)
	if next.Status.Final() {
		h.m.finished.WithLabelValues(f.Name, string(next.Status)).Inc()
		return nil
	}
	h.m.active.WithLabelValues(f.Name).Set(1)
	_, err = h.Advance(ctx, f.Name, "") // the command takes its first step at once
	return err
}

// waitOut waits until the claim c has ended by this replica's clock — at most ClaimFor, however
// far ahead a skewed clock put its end — or until ctx ends (its error).
func (h *Handler) waitOut(ctx context.Context, c *Claim) error {
	d := min(c.Until.Sub(h.cfg.Now()), h.cfg.ClaimFor)
	if d <= 0 {
		return nil
	}
	h.log.InfoContext(ctx, "cycle: a step in flight holds the fleet; the cycle command waits for its claim to end", "claimed_by", c.Owner, "until", c.Until, "wait", d.String())
	return h.sleep(ctx, d)
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
		rec.UndoPending = !rec.Tail // in the tail the capacity is scaling's: nothing to undo
		// The abort changes nothing outside the table: it is written even while a step in flight
		// holds the fleet, and keeps that step's claim. The undo is a step of its own.
		ok, err := h.save(ctx, f.Name, rec, ver)
		if err != nil {
			return fmt.Errorf("saving cycle of fleet %s: %w", f.Name, err)
		}
		if ok {
			h.m.finished.WithLabelValues(f.Name, string(StatusAborted)).Inc()
			h.m.active.WithLabelValues(f.Name).Set(0)
			h.log.InfoContext(ctx, "cycle aborted", "fleet", f.Name, "cycle_id", rec.ID, "command_id", c.ID, "issuer", c.Issuer)
			// The undo of the surge now, under a claim of its own; while a step in flight holds
			// the fleet, on the first tick after its claim ends. Either way the abort stands.
			if _, err := h.Advance(ctx, f.Name, ""); err != nil {
				h.log.WarnContext(ctx, "cycle aborted: the undo of its surge is left to the next ticks", "fleet", f.Name, "cycle_id", rec.ID, "error", err.Error())
			}
			return nil
		}
	}
	return fmt.Errorf("aborting cycle of fleet %s: lost %d conditional writes in a row", f.Name, saveRetries)
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

// save writes rec with this code's schema, conditioned on version. A claim that no longer holds
// is dropped: one that holds is a step's in flight (this one's, or another's kept by a write that
// calls nothing: an abort, a token change).
func (h *Handler) save(ctx context.Context, fleetName string, rec Record, version int64) (bool, error) {
	rec.Schema = recordSchema
	if !rec.Claim.holds(h.cfg.Now()) {
		rec.Claim = nil
	}
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
// its tail, when only drains are left, or, once it failed or was aborted, until the undo of its
// surge is done or left (Record.HoldsCapacity); and a record of a newer schema while a newer
// replica carries it on (holding).
func (h *Handler) Active(ctx context.Context, fleetName string) (bool, error) {
	why, err := h.Holding(ctx, fleetName)
	return why != "", err
}

// Holding is the scale handler's Hold: it says in words why a cycle of the fleet owns its
// desired capacity now (see Active), "" when none does. While it says so, ticks still decide
// and report but resize nothing.
func (h *Handler) Holding(ctx context.Context, fleetName string) (string, error) {
	rec, _, err := h.deps.State.Load(ctx, fleetName)
	if err != nil {
		return "", fmt.Errorf("loading cycle of fleet %s: %w", fleetName, err)
	}
	return h.holding(rec), nil
}

// newerHoldFor is how long after its last write a record of a newer schema still holds the
// capacity for this worker (holding). A newer replica carrying a cycle on writes its record at
// every step, a tick a minute (some ticks reach older replicas during a rolling deploy): ten
// ticks without a write mean no newer replica is left (a rollback), and a record this worker can
// neither read fully nor step must not hold scaling for ever.
const newerHoldFor = 10 * time.Minute

// holding says why rec holds the fleet's capacity ("" when it does not). A record of a newer
// schema (a rolling deploy) may hold it in ways this worker cannot read — the newer worker's
// own undo, say: while a newer replica writes it (newerHoldFor), it holds, whatever the fields
// this worker knows say.
func (h *Handler) holding(rec Record) string {
	now := h.cfg.Now()
	switch {
	case rec.Schema > recordSchema && (rec.HoldsCapacity() || now.Sub(rec.UpdatedAt) < newerHoldFor):
		return fmt.Sprintf("cycle %s was written by a newer worker (record schema %d, this worker knows %d) %s ago; it owns the desired capacity while a newer replica carries it on",
			rec.ID, rec.Schema, recordSchema, now.Sub(rec.UpdatedAt).Round(time.Second))
	case rec.Active() && !rec.Tail:
		return fmt.Sprintf("cycle %s is in progress and owns the desired capacity", rec.ID)
	case rec.UndoPending:
		return fmt.Sprintf("cycle %s %s; the undo of its surge is pending (ticks take it up again until %s) and owns the desired capacity",
			rec.ID, rec.Status, rec.UndoUntil().UTC().Format(time.RFC3339))
	}
	return ""
}

// Advance takes one step of the fleet's cycle in progress, if any, and reports whether the cycle
// owns the fleet's capacity after it (Active). messageID dedupes redeliveries ("" never dedupes).
// A step that calls Auto Scaling claims the fleet with its conditional write, before any call
// (claim): a step lost to another writer does nothing, and while a claim holds, no step is taken
// (this tick does nothing; the next one takes the step). A failed Auto Scaling call is logged and
// counted; the next step decides again from what the group then is. Once the cycle failed or was
// aborted, a step carries out what is left of the undo of its surge (undoLater).
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
		// and holds the capacity while a newer replica carries the record on (holding); the next
		// tick may reach a newer replica.
		h.log.WarnContext(ctx, err.Error())
		return h.holding(rec) != "", nil
	}
	log := h.log.With("fleet", f.Name, "cycle_id", rec.ID, "message_id", messageID)
	if c := rec.Claim; c.holds(h.cfg.Now()) {
		// A step in flight may still call Auto Scaling: deciding now, from a group it is about
		// to change, could undo what it does or have it undo ours. Not an error: the claim ends
		// within ClaimFor, and the next tick takes the step.
		h.m.steps.WithLabelValues(f.Name, "claimed").Inc()
		log.InfoContext(ctx, "cycle: a step in flight holds the fleet; no step this tick", "claimed_by", c.Owner, "until", c.Until)
		return rec.HoldsCapacity(), nil
	}
	if !rec.Active() {
		h.m.active.WithLabelValues(f.Name).Set(0)
		if rec.UndoPending {
			return h.undoLater(ctx, log, f, rec, ver)
		}
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
	if messageID != "" && rec.LastMessageID == messageID {
		h.m.steps.WithLabelValues(f.Name, "duplicate").Inc()
		return rec.HoldsCapacity(), nil
	}
	g, runners, err := h.observe(ctx, f)
	if err != nil {
		if !messages.IsPermanent(err) {
			h.couldNotObserve(ctx, log, f, rec, ver, err)
		}
		return true, err
	}
	now := h.cfg.Now()
	before, prev, blindBefore := len(rec.Events), rec.Progress, rec.BlindSince
	p := decide(now, &rec, g, runners)
	h.noteLooks(ctx, log, f, now, rec, blindBefore, runners)
	rec.Steps++
	rec.LastMessageID = messageID
	rec.UpdatedAt = now
	if p.finish != "" {
		rec.finish(now, p.finish, p.reason)
		rec.UndoPending = len(p.undo.steps) > 0
	} else if rec.Progress != prev || rec.Steps == 1 {
		rec.event(now, progressLine(rec.Progress))
	}
	var applyErrs []string
	if !p.calls(rec, g) {
		// Nothing outside the table (waiting for replacements or drains, most steps): one
		// conditional write, no claim.
		saved, err := h.save(ctx, f.Name, rec, ver)
		if err != nil {
			return true, fmt.Errorf("saving cycle of fleet %s: %w", f.Name, err)
		}
		if !saved {
			h.m.steps.WithLabelValues(f.Name, "lost_race").Inc()
			log.InfoContext(ctx, "cycle step taken by another worker")
			return true, nil
		}
	} else {
		stepCtx, cancel, claimed, err := h.claim(ctx, f.Name, &rec, ver)
		if err != nil {
			return true, fmt.Errorf("claiming a step of the cycle of fleet %s: %w", f.Name, err)
		}
		if !claimed {
			h.m.steps.WithLabelValues(f.Name, "lost_race").Inc()
			log.InfoContext(ctx, "cycle step taken by another worker; not applying")
			return true, nil
		}
		var answers map[string]string
		var undone bool
		applyErrs, answers, undone = h.apply(stepCtx, log, f, g, rec, p)
		cancel()
		rec.noteAnswers(answers)
		if undone {
			rec.UndoPending = false
		}
		h.release(ctx, log, f.Name, rec, ver+1)
	}
	h.m.steps.WithLabelValues(f.Name, "advanced").Inc()
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
		"tail", rec.Tail, "events", texts, "apply_errors", applyErrs, "undo_pending", rec.UndoPending)
	return rec.HoldsCapacity(), nil
}

// couldNotObserve handles a step that could not describe the group or read the marks of its
// instances: the worker's failure (Group.Describe's error is never the group's, but for a group
// that does not exist), which says nothing about the fleet. It is logged (logCannotLook) and
// counted, and the first such failure after a step that looked opens a spell of not looking in
// the record (Record.cannotLook: one write, the first spell of the cycle told in its events), so
// that the cycle's deadlines are extended by it when a step decides again. The step is retried as
// before: its error goes back to the message.
func (h *Handler) couldNotObserve(ctx context.Context, log *slog.Logger, f FleetConfig, rec Record, ver int64, err error) {
	now := h.cfg.Now()
	reason := workerReason(err)
	h.m.lookFailures.WithLabelValues(f.Name, reason).Inc()
	h.logCannotLook(ctx, log, f.Name, now, reason, "cycle: the worker could not describe the fleet's group; no step until it can",
		"error", err.Error(), "blind_since", cmp.Or(rec.BlindSince, rec.UpdatedAt))
	opened, first := rec.cannotLook(now)
	if !opened {
		return // the spell is recorded already: no write a tick while it lasts
	}
	if first {
		rec.event(now, fmt.Sprintf("the worker could not describe the group (%s: %s): its own failure, not the fleet's; no step until it can. "+
			"The cycle's deadlines are extended by the time the worker cannot look, up to %s in all", reason, answerOf(err), rec.HealthTimeout))
	}
	rec.UpdatedAt = now
	if _, err := h.save(ctx, f.Name, rec, ver); err != nil { // a lost race: another writer stepped meanwhile
		log.WarnContext(ctx, "cycle: recording that the worker could not look", "error", err.Error())
	}
}

// noteLooks logs and counts a step's looks the worker could not make (runners whose Worker is
// set), and the end of a spell of them (blindBefore: the record's BlindSince before the step).
func (h *Handler) noteLooks(ctx context.Context, log *slog.Logger, f FleetConfig, now time.Time, rec Record, blindBefore time.Time, runners map[string]Runner) {
	var ids []string
	reason := ""
	for id, r := range runners {
		if r.Worker == "" {
			continue
		}
		h.m.lookFailures.WithLabelValues(f.Name, r.Worker).Inc()
		ids = append(ids, id)
		if reason == "" || r.Worker < reason { // one reason for the line: the same for every step alike
			reason = r.Worker
		}
	}
	slices.Sort(ids)
	switch {
	case rec.Progress.Unlooked > 0:
		detail := runners[ids[0]].Reason
		h.logCannotLook(ctx, log, f.Name, now, reason, fmt.Sprintf("cycle: the worker could not look at %d runner(s): %s; they count neither as healthy nor as unhealthy", len(ids), reason),
			"instance_ids", ids, "error", detail, "blind_since", rec.BlindSince, "deadlines_extended_by", rec.extension(now).String())
	case !blindBefore.IsZero() && rec.BlindSince.IsZero():
		h.lookMu.Lock()
		delete(h.lookLogs, f.Name)
		h.lookMu.Unlock()
		log.InfoContext(ctx, "cycle: the worker can look again", "could_not_look_for", now.Sub(blindBefore).Round(time.Second).String(),
			"deadlines_extended_by", rec.extension(now).String())
	}
}

// logCannotLook logs that the worker could not look, at once when a spell begins or its reason
// changes, then at most every lookLogEvery per fleet: at ERROR when it takes a person to fix (the
// worker's role, its network, its metrics URL template), at WARN when it passes by itself
// (throttling, a deadline, an AWS error).
func (h *Handler) logCannotLook(ctx context.Context, log *slog.Logger, fleetName string, now time.Time, reason, msg string, attrs ...any) {
	h.lookMu.Lock()
	last, ok := h.lookLogs[fleetName]
	due := !ok || last.reason != reason || now.Sub(last.at) >= lookLogEvery
	if due {
		h.lookLogs[fleetName] = lookLog{reason: reason, at: now}
	}
	h.lookMu.Unlock()
	if !due {
		return
	}
	level := slog.LevelWarn
	switch reason {
	case WorkerAccessDenied, WorkerURLTemplate, WorkerNetwork:
		level = slog.LevelError
	}
	log.Log(ctx, level, msg, append([]any{"reason", reason}, attrs...)...)
}

// claim writes rec with this replica's claim on the fleet (Record.Claim, ClaimFor from now),
// conditioned on version, and returns the context the claimed step's Auto Scaling calls run on.
// It returns false when another writer got there first (nothing is to be called then).
//
// The calls' context is detached from the message's cancellation — a worker shutting down must
// not cut a claimed step in half — and its deadline is ApplyTimeout after the step began, read
// (like the claim's end) before the claim is written: however long the write takes (SDK retries
// of a throttled write can take seconds), the calls end before the claim does. A replica paused
// after its claim (SIGSTOP, a long GC, a slow network) finds, when it resumes, its context
// expired: it cannot make a call after another replica's later step, which begins only once the
// claim has ended. The write itself runs on that context too.
func (h *Handler) claim(ctx context.Context, fleetName string, rec *Record, version int64) (context.Context, context.CancelFunc, bool, error) {
	began := time.Now() // real time: the calls' deadline; the claim's end is by the handler's clock
	rec.Claim = &Claim{Owner: h.cfg.Owner, Until: h.cfg.Now().Add(h.cfg.ClaimFor)}
	stepCtx, cancel := context.WithDeadline(context.WithoutCancel(ctx), began.Add(h.cfg.ApplyTimeout))
	ok, err := h.save(stepCtx, fleetName, *rec, version)
	if err != nil || !ok {
		cancel()
		return nil, nil, false, err
	}
	return stepCtx, cancel, true, nil
}

// release ends a claimed step: it writes rec — with what Auto Scaling answered — without the
// claim, conditioned on the version the claim wrote, on a bounded context of its own. Lost (an
// abort or a token change was written meanwhile) or failed, it costs only what the step found
// out (the next step finds it again) and the claim lapses at its end.
func (h *Handler) release(ctx context.Context, log *slog.Logger, fleetName string, rec Record, version int64) {
	rec.Claim = nil
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.ApplyTimeout)
	defer cancel()
	ok, err := h.save(ctx, fleetName, rec, version)
	switch {
	case err != nil:
		log.WarnContext(ctx, "releasing the claimed cycle step (it lapses by itself)", "error", err.Error())
	case !ok:
		log.InfoContext(ctx, "the claimed cycle step's record was written meanwhile (an abort, a token change): its claim lapses by itself")
	}
}

// observe describes the fleet's group and reads its runners; a runner a spot or rebalance notice
// stopped serves nothing.
func (h *Handler) observe(ctx context.Context, f FleetConfig) (GroupState, map[string]Runner, error) {
	g, err := h.deps.Group.Describe(ctx, f.GroupName)
	if errors.Is(err, ErrGroupNotFound) {
		return g, nil, messages.Reject("cycle step of fleet %s: %v", f.Name, err)
	}
	if err != nil {
		return g, nil, fmt.Errorf("describing group %s of fleet %s: %w", f.GroupName, f.Name, err)
	}
	runners, err := h.check(ctx, f, g)
	if err != nil {
		return g, nil, messages.Reject("cycle step of fleet %s: %v", f.Name, err)
	}
	if h.deps.Marks != nil {
		// A runner told to stop by a notice still answers, with its cumulative counters and its
		// configured slots, while its jobs finish: it serves nothing, and counting it as
		// serving could retire another serving instance below the floor.
		stopped, err := h.deps.Marks.IntakeStopped(ctx, f.GroupName)
		if err != nil {
			return g, nil, fmt.Errorf("reading instance marks of fleet %s: %w", f.Name, err)
		}
		for id, why := range stopped {
			if r, ok := runners[id]; ok {
				// Known not to serve, whether or not the worker could look at its runner.
				r.Healthy, r.Stopped, r.Worker = false, why, ""
				runners[id] = r
			}
		}
	}
	return g, runners, nil
}

func progressLine(p Progress) string {
	line := fmt.Sprintf("replaced %d of %d, draining %d, waiting for health %d, serving %d (floor %d)",
		p.Replaced, p.Total, p.Draining, p.WaitingForHealth, p.Serving, p.Floor)
	if p.Unlooked > 0 {
		line += fmt.Sprintf(", the worker could not look at %d", p.Unlooked)
	}
	return line
}

// check reads the runners of the group's InService instances.
func (h *Handler) check(ctx context.Context, f FleetConfig, g GroupState) (map[string]Runner, error) {
	var targets []Target
	for _, m := range g.Members {
		if m.State.InService() {
			targets = append(targets, Target{InstanceID: m.ID, PrivateIP: m.PrivateIP, AddressErr: g.AddressErr})
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

// apply carries out a claimed step on its claim's context (claim): raise the capacity, retire,
// and at the end undo what is left of a failed cycle's surge and restore MaxSize. Every call is
// tried even when an earlier one failed; failures are returned in words, what Auto Scaling
// answered to each retirement (answerOf, "" when it accepted) by instance, and whether the undo
// of the surge, if the step had one, was carried out in full.
func (h *Handler) apply(ctx context.Context, log *slog.Logger, f FleetConfig, g GroupState, rec Record, p plan) ([]string, map[string]string, bool) {
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
	undone := true
	if p.finish.Final() || rec.Tail {
		var err error
		if undone, err = h.giveBack(ctx, f, g, rec, p.undo); err != nil {
			fail("give_back", err)
		}
	}
	return failed, answers, undone
}

// calls reports whether applying p (apply) calls Auto Scaling: such a step is claimed first.
func (p plan) calls(rec Record, g GroupState) bool {
	if p.desired > 0 || len(p.retire) > 0 {
		return true
	}
	if !p.finish.Final() && !rec.Tail {
		return false
	}
	return len(p.undo.steps) > 0 || restorable(g, rec) && g.Desired <= rec.OriginalMax
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
// never chooses what goes. undone reports whether every step of the undo was carried out (what
// is not is taken up again by later ticks: Record.UndoPending).
//
// Then MaxSize goes back, unless someone changed it meanwhile (theirs, logged).
func (h *Handler) giveBack(ctx context.Context, f FleetConfig, g GroupState, rec Record, u undo) (undone bool, err error) {
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
	undone = len(errs) == 0
	if rec.RaisedMax > 0 && g.Max > rec.OriginalMax && g.Max != rec.RaisedMax {
		h.log.WarnContext(ctx, "cycle: MaxSize changed during the cycle, left as it is",
			"fleet", f.Name, "group", g.Name, "max_size", g.Max, "raised_to", rec.RaisedMax, "original_max", rec.OriginalMax)
	}
	if !restorable(g, rec) {
		return undone, errors.Join(errs...)
	}
	if desired > rec.OriginalMax {
		h.log.InfoContext(ctx, "cycle: MaxSize stays raised until the desired capacity is back at the original MaxSize",
			"fleet", f.Name, "group", g.Name, "desired", desired, "max_size", g.Max, "original_max", rec.OriginalMax)
		return undone, errors.Join(errs...)
	}
	if err := h.deps.Group.RestoreMax(ctx, g.Name, rec.OriginalMax); err != nil {
		errs = append(errs, err)
	}
	return undone, errors.Join(errs...)
}

// undoRetryFor is how long after a cycle failed or was aborted its ticks still take up the undo
// of its surge (Record.UndoPending), holding the capacity meanwhile. Ten ticks outlast a throttled
// or briefly refused call; a refusal that lasts longer (AccessDenied, a suspended process) is a
// person's to read, and scaling cannot hold still for it: the undo is left, and said so.
const undoRetryFor = 10 * time.Minute

// undoLater carries out what is left of the undo of a failed or aborted cycle's surge
// (Record.UndoPending), planned anew from the group and its runners as they are now (planUndo),
// as a claimed step (claim): an aborted cycle's first undo, and the retries of one Auto Scaling
// refused in part. A look that could not see a replacement the cycle's last step saw not serving
// (undoBlind) does not end it: the undo spares that one this tick, and stays pending until a
// tick can look. Past undoRetryFor it is left, with an event saying so (and naming the
// replacements the worker still could not look at). It reports whether the cycle still holds the
// capacity.
func (h *Handler) undoLater(ctx context.Context, log *slog.Logger, f FleetConfig, rec Record, ver int64) (bool, error) {
	now := h.cfg.Now()
	rec.UpdatedAt = now
	g, runners, err := h.observe(ctx, f)
	if now.After(rec.UndoUntil()) {
		text := fmt.Sprintf("the undo of the surge is left undone %s after the cycle ended: the capacity is scaling's again; "+
			"if the group's desired capacity is still above %d, read its scaling activities and set it back by hand", undoRetryFor, rec.Desired)
		if err == nil {
			planned, _ := undoView(now, rec, g, runners)
			if blind := undoBlind(rec, planned, g, runners); len(blind) > 0 {
				text += fmt.Sprintf("; left in the group: the worker could not look at %v, replacements not seen serving: retire any that does not serve by hand", blind)
			}
		}
		rec.UndoPending = false
		rec.event(now, text)
		log.WarnContext(ctx, "cycle: the undo of its surge is left undone; the capacity is scaling's again", "group", f.GroupName, "desired", rec.Desired)
		ok, err := h.save(ctx, f.Name, rec, ver)
		if err != nil {
			return true, fmt.Errorf("saving cycle of fleet %s: %w", f.Name, err)
		}
		return !ok, nil
	}
	if err != nil {
		return true, err
	}
	planned, order := undoView(now, rec, g, runners)
	u := planUndo(planned, g, order)
	blind := undoBlind(rec, planned, g, runners)
	if len(blind) > 0 {
		// Not concluded: the undo stays pending, and the next ticks look again and plan again
		// from what they see. Said once in the events, not every tick the worker cannot look.
		log.WarnContext(ctx, "cycle: the undo of its surge waits until the worker can look at replacements not seen serving", "unlooked", blind)
		waits := fmt.Sprintf("the undo of the surge waits: the worker could not look at %v, replacements not seen serving; ticks look again until %s",
			blind, rec.UndoUntil().UTC().Format(time.RFC3339))
		said := len(rec.Events) > 0 && rec.Events[len(rec.Events)-1].Text == waits
		if !said {
			rec.event(now, waits)
		}
		if len(u.steps) == 0 {
			if !said {
				if _, err := h.save(ctx, f.Name, rec, ver); err != nil {
					return true, fmt.Errorf("saving cycle of fleet %s: %w", f.Name, err)
				}
			}
			return true, nil
		}
	}
	if len(u.steps) == 0 {
		rec.UndoPending = false
		rec.event(now, "the undo of the surge is carried out: "+undoText(planned, u))
		ok, err := h.save(ctx, f.Name, rec, ver)
		if err != nil {
			return true, fmt.Errorf("saving cycle of fleet %s: %w", f.Name, err)
		}
		return !ok, nil
	}
	stepCtx, cancel, claimed, err := h.claim(ctx, f.Name, &rec, ver)
	if err != nil {
		return true, fmt.Errorf("claiming the undo of the cycle of fleet %s: %w", f.Name, err)
	}
	if !claimed {
		h.m.steps.WithLabelValues(f.Name, "lost_race").Inc()
		return true, nil
	}
	log.InfoContext(ctx, "cycle ended: "+undoText(planned, u))
	undone, err := h.giveBack(stepCtx, f, g, rec, u)
	cancel()
	if err != nil {
		h.m.applyErrs.WithLabelValues(f.Name, "give_back").Inc()
		log.WarnContext(ctx, "cycle ended: its surge not given back in full; the next ticks take it up again",
			"group", f.GroupName, "desired", rec.Desired, "original_max", rec.OriginalMax, "error", err.Error())
	}
	if undone && len(blind) == 0 {
		rec.UndoPending = false
		rec.event(now, "the undo of the surge is carried out: "+undoText(planned, u))
	}
	h.m.steps.WithLabelValues(f.Name, "advanced").Inc()
	h.release(ctx, log, f.Name, rec, ver+1)
	return rec.HoldsCapacity(), nil
}

// undoView is rec as the group and its runners are now, with the order of its old instances, for
// planning the undo of its surge again after the cycle ended (rec is not changed): a replacement
// the group launched since the last step is the cycle's (it launched for the surge), one whose
// runner now serves has served, one the worker cannot look at now is kept (Unlooked); the
// instances serving are counted again; and the old instances live and not retired are in the
// order decide retires them (those that serve nothing first).
func undoView(now time.Time, rec Record, g GroupState, runners map[string]Runner) (Record, []undoCandidate) {
	v := rec
	v.Seen, v.Healthy, v.Unlooked = maps.Clone(rec.Seen), slices.Clone(rec.Healthy), nil
	if v.Seen == nil {
		v.Seen = map[string]time.Time{}
	}
	old, kept, retired := set(rec.Old), set(rec.Kept), set(rec.Retired)
	var live []Member
	v.Progress.Serving = 0
	for _, m := range g.Members {
		serving := m.State.InService() && runners[m.ID].Healthy && !retired[m.ID]
		if serving {
			v.Progress.Serving++
		}
		switch {
		case m.State.Leaving():
		case old[m.ID]:
			if !retired[m.ID] {
				live = append(live, m)
			}
		case !kept[m.ID]:
			if _, ok := v.Seen[m.ID]; !ok {
				v.Seen[m.ID] = now
			}
			if serving && !slices.Contains(v.Healthy, m.ID) {
				v.Healthy = append(v.Healthy, m.ID)
			}
			if m.State.InService() && runners[m.ID].Worker != "" && !slices.Contains(v.Healthy, m.ID) {
				v.Unlooked = append(v.Unlooked, m.ID)
			}
		}
	}
	slices.Sort(v.Unlooked)
	return v, retireOrder(live, runners)
}

// undoBlind lists, with why, the cycle's replacements that the undo planned from this look
// (planned: undoView) spares because the worker could not look at them now, though the cycle's
// last step looked at them (not in rec.Unlooked) and did not see them serve, or never saw them:
// one blind look says nothing about them, and with a look the undo would retire them as never
// served. Those the last step could not look at either were spared when the cycle ended.
func undoBlind(rec, planned Record, g GroupState, runners map[string]Runner) []string {
	was := set(rec.Unlooked)
	var out []string
	for _, id := range unlookedReplacements(planned, g) {
		if !was[id] {
			out = append(out, fmt.Sprintf("%s (%s)", id, runners[id].Worker))
		}
	}
	return out
}

// giveBackLater gives back the surge's MaxSize on a tick after the cycle ended, once the desired
// capacity allows (the cycle ended while a surge instance kept it above the original), as a
// claimed step (claim). Once MaxSize is back, or is no longer the surge's (someone changed it),
// the record says so and later ticks look no more.
func (h *Handler) giveBackLater(ctx context.Context, f FleetConfig, rec Record, ver int64) {
	g, err := h.deps.Group.Describe(ctx, f.GroupName)
	if err != nil {
		return
	}
	if restorable(g, rec) {
		if g.Desired > rec.OriginalMax {
			return // not yet
		}
		stepCtx, cancel, claimed, err := h.claim(ctx, f.Name, &rec, ver)
		if err != nil || !claimed {
			return // another writer, or a failed write: the next tick looks again
		}
		ver++
		err = h.deps.Group.RestoreMax(stepCtx, f.GroupName, rec.OriginalMax)
		cancel()
		if err != nil {
			h.log.WarnContext(ctx, "restoring MaxSize after the cycle", "fleet", f.Name, "error", err.Error())
			h.release(ctx, h.log.With("fleet", f.Name), f.Name, rec, ver)
			return
		}
		h.log.InfoContext(ctx, "cycle's surge MaxSize given back", "fleet", f.Name, "group", f.GroupName, "max_size", rec.OriginalMax)
	}
	rec.MaxGivenBack = true
	rec.Claim = nil
	if _, err := h.save(ctx, f.Name, rec, ver); err != nil { // a lost write only means one more look
		h.log.WarnContext(ctx, "recording the surge's MaxSize given back", "fleet", f.Name, "error", err.Error())
	}
}

// restoreWindow is how long after a cycle ends its ticks still try to give back the surge's
// MaxSize (giveBack), once the desired capacity allows.
const restoreWindow = 24 * time.Hour

// unservedReplacements lists the cycle's replacements in the group that never served (not in
// rec.Healthy), booting or in service, not leaving — but not those the worker could not look at
// (rec.Unlooked): whether they served, it does not know.
func unservedReplacements(rec Record, g GroupState) []string {
	unlooked := set(rec.Unlooked)
	var out []string
	for _, m := range g.Members {
		if _, ours := rec.Seen[m.ID]; !ours || slices.Contains(rec.Healthy, m.ID) || m.State.Leaving() || unlooked[m.ID] {
			continue
		}
		out = append(out, m.ID)
	}
	slices.Sort(out)
	return out
}

// unlookedReplacements lists the cycle's replacements in the group, not leaving, never seen
// serving, whose runner the worker could not look at when it last tried (rec.Unlooked).
func unlookedReplacements(rec Record, g GroupState) []string {
	unlooked := set(rec.Unlooked)
	var out []string
	for _, m := range g.Members {
		if _, ours := rec.Seen[m.ID]; ours && unlooked[m.ID] && !slices.Contains(rec.Healthy, m.ID) && !m.State.Leaving() {
			out = append(out, m.ID)
		}
	}
	slices.Sort(out)
	return out
}

// ParameterChange starts a cycle of every instance of each fleet whose token parameter changed
// (Create or Update), or only reports it (OnTokenReport). The cycle's id derives from the event's
// id, so a redelivered event starts nothing twice. A change during a cycle, or while a step in
// flight holds the fleet (its claim), is recorded (Record.TokenChangedAt) and its cycle started
// by a later tick. A Delete is reported: the fleet cannot launch working runners until the
// parameter is back.
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
