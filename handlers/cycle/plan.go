package cycle

import (
	"cmp"
	"fmt"
	"slices"
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
	// undo lists the old instances not yet retired, in the order a failed cycle that undoes its
	// surge retires them (the retirement order), and whether each serves.
	undo []undoCandidate
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
//     and that step retires nothing;
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
	moved := false
	var p plan
	var oldLive []Member
	var retryRetire []string
	pr := Progress{Total: len(rec.Old), Floor: max(rec.Desired-rec.MaxUnavailable, 0)}
	inGroup := map[string]bool{}
	healthyNew := 0
	var late []string
	for _, m := range g.Members {
		inGroup[m.ID] = true
		r := runners[m.ID]
		serving := m.State.InService() && r.Healthy && !retired[m.ID]
		if serving {
			pr.Serving++
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
			moved = true
			rec.Healthy = append(rec.Healthy, m.ID)
			rec.event(now, fmt.Sprintf("replacement %s healthy", m.ID))
			continue
		}
		pr.WaitingForHealth++
		if now.Sub(rec.Seen[m.ID]) > rec.HealthTimeout {
			late = append(late, fmt.Sprintf("%s (%s)", m.ID, unhealthyWhy(m, r)))
		}
	}
	for _, id := range rec.Old {
		if !inGroup[id] {
			pr.Replaced++
		}
	}
	if pr.Replaced > rec.Progress.Replaced {
		moved = true
	}
	rec.Progress = pr
	if moved {
		rec.MovedAt = now
	}

	// Rejected first, then unreadable, then healthy; fewest jobs first (their drains end
	// sooner); then oldest. A failed cycle that undoes its surge retires in this order too.
	slices.SortStableFunc(oldLive, func(a, b Member) int {
		return cmp.Or(cmp.Compare(retireRank(a, runners[a.ID]), retireRank(b, runners[b.ID])),
			cmp.Compare(runners[a.ID].RunningJobs, runners[b.ID].RunningJobs),
			a.LaunchedAt.Compare(b.LaunchedAt), cmp.Compare(a.ID, b.ID))
	})
	for _, m := range oldLive {
		p.undo = append(p.undo, undoCandidate{id: m.ID, serving: retireRank(m, runners[m.ID]) == 2})
	}
	if len(late) > 0 {
		slices.Sort(late)
		p.finish, p.reason = StatusFailed, fmt.Sprintf("replacement not healthy within %s: %v; nothing more is retired",
			rec.HealthTimeout, late)
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
		stalled(now, rec, g, runners, &p, 0, 0, 0)
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
	} else if stalled(now, rec, g, runners, &p, len(oldLive), covered, need) {
		return p
	}
	for _, id := range retryRetire {
		p.retire = append(p.retire, id)
		rec.event(now, fmt.Sprintf("retiring %s again: still InService %s after it was retired", id, retireRetryAfter))
	}
	if rec.RetiredAt == nil {
		rec.RetiredAt = map[string]time.Time{}
	}
	for _, id := range p.retire {
		rec.RetiredAt[id] = now
	}
	return p
}

// stalled fails the cycle (in p) when it has not moved for rec.HealthTimeout with nothing in
// flight, and says what holds it. oldLeft counts old instances not yet retired; covered and need
// are the retirement rule's counts.
func stalled(now time.Time, rec *Record, g GroupState, runners map[string]Runner, p *plan, oldLeft, covered, need int) bool {
	if rec.Progress.Draining > 0 || rec.Progress.WaitingForHealth > 0 || now.Sub(rec.MovedAt) <= rec.HealthTimeout {
		return false
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
	p.desired, p.retire = 0, nil
	p.finish, p.reason = StatusFailed, fmt.Sprintf("no progress for %s with nothing in flight: %s; nothing more is retired",
		now.Sub(rec.MovedAt).Round(time.Second), why)
	return true
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
