package cycle

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// retireRetryAfter is how long an instance the cycle retired may stay InService before a step
// asks the group to terminate it again: a TerminateInstanceInAutoScalingGroup that failed, or a
// worker that died between claiming a step and applying it, must not stall the cycle. A minute is
// a tick: long enough for the hook to have moved a terminated instance out of InService.
const retireRetryAfter = time.Minute

// plan is what one step does, decided from the record and what the group and runners look like.
type plan struct {
	// desired, when above the group's, is the desired capacity to set (with max as MaxSize).
	desired, max int
	// retire are old instances to terminate through the group (their drains run).
	retire []string
	// finish, when set, ends the cycle with reason.
	finish Status
	reason string
	// undo is how a failed cycle gives back its surge (giveBack carries it out).
	undo undo
}

type undoCandidate struct {
	id      string
	serving bool
}

// retireRank orders old instances for retirement: 0 job requests rejected, 1 not serving
// (not in service, unreadable, intake stopped), 2 serving.
func retireRank(m Member, r Runner) int {
	switch {
	case m.State.InService() && r.Known && r.Rejected:
		return 0
	case !m.State.InService() || !r.Healthy:
		return 1
	}
	return 2
}

// retireOrder sorts old instances (in place) in the order they are retired, and returns them
// as the undo of a surge takes them: rejected first, then unreadable, then healthy; fewest jobs
// first (their drains end sooner); then oldest. A failed cycle that undoes its surge retires in
// this order too.
func retireOrder(ms []Member, runners map[string]Runner) []undoCandidate {
	slices.SortStableFunc(ms, func(a, b Member) int {
		return cmp.Or(cmp.Compare(retireRank(a, runners[a.ID]), retireRank(b, runners[b.ID])),
			cmp.Compare(runners[a.ID].RunningJobs, runners[b.ID].RunningJobs),
			a.LaunchedAt.Compare(b.LaunchedAt), cmp.Compare(a.ID, b.ID))
	})
	order := make([]undoCandidate, len(ms))
	for i, m := range ms {
		order[i] = undoCandidate{id: m.ID, serving: retireRank(m, runners[m.ID]) == 2}
	}
	return order
}

// decide advances rec by one step from the group g and the runners' health, and returns the
// actions. It is pure: the same inputs give the same plan, so a duplicate step decides alike.
//
// The rules (D = rec.Desired, S = rec.Surge, U = rec.MaxUnavailable):
//   - the desired capacity is raised to min(D+S, oldLeft+D): replacements launch before anything
//     is retired, and the fleet ends at D;
//   - a healthy old instance is retired only while, after it, the instances serving (InService,
//     intake open, job requests succeeding) stay ≥ D−U, and the healthy instances (new ones and
//     old ones not yet retired) stay ≥ D — or ≥ D−U when S is 0 (no surge: the budget is spent
//     instead);
//   - an old instance whose job requests are rejected (a revoked token) serves nothing: it is
//     retired first, up to S per step (at least 1), without charging the budget;
//   - an old instance whose runner cannot be read is retired only when enough others serve
//     without it;
//   - an old instance an operator moved out of service (Standby, detaching, a warm pool) is set
//     aside: neither retired nor waited for (a drain is waited for only while the instance is
//     terminating, or retired and still InService);
//   - a replacement not healthy within rec.HealthTimeout of being first seen fails the cycle,
//     and so does one launched in place of a replacement lost before serving, within the same
//     time of the first one (rec.UnhealthySince): a template that never serves fails the cycle
//     however often the launch gate or EC2's health check has the group launch again;
//   - a runner the worker could not look at (Runner.Worker: its address not read, its own
//     deadline, network or URL template) is neither serving nor failing: it counts toward no
//     floor (an old one is retired as one whose runner cannot be read is), and a replacement
//     waits for health on it without being taken for one that never served (planUndo). While
//     any runner the step counts is such a one, or the worker cannot describe the group at all
//     (Advance), the worker cannot look (a spell, Record.BlindSince). The health and stall
//     deadlines are extended by the time the worker could not look, up to rec.HealthTimeout in
//     all (Record.extension): they do not run out on the worker's failures alone until that
//     bound, and the first step that looks again decides on what it sees;
//   - a retired instance Auto Scaling leaves InService is asked again each step, and fails the
//     cycle once it has been asked for longer than rec.HealthTimeout (a terminate refused for
//     good, a suspended process): a drain that never begins is not one to wait for;
//   - a failing step retires nothing but the undo of the surge (planUndo), which its reason
//     tells;
//   - a cycle that has not moved (no replacement launched or healthy, no old instance retired or
//     gone) for rec.HealthTimeout while nothing is in flight (no drain, no replacement waiting
//     for health) fails with what holds it: a group that does not launch, or instances the cycle
//     keeps that do not serve, so no old one can be retired within the budget. It would
//     otherwise wait for ever, and scaling holds still while a cycle runs;
//   - once every old instance is retired, the desired capacity is back at D and every
//     replacement serves, only drains are left: the cycle's tail (rec.Tail) gives the capacity
//     back to scaling, takes no part in the desired capacity and ignores the instances scaling
//     launches;
//   - the cycle succeeds when no old instance is left in the group (every drain finished), the
//     desired capacity is back at D and every replacement serves.
func decide(now time.Time, rec *Record, g GroupState, runners map[string]Runner) plan {
	old, kept, retired := set(rec.Old), set(rec.Kept), set(rec.Retired)
	if rec.Seen == nil {
		rec.Seen = map[string]time.Time{}
	}
	if rec.MovedAt.IsZero() {
		rec.MovedAt = now // a record written before MovedAt existed: its clock starts now
	}
	moved, becameHealthy := false, false
	var p plan
	var oldLive []Member
	var retryRetire []string
	pr := Progress{Total: len(rec.Old), Floor: max(rec.Desired-rec.MaxUnavailable, 0)}
	inGroup := map[string]bool{}
	healthyNew := 0
	var waiting, unlooked, unlookedWaiting []string
	var oldestWaiting time.Time
	for _, m := range g.Members {
		inGroup[m.ID] = true
		r := runners[m.ID]
		serving := m.State.InService() && r.Healthy && !retired[m.ID]
		if serving {
			pr.Serving++
		}
		// In the tail the capacity is scaling's and only drains are waited for: what the worker
		// cannot look at there decides nothing.
		if m.State.InService() && r.Worker != "" && !retired[m.ID] && !rec.Tail {
			unlooked = append(unlooked, fmt.Sprintf("%s (%s)", m.ID, r.Worker))
		}
		if m.State.InService() && r.Known && r.Rejected && !retired[m.ID] {
			pr.Rejected++
		}
		if old[m.ID] {
			switch {
			case m.State.Terminating() || retired[m.ID] && m.State.InService():
				pr.Draining++
				if retired[m.ID] && m.State.InService() && now.Sub(rec.retiredAt(m.ID)) > retireRetryAfter {
					retryRetire = append(retryRetire, m.ID)
				}
			case m.State.Leaving():
				// Standby, detaching, warmed: an operator took it out of service. Waiting for it
				// would hold the cycle (and scaling) for as long as they keep it there.
				pr.Aside++
				if !slices.Contains(rec.Aside, m.ID) {
					rec.Aside = append(rec.Aside, m.ID)
					moved = true
					rec.event(now, fmt.Sprintf("%s is %s: set aside, neither retired nor waited for", m.ID, m.State))
				}
			default:
				oldLive = append(oldLive, m)
			}
			continue
		}
		if m.State.Leaving() {
			continue
		}
		if serving {
			healthyNew++
		}
		if kept[m.ID] {
			continue
		}
		if _, ok := rec.Seen[m.ID]; !ok && rec.Tail {
			continue // launched by scaling, which owns the capacity in the tail
		}
		if _, ok := rec.Seen[m.ID]; !ok {
			rec.Seen[m.ID] = now
			moved = true
			rec.event(now, fmt.Sprintf("replacement %s launched", m.ID))
		}
		if slices.Contains(rec.Healthy, m.ID) {
			continue
		}
		if serving {
			moved, becameHealthy = true, true
			rec.Healthy = append(rec.Healthy, m.ID)
			rec.event(now, fmt.Sprintf("replacement %s healthy", m.ID))
			continue
		}
		pr.WaitingForHealth++
		waiting = append(waiting, fmt.Sprintf("%s (%s)", m.ID, unhealthyWhy(m, r)))
		if m.State.InService() && r.Worker != "" {
			unlookedWaiting = append(unlookedWaiting, m.ID)
		}
		if seen := rec.Seen[m.ID]; oldestWaiting.IsZero() || seen.Before(oldestWaiting) {
			oldestWaiting = seen
		}
	}
	// Not cleared when the replacements waiting are lost: the ones launched in their place wait
	// on the same clock.
	if becameHealthy || rec.UnhealthySince.IsZero() {
		rec.UnhealthySince = oldestWaiting
	}
	for _, id := range rec.Old {
		if !inGroup[id] {
			pr.Replaced++
		}
	}
	if pr.Replaced > rec.Progress.Replaced {
		moved = true
	}
	slices.Sort(unlooked)
	slices.Sort(unlookedWaiting)
	pr.Unlooked = len(unlooked)
	rec.Unlooked = unlookedWaiting
	rec.Progress = pr
	if moved {
		rec.MovedAt = now
	}
	// A step that could not look at a runner it counts is blind: it opens a spell (the first of
	// the cycle is told once in its events; the progress line counts them each step), and the
	// first step that looks at them all closes it. Either way the spell extends the deadlines.
	if len(unlooked) > 0 {
		if opened, first := rec.cannotLook(now); opened && first {
			rec.event(now, fmt.Sprintf("the worker could not look at %v: its own failure (see its log), not the runners': they count neither as healthy nor as unhealthy, and the cycle waits. "+
				"Its deadlines are extended by the time the worker cannot look, up to %s in all", unlooked, rec.HealthTimeout))
		}
	} else {
		rec.looked(now)
	}

	order := retireOrder(oldLive, runners)
	if !rec.UnhealthySince.IsZero() && now.Sub(rec.UnhealthySince) > rec.HealthTimeout+rec.extension(now) {
		p.fail(rec, g, order, notHealthy(now, rec, g, waiting, unlooked))
		return p
	}
	if stuck := overdue(now, rec, retryRetire); len(stuck) > 0 {
		p.fail(rec, g, order, fmt.Sprintf("retirement not carried out by Auto Scaling within %s: %s", rec.HealthTimeout, strings.Join(stuck, "; ")))
		return p
	}
	target := min(rec.Desired+rec.Surge, len(oldLive)+rec.Desired)
	if target > g.Desired && !rec.Tail {
		p.desired, p.max = target, max(g.Max, target)
		if p.max > g.Max {
			rec.RaisedMax = p.max
		}
	}
	if len(oldLive) == 0 && pr.Draining > 0 && p.desired == 0 && pr.WaitingForHealth == 0 && liveMembers(g) >= rec.Desired && !rec.Tail {
		// Only drains are left, for as long as their jobs run: holding scaling until the
		// longest ends would leave queued jobs waiting on a fleet that cannot grow. (Every
		// replacement is launched and serves: the group lists as many as the cycle's size.)
		rec.Tail = true
		rec.UnhealthySince = time.Time{} // every replacement serves; scaling's launches are not the cycle's
		rec.event(now, fmt.Sprintf("every old instance retired and every replacement serving: scaling resumes while %d drain(s) finish", pr.Draining))
	}
	if len(oldLive) == 0 && pr.Draining == 0 {
		// Done once the fleet is back at its size and every replacement serves (the last
		// retirement of a cycle without surge lowered desired; its replacement comes now, and
		// the group must have launched it: a group short of capacity is not a success). In the
		// tail the size is scaling's, checked when the tail began.
		if rec.Tail || p.desired == 0 && pr.WaitingForHealth == 0 && liveMembers(g) >= rec.Desired {
			p.finish, p.reason = StatusSucceeded, fmt.Sprintf("all %d instances replaced", len(rec.Old))
			if pr.Aside > 0 {
				p.reason = fmt.Sprintf("%d of %d instances replaced; %d set aside out of service, not replaced: %v",
					len(rec.Old)-pr.Aside, len(rec.Old), pr.Aside, asideNow(rec, g))
			}
			return p
		}
		if why := stalled(now, rec, g, runners, 0, 0, 0); why != "" {
			p.fail(rec, g, order, why)
		}
		return p
	}

	rank := func(m Member) int { return retireRank(m, runners[m.ID]) }
	healthyOld := 0
	for _, m := range oldLive {
		if rank(m) == 2 {
			healthyOld++
		}
	}
	covered := healthyNew + healthyOld
	need := rec.Desired
	if rec.Surge == 0 {
		need -= rec.MaxUnavailable
	}
	serving := pr.Serving
	rejectedBudget := max(rec.Surge, 1)
	for _, m := range oldLive {
		switch rank(m) {
		case 0:
			if rejectedBudget == 0 {
				continue
			}
			rejectedBudget--
		case 1:
			if covered < need || serving < pr.Floor {
				continue
			}
		case 2:
			if covered-1 < need || serving-1 < pr.Floor {
				continue
			}
			covered--
			serving--
		}
		p.retire = append(p.retire, m.ID)
		rec.Retired = append(rec.Retired, m.ID)
		rec.event(now, fmt.Sprintf("retiring %s (%s): its drain runs", m.ID, unhealthyWhyOrServing(m, runners[m.ID])))
	}
	if len(p.retire) > 0 {
		rec.MovedAt = now
	} else if why := stalled(now, rec, g, runners, len(oldLive), covered, need); why != "" {
		p.fail(rec, g, order, why)
		return p
	}
	for _, id := range retryRetire {
		p.retire = append(p.retire, id)
		askAgain(now, rec, id)
	}
	if rec.RetiredAt == nil {
		rec.RetiredAt = map[string]time.Time{}
	}
	for _, id := range p.retire {
		rec.RetiredAt[id] = now
	}
	return p
}

// askAgain counts one more ask to terminate a retired instance still InService. Only the first
// ask again is an event: one a minute would flush the cycle's history (maxEvents) of everything
// else while Auto Scaling keeps refusing.
func askAgain(now time.Time, rec *Record, id string) {
	s, ok := rec.Stuck[id]
	if !ok { // the first ask was accepted (or never made: a worker died after claiming it)
		s = Stuck{Since: rec.retiredAt(id), Asked: 1}
	}
	s.Asked++
	if s.Asked == 2 {
		rec.event(now, fmt.Sprintf("retiring %s again: still InService %s after it was retired%s; asked again each step, for at most %s",
			id, now.Sub(rec.retiredAt(id)).Round(time.Second), answered(s.Error), rec.HealthTimeout))
	}
	if rec.Stuck == nil {
		rec.Stuck = map[string]Stuck{}
	}
	rec.Stuck[id] = s
}

// overdue lists, with why, the instances among due (retired, still InService, due to be asked
// again) that the cycle has asked to terminate for longer than rec.HealthTimeout, at least twice
// (a worker may die between claiming an ask and making it).
func overdue(now time.Time, rec *Record, due []string) []string {
	var out []string
	for _, id := range due {
		s, ok := rec.Stuck[id]
		if !ok || s.Asked < 2 || now.Sub(s.Since) <= rec.HealthTimeout {
			continue
		}
		answer := "; Auto Scaling accepted the asks and left it InService: read the group's scaling activities and suspended processes"
		if s.Error != "" {
			answer = answered(s.Error)
		}
		out = append(out, fmt.Sprintf("%s still InService, asked %d times since %s%s", id, s.Asked, s.Since.Format(time.RFC3339), answer))
	}
	slices.Sort(out)
	return out
}

func answered(answer string) string {
	if answer == "" {
		return ""
	}
	return "; Auto Scaling answered " + answer
}

// notHealthy is the reason of a cycle whose replacements did not become healthy in time: those
// waiting, with why, and those lost before serving (the group launched others in their place);
// the extension the worker's failures to look earned, and, when this step could not look
// either (unlooked), that the bound on it is what ended the cycle.
func notHealthy(now time.Time, rec *Record, g GroupState, waiting, unlooked []string) string {
	slices.Sort(waiting)
	why := fmt.Sprintf("replacement not healthy within %s (%swaiting since %s)", rec.HealthTimeout, extended(rec.extension(now)), rec.UnhealthySince.Format(time.RFC3339))
	if len(waiting) > 0 {
		why += fmt.Sprintf(": %v", waiting)
	}
	if lost := lostBeforeServing(rec, g); len(lost) > 0 {
		why += fmt.Sprintf("; lost before serving, each launched again by the group: %v", lost)
	}
	if len(unlooked) > 0 {
		why += fmt.Sprintf("; the worker still could not look at %v, and has waited out the most its own failures may add (the health timeout again): "+
			"fix what its log names (its role, AWS throttling, its network or metrics URL)", unlooked)
		if len(rec.Unlooked) > 0 {
			why += fmt.Sprintf(", then see to %v, which may serve", rec.Unlooked)
		}
	}
	return why
}

// extended says how far a deadline was extended for the time the worker could not look ("" when
// not at all).
func extended(ext time.Duration) string {
	if ext <= 0 {
		return ""
	}
	return fmt.Sprintf("extended by the %s the worker could not look; ", ext.Round(time.Second))
}

// lostBeforeServing lists the cycle's replacements gone from the group, or leaving it, without
// ever having served.
func lostBeforeServing(rec *Record, g GroupState) []string {
	live := map[string]bool{}
	for _, m := range g.Members {
		if !m.State.Leaving() {
			live[m.ID] = true
		}
	}
	var out []string
	for id := range rec.Seen {
		if !live[id] && !slices.Contains(rec.Healthy, id) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// fail ends the cycle in p. The step retires nothing but the undo of the surge (giveBack carries
// it out), and the reason says what that undo does.
func (p *plan) fail(rec *Record, g GroupState, order []undoCandidate, why string) {
	p.desired, p.retire = 0, nil
	p.finish = StatusFailed
	p.undo = planUndo(*rec, g, order)
	p.reason = why + "; " + undoText(*rec, p.undo)
}

// undo is how a failed or aborted cycle gives back its surge: its steps, in order, and the
// desired capacity they leave; spared are the replacements it keeps because the worker could not
// look at them (Record.Unlooked).
type undo struct {
	steps   []undoStep
	desired int
	spared  []string
}

// undoStep retires one instance (id, why) or, with id "", cancels the launches the group has not
// made (desired from → to).
type undoStep struct {
	id, why  string
	from, to int
}

// planUndo is how a cycle that failed or was aborted gives back its surge, down to the desired
// capacity from before it (rec.Desired), each retirement through the group's terminate hook
// (drained, never killed) and on instances it chooses, never leaving the choice to Auto Scaling
// (whose termination policy prefers the oldest launch template: the old, healthy instances):
//   - its replacements that never served (broken or still booting) are retired — but not those
//     whose runner the worker could not look at when it last tried (rec.Unlooked): they may
//     serve, and stay, with the desired capacity they take;
//   - launches the group has not made are cancelled (this terminates nothing);
//   - a healthy replacement has taken over from an old instance: old ones are retired, in order
//     (the retirement order: those that serve nothing first), never below the floor of serving
//     instances.
//
// Nothing in the cycle's tail: the capacity is scaling's again. Pure: a failing step tells it in
// its reason before giveBack carries it out.
func planUndo(rec Record, g GroupState, order []undoCandidate) undo {
	u := undo{desired: g.Desired}
	if rec.Tail {
		return u
	}
	live := liveMembers(g)
	// The replacements the worker could not look at may serve: they stay, and so does the room
	// they take (the capacity is scaling's once the cycle ends); no old instance goes for them.
	u.spared = unlookedReplacements(rec, g)
	keep := rec.Desired + len(u.spared)
	retire := func(id, why string) bool {
		if u.desired-1 < g.Min || u.desired <= keep {
			return false
		}
		u.steps = append(u.steps, undoStep{id: id, why: why})
		u.desired--
		live--
		return true
	}
	for _, id := range unservedReplacements(rec, g) {
		retire(id, "a replacement that never served")
	}
	if u.desired > keep && live < u.desired {
		to := max(live, keep, g.Min)
		u.steps = append(u.steps, undoStep{from: u.desired, to: to})
		u.desired = to
	}
	serving := rec.Progress.Serving
	for _, c := range order {
		if c.serving && serving-1 < rec.Progress.Floor {
			continue // never below the floor: one that serves nothing goes first, or none
		}
		if retire(c.id, "an old instance a healthy replacement took over from") && c.serving {
			serving--
		}
	}
	return u
}

// undoText says what planUndo's undo does, for the reason of a failed cycle.
func undoText(rec Record, u undo) string {
	if rec.Tail {
		return "the capacity is scaling's again (only drains were left): nothing more is retired"
	}
	var parts []string
	for _, s := range u.steps {
		if s.id == "" {
			parts = append(parts, fmt.Sprintf("cancelling the launches not made (desired %d → %d)", s.from, s.to))
		} else {
			parts = append(parts, fmt.Sprintf("retiring %s (%s)", s.id, s.why))
		}
	}
	text := "nothing more is retired"
	if len(parts) > 0 {
		text = fmt.Sprintf("undoing the surge down to desired %d: %s; nothing else is retired", rec.Desired, strings.Join(parts, ", "))
	}
	if len(u.spared) > 0 {
		text += fmt.Sprintf("; kept: %v, replacements the worker could not look at (they may serve), with the desired capacity they take", u.spared)
	}
	if keep := rec.Desired + len(u.spared); u.desired > keep {
		text += fmt.Sprintf("; the desired capacity stays at %d, as no other instance can go without going below the floor of %d serving",
			u.desired, rec.Progress.Floor)
	} else if u.desired > rec.Desired {
		text += fmt.Sprintf("; the desired capacity stays at %d until scaling decides", u.desired)
	}
	return text
}

// stalled says what holds the cycle when it has not moved for rec.HealthTimeout (extended by the
// time the worker could not look: Record.extension) with nothing in flight ("": it has, or
// something is in flight). oldLeft counts old instances not yet retired; covered and need are
// the retirement rule's counts.
func stalled(now time.Time, rec *Record, g GroupState, runners map[string]Runner, oldLeft, covered, need int) string {
	ext := rec.extension(now)
	if rec.Progress.Draining > 0 || rec.Progress.WaitingForHealth > 0 || now.Sub(rec.MovedAt) <= rec.HealthTimeout+ext {
		return ""
	}
	live := 0
	var idle []string
	old, retired := set(rec.Old), set(rec.Retired)
	for _, m := range g.Members {
		if m.State.Leaving() {
			continue
		}
		live++
		if r := runners[m.ID]; !old[m.ID] && !retired[m.ID] && !(m.State.InService() && r.Healthy) {
			idle = append(idle, fmt.Sprintf("%s (%s)", m.ID, unhealthyWhy(m, r)))
		}
	}
	slices.Sort(idle)
	var why string
	switch {
	case live < g.Desired:
		why = fmt.Sprintf("the group has %d instances for a desired capacity of %d and launches no more: "+
			"read its scaling activities (aws autoscaling describe-scaling-activities --auto-scaling-group-name %s)", live, g.Desired, g.Name)
	case oldLeft == 0:
		why = fmt.Sprintf("every old instance is gone, but the group's desired capacity is %d, not the %d the cycle ends at: "+
			"setting it fails (see the worker's log)", g.Desired, rec.Desired)
	case covered <= need && len(idle) > 0:
		why = fmt.Sprintf("retiring an old instance needs %d healthy instances, %d are: these do not serve and are not the cycle's to replace: %v",
			need+1, covered, idle)
	case covered <= need:
		why = fmt.Sprintf("retiring an old instance needs %d healthy instances, %d are", need+1, covered)
	default:
		why = fmt.Sprintf("serving %d, floor %d: retiring one more would go below it", rec.Progress.Serving, rec.Progress.Floor)
	}
	if ext > 0 {
		why += fmt.Sprintf(" (the health timeout %s was extended by the %s the worker could not look)", rec.HealthTimeout, ext.Round(time.Second))
	}
	return fmt.Sprintf("no progress for %s with nothing in flight: %s", now.Sub(rec.MovedAt).Round(time.Second), why)
}

// liveMembers counts the group's members neither leaving nor set aside: launched and booting
// ones included.
func liveMembers(g GroupState) int {
	n := 0
	for _, m := range g.Members {
		if !m.State.Leaving() {
			n++
		}
	}
	return n
}

// asideNow lists the old instances still set aside in the group.
func asideNow(rec *Record, g GroupState) []string {
	aside := set(rec.Aside)
	var out []string
	for _, m := range g.Members {
		if aside[m.ID] && m.State.Leaving() && !m.State.Terminating() {
			out = append(out, fmt.Sprintf("%s (%s)", m.ID, m.State))
		}
	}
	slices.Sort(out)
	return out
}

func unhealthyWhyOrServing(m Member, r Runner) string {
	if m.State.InService() && r.Healthy {
		return "serving"
	}
	return unhealthyWhy(m, r)
}

func unhealthyWhy(m Member, r Runner) string {
	switch {
	case !m.State.InService():
		return "still " + string(m.State)
	case r.Stopped != "":
		return r.Stopped
	case r.Worker != "":
		return "the worker could not look: " + r.Worker
	case !r.Known && r.Reason != "":
		return "runner metrics: " + r.Reason
	case !r.Known:
		return "runner metrics not read"
	case r.Rejected:
		return "job requests rejected"
	}
	return "job requests not succeeding"
}

func set(ids []string) map[string]bool {
	s := make(map[string]bool, len(ids))
	for _, id := range ids {
		s[id] = true
	}
	return s
}
