package cycle

import (
	"slices"
	"time"
)

// Status is where a cycle stands.
type Status string

// Statuses of a cycle. Only StatusRunning is advanced by ticks; the others are final.
const (
	StatusRunning   Status = "running"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusAborted   Status = "aborted"
)

// Final reports whether the status is final (nothing more happens).
func (s Status) Final() bool { return s != StatusRunning && s != "" }

// Triggers of a cycle.
const (
	TriggerCommand = "command"
	TriggerToken   = "token"
)

// maxEvents bounds Record.Events: the record is one DynamoDB item (400 KB).
const maxEvents = 50

// recordSchema is the layout of the record this code writes. Raise it with any change an older
// worker would misread or lose on saving; a worker leaves records of a newer schema to newer
// replicas (Handler.newer). 1: Tail, Aside, MaxGivenBack (records without a schema are 0).
// 2: UnhealthySince, Stuck (an older worker saving a record would drop the cycle's health
// deadline and its count of stuck retirements). 3: Claim, UndoPending (an older worker would step
// a fleet another replica's step holds, and drop an undo still to carry out). 4: BlindSince,
// BlindFor, Unlooked, Progress.Unlooked, TargetTemplate (an older worker would count a runner
// it could not look at as unhealthy, fail the cycle on the worker's own failures, and have the
// undo retire replacements that may serve).
const recordSchema = 4

// Record is a fleet's cycle: the one in progress, or the last one. It is the whole state of the
// state machine: a worker restart, a duplicate tick or another replica reads it and carries on.
type Record struct {
	// Schema is the layout the record was written with (recordSchema).
	Schema int `json:"schema,omitempty"`
	// ID names the cycle: the id of the command that started it, or of the token change event.
	ID      string `json:"id"`
	Trigger string `json:"trigger"`
	Issuer  string `json:"issuer,omitempty"`
	Status  Status `json:"status"`
	// Reason says why the cycle failed or was aborted, or how it ended.
	Reason string `json:"reason,omitempty"`

	StartedAt  time.Time `json:"started_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`

	MaxUnavailable int           `json:"max_unavailable"`
	Surge          int           `json:"surge"`
	All            bool          `json:"all,omitempty"`
	HealthTimeout  time.Duration `json:"health_timeout"`

	// TargetTemplate and TargetVersion are the launch template (id) and version the group
	// launched from at the start (for status; Old was decided from them then). TargetTemplate is
	// "" in a record written before it existed, or by an adapter that gave no id.
	TargetTemplate string `json:"target_template,omitempty"`
	TargetVersion  string `json:"target_version,omitempty"`
	// Desired is the fleet's size before the surge, during and after the cycle: the group's
	// desired capacity at the start, less what an earlier cycle's surge still held then (start).
	// A failed or aborted cycle undoes its surge down to it. OriginalMax is the group's MaxSize
	// before the surge, restored at the end when the surge raised it.
	Desired     int `json:"desired"`
	OriginalMax int `json:"original_max"`
	// RaisedMax is the MaxSize the surge last set (0: it never raised it). MaxSize is restored only
	// while the group still has it: a MaxSize someone else changed during the cycle (a stack
	// update, an operator's cost cap) is theirs, and is left as it is.
	RaisedMax int `json:"raised_max,omitempty"`

	// Old are the instances to replace, fixed at the start.
	Old []string `json:"old"`
	// Kept are the instances that were already current at the start (not replaced).
	Kept []string `json:"kept,omitempty"`
	// Retired are the old instances this cycle terminated through the group (their drains run).
	// A retired instance never counts as serving again, even while the group still says
	// InService: so a step of a stale replica can never retire beyond the budget.
	Retired []string `json:"retired,omitempty"`
	// MaxGivenBack: after the cycle ended, a tick found the surge's MaxSize given back (or no
	// longer the surge's); ticks stop looking.
	MaxGivenBack bool `json:"max_given_back,omitempty"`
	// Tail: every old instance is retired, the desired capacity is back at Desired and every
	// replacement serves; only drains are left, which last as long as their jobs (up to 48 h).
	// The cycle gives the capacity back to scaling and only waits for them.
	Tail bool `json:"tail,omitempty"`
	// Aside are old instances found out of service but not terminating (Standby, detaching, a
	// warm pool): an operator's, neither retired nor waited for (Progress.Aside).
	Aside []string `json:"aside,omitempty"`
	// RetiredAt is when each was (last) asked to terminate.
	RetiredAt map[string]time.Time `json:"retired_at,omitempty"`
	// Stuck are the retirements Auto Scaling refused or left InService, each asked again
	// (retireRetryAfter apart) until the instance leaves or the cycle fails over it (decide).
	Stuck map[string]Stuck `json:"stuck,omitempty"`
	// Seen maps each replacement (an instance neither old nor kept) to when a step first saw it.
	Seen map[string]time.Time `json:"seen,omitempty"`
	// UnhealthySince is when the replacements waiting for health began to wait with none becoming
	// healthy since: the Seen of the oldest one waiting, kept when it is lost before serving (the
	// launch gate abandons it, EC2's health check replaces it) and another launches in its place,
	// so a new template that never serves fails the cycle at UnhealthySince + HealthTimeout
	// however often the group replaces its instances. A replacement becoming healthy moves it to
	// the oldest one still waiting (zero: none). Zero in a record written before it existed: the
	// next step sets it.
	UnhealthySince time.Time `json:"unhealthy_since,omitzero"`
	// Healthy lists the replacements whose runner was seen healthy.
	Healthy []string `json:"healthy,omitempty"`
	// MovedAt is when the cycle last moved: started, saw a replacement launch or become healthy,
	// retired an old instance or saw one gone. A cycle with nothing in flight that has not moved
	// for HealthTimeout fails (decide), so a stuck cycle cannot hold scaling for ever.
	MovedAt time.Time `json:"moved_at,omitzero"`

	// BlindSince is set while the worker cannot look (a spell): when a step, or a failed attempt
	// at one, found it could not describe the group or look at a runner the step counts, it is
	// the time of the step before (the last that looked). Zero while the worker looks. BlindFor
	// sums the spells that ended (each from its BlindSince to the first step that looked again).
	// The cycle's deadlines — the health timeout of its replacements (UnhealthySince) and its
	// stall (MovedAt) — are extended by the time the worker could not look, up to HealthTimeout
	// in all (extension): the worker's own trouble can at most double how long the cycle waits.
	BlindSince time.Time     `json:"blind_since,omitzero"`
	BlindFor   time.Duration `json:"blind_for,omitempty"`
	// Unlooked are the replacements waiting for health whose runner the last step could not
	// look at (Runner.Worker): a failing cycle's undo keeps them rather than retire them as
	// replacements that never served (planUndo): they may serve.
	Unlooked []string `json:"unlooked,omitempty"`

	// Progress is what the last step saw.
	Progress Progress `json:"progress"`
	// Steps counts steps taken; LastMessageID is the message of the last one (a redelivered tick
	// is not a second step).
	Steps         int    `json:"steps"`
	LastMessageID string `json:"last_message_id,omitempty"`
	// Events are the last progress lines, oldest first (for publisher status and --wait).
	Events []Event `json:"events,omitempty"`
	// TokenChangedAt is set when the fleet's token parameter changed while this cycle ran, or
	// while a step in flight held the fleet after it (Claim): a token cycle starts when this one
	// ends, or on the first tick after the claim.
	TokenChangedAt time.Time `json:"token_changed_at,omitzero"`

	// Claim is the step in flight that calls Auto Scaling, written with the step's conditional
	// write before any call. While it holds (Claim.holds), no other step of the fleet is taken, on
	// any replica: a tick does nothing, a cycle command waits until it ends, a token change is
	// recorded (TokenChangedAt) for the first tick after it, an abort leaves the undo of the
	// surge to a tick after it. Its calls end (their context's deadline) before Until; the step's
	// last write clears it, and that of a replica that died mid-step lapses at Until. Nil in a
	// record written before it existed.
	Claim *Claim `json:"claim,omitempty"`
	// UndoPending: the cycle failed or was aborted and the undo of its surge (planUndo) is not
	// carried out yet — Auto Scaling refused part of it, or the abort landed while a step was in
	// flight, or the worker could not look at a replacement the cycle saw not serving. Ticks take
	// it up again, planned anew from the group, each under a claim, until it is done or
	// undoRetryFor after FinishedAt; the cycle holds the capacity until then (HoldsCapacity), so
	// scaling does not move the desired capacity under the undo.
	UndoPending bool `json:"undo_pending,omitempty"`
}

// Claim is a step's hold on its fleet (Record.Claim).
type Claim struct {
	// Owner names the replica whose step holds the fleet (Config.Owner), for logs and status.
	Owner string `json:"owner"`
	// Until is when the claim lapses: ClaimFor after the step began, by the claiming replica's
	// clock.
	Until time.Time `json:"until"`
}

// holds reports whether the claim holds the fleet at now (a nil claim never does).
func (c *Claim) holds(now time.Time) bool { return c != nil && now.Before(c.Until) }

// Progress is a cycle's progress as counts.
type Progress struct {
	// Total old instances; Replaced of them are gone from the group (their drains finished).
	Total    int `json:"total"`
	Replaced int `json:"replaced"`
	// Draining old instances are retired and still in the group (their drain runs).
	Draining int `json:"draining"`
	// WaitingForHealth replacements are launched but not yet seen healthy.
	WaitingForHealth int `json:"waiting_for_health"`
	// Serving counts InService instances whose runner takes jobs (intake open, requests succeed);
	// Floor is the least the cycle keeps (desired − max-unavailable).
	Serving int `json:"serving"`
	Floor   int `json:"floor"`
	// Rejected counts in-service instances whose job requests GitLab rejects.
	Rejected int `json:"rejected"`
	// Aside counts old instances an operator moved out of service (Standby, detaching, a warm
	// pool): the cycle neither retires nor waits for them.
	Aside int `json:"aside,omitempty"`
	// Unlooked counts in-service runners the step counts (not retired; none in the tail) that
	// the worker could not look at (Runner.Worker): counted neither as serving nor as failing.
	Unlooked int `json:"unlooked,omitempty"`
}

// Stuck is a retirement Auto Scaling has not carried out: it refused the call (AccessDenied,
// throttling), or accepted it and left the instance InService.
type Stuck struct {
	// Since is when the cycle first asked to terminate the instance.
	Since time.Time `json:"since"`
	// Asked counts the asks, the first one included.
	Asked int `json:"asked"`
	// Error is Auto Scaling's answer to the last ask (answerOf: code and message, without
	// secrets); "" when it accepted it.
	Error string `json:"error,omitempty"`
}

// Event is one progress line of a cycle.
type Event struct {
	At   time.Time `json:"at"`
	Text string    `json:"text"`
}

// Active reports whether a cycle is in progress: scaling decisions must then hold still.
func (r Record) Active() bool { return r.ID != "" && r.Status == StatusRunning }

// HoldsCapacity reports whether the cycle owns the fleet's desired capacity: while it runs,
// until its tail (only drains left), and once it failed or was aborted, until the undo of its
// surge is done or left (UndoPending).
func (r Record) HoldsCapacity() bool { return r.Active() && !r.Tail || r.UndoPending }

// UndoUntil is when ticks stop taking up a pending undo of the surge (UndoPending): undoRetryFor
// after the cycle ended.
func (r Record) UndoUntil() time.Time { return r.FinishedAt.Add(undoRetryFor) }

func (r Record) retiredAt(id string) time.Time { return r.RetiredAt[id] }

// extension is how far the cycle's deadlines are extended at now for the time the worker could
// not look: the spells that ended and the one open, if any, up to HealthTimeout in all.
func (r Record) extension(now time.Time) time.Duration {
	d := r.BlindFor
	if !r.BlindSince.IsZero() && now.After(r.BlindSince) {
		d += now.Sub(r.BlindSince)
	}
	return min(max(d, 0), r.HealthTimeout)
}

// cannotLook opens a spell of the worker not looking (BlindSince), if none is open: it began
// after the last step that looked, the record's last write (UpdatedAt, not yet moved by this
// step). It reports whether a spell was opened, and whether it is the cycle's first (BlindFor
// zero: the one its events tell).
func (r *Record) cannotLook(now time.Time) (opened, first bool) {
	if !r.BlindSince.IsZero() {
		return false, false
	}
	since := r.UpdatedAt
	if since.IsZero() || since.After(now) {
		since = now
	}
	first = r.BlindFor == 0
	r.BlindSince = since
	return true, first
}

// looked closes the open spell, if any, adding it to BlindFor; it returns its length (0: none
// was open).
func (r *Record) looked(now time.Time) time.Duration {
	if r.BlindSince.IsZero() {
		return 0
	}
	d := max(now.Sub(r.BlindSince), 0)
	r.BlindFor += d
	r.BlindSince = time.Time{}
	return d
}

func (r *Record) event(at time.Time, text string) {
	r.Events = append(r.Events, Event{At: at, Text: text})
	if n := len(r.Events); n > maxEvents {
		r.Events = slices.Clone(r.Events[n-maxEvents:])
	}
}

// noteAnswers records what Auto Scaling answered to a step's retirements (id → answerOf, ""
// when accepted), after the step: a refused one becomes Stuck at once, so the reason of a cycle
// that fails over it can say why. It reports whether the record changed.
func (r *Record) noteAnswers(answers map[string]string) bool {
	changed := false
	for id, answer := range answers {
		s, ok := r.Stuck[id]
		switch {
		case !ok && answer == "":
			continue // accepted at the first ask, as nearly always
		case !ok:
			s = Stuck{Since: r.retiredAt(id), Asked: 1}
		case s.Error == answer:
			continue
		}
		s.Error = answer
		if r.Stuck == nil {
			r.Stuck = map[string]Stuck{}
		}
		r.Stuck[id] = s
		changed = true
	}
	return changed
}

func (r *Record) finish(at time.Time, s Status, reason string) {
	r.Status, r.Reason, r.FinishedAt, r.UpdatedAt = s, reason, at, at
	r.event(at, string(s)+": "+reason)
}
