// Package scaling is RunnerFleet's scaling policy: a pure function from a fleet's observed
// instances, its policy and the state carried between ticks to a decision. It does no I/O: the
// worker (handlers/scale) and the simulator (scaling/sim) feed it and apply what it returns.
package scaling

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
)

// State is what a fleet's scaling remembers between ticks. The caller stores the State of each
// Decision (handlers/scale in DynamoDB, so the stabilization window survives a restart) and passes
// it back in the next Input. The zero State is a fleet never seen before.
type State struct {
	// LastScaleOut is when a decision last raised the desired capacity.
	LastScaleOut time.Time `json:"last_scale_out,omitzero"`
	// LastScaleIn is when a decision last removed instances.
	LastScaleIn time.Time `json:"last_scale_in,omitzero"`
	// SpareSince is when the fleet started having spare capacity (at least one instance more than
	// needed) without interruption; zero when it has none. Scale-in waits for the window from it.
	SpareSince time.Time `json:"spare_since,omitzero"`
	// IdleSince maps the ID of each instance known to run no job to when it was first seen idle
	// without interruption. Removal prefers the longest idle.
	IdleSince map[string]time.Time `json:"idle_since,omitempty"`
	// RejectedSince is when GitLab began refusing the job requests of every scraped runner
	// without interruption; zero when some runner is served. Idle rejected instances are removed
	// only once it is a scale-in window old: a minute of 401/403 from GitLab or a proxy must not
	// take the fleet down to its floor.
	RejectedSince time.Time `json:"rejected_since,omitzero"`
	// UnknownSince maps the ID of each in-service instance whose scrape fails to when it was first
	// seen failing without interruption (Policy.ReplaceUnknownAfter).
	UnknownSince map[string]time.Time `json:"unknown_since,omitempty"`
}

// Input is what a decision looks at.
type Input struct {
	// Instances are the group's instances as described and scraped this tick (any lifecycle
	// state; leaving instances are ignored).
	Instances []fleet.Instance
	// Desired is the group's desired capacity now.
	Desired int
	// GroupMin and GroupMax are the group's own bounds; 0 means unbounded on that side. The
	// group's own bounds win over the policy's: Auto Scaling enforces them anyway. A group whose
	// MaxSize really is 0 is switched off: its caller pins it at 0 (handlers/scale does).
	GroupMin, GroupMax int
	// Pinned, when set, is an operator's fixed desired capacity (publisher scale --desired): the
	// policy's target is replaced by it; busy instances above it go as they become idle.
	Pinned *int
	// State is the State of the previous Decision for this fleet.
	State State
}

// Decision is what to do this tick. The caller applies it in this order: Protect, Unprotect,
// then either raise the desired capacity to Desired (when Desired > Input.Desired, with
// SetDesiredCapacity and HonorCooldown false) or terminate each of Remove with
// ShouldDecrementDesiredCapacity true (which brings the group to Desired). Desired is never below
// Input.Desired but by the removals: busy instances are never chosen by the group.
type Decision struct {
	// Desired is the desired capacity after the decision is applied.
	Desired int `json:"desired"`
	// Protect lists in-service instances running jobs that lack scale-in protection.
	Protect []string `json:"protect,omitempty"`
	// Unprotect lists protected in-service instances known to be idle.
	Unprotect []string `json:"unprotect,omitempty"`
	// Remove lists idle instances to terminate (the drain still runs for them as a safety net).
	Remove []string `json:"remove,omitempty"`
	// Replace lists instances to terminate without lowering the desired capacity, so the group
	// launches others in their place: runners whose metrics have not answered for
	// Policy.ReplaceUnknownAfter (each drained first, like any termination).
	Replace []string `json:"replace,omitempty"`
	// Reason says in words what was decided and why.
	Reason string `json:"reason"`
	// State is the state to pass to the next decision.
	State State `json:"state"`

	// Observation summarizes what the decision was based on, for logs and metrics.
	Observation Observation `json:"observation"`
}

// Observation is the fleet-level summary a decision computed from its instances.
type Observation struct {
	// Instances counts the group's members (not leaving), plus launches not yet listed.
	Instances int `json:"instances"`
	// Booting counts members not yet in service (and launches not yet listed).
	Booting int `json:"booting"`
	// Unknown counts in-service instances whose scrape failed.
	Unknown int `json:"unknown"`
	// RunningJobs is the sum of running jobs on scraped in-service instances.
	RunningJobs int `json:"running_jobs"`
	// Queued is the estimate of waiting jobs from the freshest queue signal; -1 when none is fresh.
	Queued int `json:"queued"`
	// QueuingExceededRate is the fleet's rate of jobs that waited too long, per second.
	QueuingExceededRate float64 `json:"queuing_exceeded_rate"`
	// SlotsPerInstance is the capacity assumed for an instance that reports none.
	SlotsPerInstance int `json:"slots_per_instance"`
	// Capacity is the job slots offered now or coming (booting and unknown instances count as
	// SlotsPerInstance each).
	Capacity int `json:"capacity"`
	// Wanted is the job slots the policy wants: running + queued + spare (at least running × 1.5,
	// and one instance more, when saturated without a fresh queue signal).
	Wanted int `json:"wanted"`
	// Saturated reports that every slot of the scraped, serving instances runs a job.
	Saturated bool `json:"saturated"`
	// Min and Max are the bounds in force (schedules and group bounds applied).
	Min int `json:"min"`
	Max int `json:"max"`
	// Schedule is the index of the policy schedule in force, -1 for none.
	Schedule int `json:"schedule"`
}

// Decide returns what to do for one fleet at now. It is pure: same arguments, same decision.
// p is used with its defaults applied; an invalid p is not refused (validate it at load time with
// ValidatePolicy), but the bounds are kept sane.
//
// Scale-out happens at once, to cover the jobs running, the jobs queued (from queue signals no
// older than QueueMaxAge) and the spare slots asked for; without a fresh queue signal, a
// saturated fleet grows by half its running jobs per decision. Scale-in removes only idle, scraped
// instances older than MinUptime, at most MaxScaleInStep per decision, once the fleet has had
// spare capacity for ScaleInWindow, and never while more than MaxUnknownShare of the in-service
// instances are unknown; an unknown instance counts as capacity but never as spare, and launches
// the group has not made are cancelled before any running instance is removed. Instances whose intake is stopped,
// unhealthy or spot-interrupted offer no slots. When GitLab rejects every scraped runner's job
// requests, the fleet grows only to its floor and by one probe every RejectedProbeEvery, and
// idle rejected instances above the floor are removed, oldest first. A desired capacity someone
// lowered below the instances listed is first set back to them (nothing is unprotected while it
// is below), so that Auto Scaling never picks instances to remove on its own.
func Decide(now time.Time, p fleet.Policy, in Input) Decision {
	p = p.WithDefaults()
	d := decide(now, p, in)
	if id, why := replacement(now, p, in, d); id != "" {
		d.Replace = []string{id}
		d.Reason += "; " + why
	}
	return d
}

// decide is Decide without replacements; p has its defaults.
func decide(now time.Time, p fleet.Policy, in Input) Decision {
	eff := EffectiveAt(now, p)

	var members []fleet.Instance
	for _, inst := range in.Instances {
		if !inst.State.Leaving() {
			members = append(members, inst)
		}
	}
	base := max(in.Desired, len(members))
	obs := Observation{Instances: base, Queued: -1, Schedule: eff.Schedule}
	obs.SlotsPerInstance = slotsPerInstance(members, p.InstanceSlots)

	// Bounds: the policy's (schedule applied), within the group's.
	lo, hi := max(eff.Min, 1), max(p.MaxInstances, 1)
	if in.GroupMax > 0 {
		hi = min(hi, in.GroupMax)
	}
	// A group minimum above the policy's maximum: the group keeps that many whatever the policy
	// says, so removing "over max" would only be refused, every tick.
	hi = max(hi, in.GroupMin)
	lo = max(lo, in.GroupMin)
	lo = min(lo, hi)
	obs.Min, obs.Max = lo, hi

	freshestAge := time.Duration(math.MaxInt64)
	serving := 0 // slots of scraped, serving instances
	inService := 0
	healthy, rejected := 0, 0 // scraped in-service instances whose job requests succeed, fail
	for _, inst := range members {
		switch {
		case inst.State.Booting():
			obs.Booting++
			obs.Capacity += obs.SlotsPerInstance
			continue
		case inst.State.InService() && (inst.IntakeStopped || inst.SpotInterrupted):
			// Its marks say it offers nothing, whether or not its runner still answers (an idle
			// runner told to stop exits at once, and its scrape fails).
			inService++
			continue
		case inst.Unknown:
			inService++
			obs.Unknown++
			obs.Capacity += obs.SlotsPerInstance
			continue
		}
		inService++
		if inst.Healthy {
			healthy++
		} else {
			rejected++
		}
		if inst.Serving() {
			obs.RunningJobs += inst.RunningJobs
			obs.Capacity += inst.Capacity
			serving += inst.Capacity
		}
		if p.DisableQueueSignals {
			continue
		}
		obs.QueuingExceededRate += inst.QueuingExceededRate
		if inst.QueueStale || inst.QueueAge > p.QueueMaxAge {
			continue
		}
		// The freshest signal wins; among equally fresh ones (pickups in the same instant) the
		// smallest, taken after the others.
		if size := max(inst.QueueSize, 0); inst.QueueAge < freshestAge || (inst.QueueAge == freshestAge && size < obs.Queued) {
			freshestAge, obs.Queued = inst.QueueAge, size
		}
	}
	missing := base - len(members) // launches the group has not listed yet
	obs.Booting += missing
	obs.Capacity += missing * obs.SlotsPerInstance

	spare := eff.IdleSlots
	if p.ScaleFactor > 0 {
		f := int(math.Ceil(p.ScaleFactor * float64(obs.RunningJobs)))
		if p.ScaleFactorLimit > 0 {
			f = min(f, p.ScaleFactorLimit)
		}
		spare = max(spare, f)
	}
	obs.Wanted = obs.RunningJobs + max(obs.Queued, 0) + spare
	// No fresh queue signal (runners without queue metrics, or no pickup for a while): a fleet
	// with every slot busy, or whose jobs wait too long, may have jobs waiting that nothing
	// reports; ask for free slots for half the running jobs (at least one instance's worth), so
	// it grows by half while that holds.
	obs.Saturated = serving > 0 && obs.RunningJobs >= serving
	if obs.Queued < 0 && (obs.Saturated || obs.QueuingExceededRate > 0) {
		obs.Wanted = max(obs.Wanted, obs.RunningJobs+max(obs.SlotsPerInstance, ceilDiv(obs.RunningJobs, 2)))
	}

	d := Decision{Desired: in.Desired, Observation: obs}
	d.State = nextState(now, in.State, members)
	d.Protect, d.Unprotect = protection(members)
	summary := fmt.Sprintf("want %d slots (running %d, queued %s, spare %d), have %d on %d instances (%d booting, %d unknown)",
		obs.Wanted, obs.RunningJobs, queuedText(obs.Queued), spare, obs.Capacity, base, obs.Booting, obs.Unknown)

	// Kept on every decision, pinned and repairing ones too: a stale clock would remove at once.
	if healthy == 0 && rejected > 0 {
		if d.State.RejectedSince.IsZero() {
			d.State.RejectedSince = now
		}
	} else {
		d.State.RejectedSince = time.Time{}
	}
	if repair := repairTarget(in, inService); repair > in.Desired {
		// Someone (a console edit, a scheduled action, a stack update) lowered the desired
		// capacity below the instances in service, and Auto Scaling would terminate unprotected
		// ones on its own (below the policy's minimum, past its window and its guards). The
		// capacity is set back to them first and nothing is unprotected: the policy, or a pin,
		// removes idle instances from the next decision on, and a policy wanting more scales out
		// from there in this one. Booting instances are not counted: Auto Scaling launches
		// before it terminates when it rebalances zones, so for a moment it lists more than it
		// desires.
		below := fmt.Sprintf("the desired capacity %d is below the %d instances in service, "+
			"so Auto Scaling would remove unprotected ones on its own", in.Desired, inService)
		fixed := in
		fixed.Desired = repair
		if out := decide(now, p, fixed); out.Desired > repair && len(out.Remove) == 0 {
			out.Unprotect = nil
			out.Reason = below + "; " + out.Reason
			return out
		}
		d.Desired, d.Unprotect = repair, nil
		d.Reason = fmt.Sprintf("repair %d → %d: %s; %s", in.Desired, repair, below, summary)
		return d
	}
	if in.Pinned != nil {
		return decidePinned(now, in, base, members, d, summary)
	}

	target := base
	if deficit := obs.Wanted - obs.Capacity; deficit > 0 {
		target = base + ceilDiv(deficit, obs.SlotsPerInstance)
	}
	rejectedAll := ""
	if healthy == 0 && rejected > 0 && target > max(base, lo) {
		// GitLab rejects every runner's job requests (a revoked or expired token): a new
		// instance registering with the same token serves nothing either, so growing for the
		// demand would only pay for instances up to the maximum. The floor holds, and, once the
		// fleet is down to it, one instance probes every RejectedProbeEvery: once the token
		// parameter is fixed (no cycle needed), it serves and the fleet grows again.
		if newest := newestLaunch(members); obs.Booting == 0 && base <= lo && now.Sub(newest) >= RejectedProbeEvery {
			target = base + 1
			rejectedAll = fmt.Sprintf("GitLab rejects the job requests of all %d scraped runners (a revoked or expired runner token?): "+
				"one instance probes whether the token parameter is fixed; the fleet grows for demand once a runner serves", rejected)
		} else {
			target = base
			rejectedAll = fmt.Sprintf("GitLab rejects the job requests of all %d scraped runners "+
				"(a revoked or expired runner token?): new instances would be rejected too, so the fleet does not grow for demand "+
				"(one instance probes every %s); fix the token parameter", rejected, RejectedProbeEvery)
		}
	}
	target = min(max(target, lo), hi)
	if rejectedAll != "" && target == base {
		d.State.SpareSince = time.Time{}
		// Rejected runners serve nothing and never free a slot, so the usual scale-in never
		// removes them: idle ones above the floor go, oldest first (a probe is the newest), so
		// probes replace them instead of adding up to the maximum.
		limit := min(p.MaxScaleInStep, in.Desired-lo)
		wait := ""
		switch rejectedFor := now.Sub(d.State.RejectedSince); {
		case obs.Booting > 0:
			limit = 0 // a probe in flight: keep what is scraped until it is scraped too
		case rejectedFor < p.ScaleInWindow:
			limit = 0
			wait = fmt.Sprintf(" (idle ones above the floor go once rejected for %s; %s so far)", p.ScaleInWindow, rejectedFor)
		}
		for _, inst := range oldestFirst(members) {
			if len(d.Remove) >= limit {
				break
			}
			if inst.Idle() && !inst.Healthy && now.Sub(inst.LaunchedAt) >= p.MinUptime {
				d.Remove = append(d.Remove, inst.ID)
			}
		}
		if len(d.Remove) > 0 {
			d.Unprotect = slices.DeleteFunc(d.Unprotect, func(id string) bool { return slices.Contains(d.Remove, id) })
			d.Desired = in.Desired - len(d.Remove)
			d.State.LastScaleIn = now
			d.Reason = fmt.Sprintf("scale in %d → %d, removing idle rejected %s: %s; %s", in.Desired, d.Desired, strings.Join(d.Remove, ","), rejectedAll, summary)
			return d
		}
		d.Reason = "no scale-out: " + rejectedAll + wait + "; " + summary
		return d
	}
	if target > base {
		d.Desired = target
		d.State.LastScaleOut = now
		d.State.SpareSince = time.Time{}
		d.Reason = fmt.Sprintf("scale out %d → %d: %s", in.Desired, target, summary)
		if rejectedAll != "" {
			d.Reason = fmt.Sprintf("scale out %d → %d: %s; %s", in.Desired, target, rejectedAll, summary)
		}
		return d
	}

	over := base - hi
	// An unknown instance counts as capacity (scale-out does not chase a failed scrape) but never
	// as spare: its slots may all be running jobs that obs.Wanted does not see, so removing an
	// instance on the strength of them could leave the fleet short.
	surplus := obs.Capacity - obs.Unknown*obs.SlotsPerInstance - obs.Wanted
	if over <= 0 && (base <= lo || surplus < obs.SlotsPerInstance) {
		d.State.SpareSince = time.Time{}
		d.Reason = "steady: " + summary
		return d
	}
	if d.State.SpareSince.IsZero() {
		d.State.SpareSince = now
	}
	if blocked := unknownGuard(p, obs.Unknown, inService); blocked != "" {
		d.Reason = "no scale-in: " + blocked + "; " + summary
		return d
	}
	if over <= 0 {
		if spareFor := now.Sub(d.State.SpareSince); spareFor < p.ScaleInWindow {
			d.Reason = fmt.Sprintf("no scale-in yet: spare capacity for %s of %s; %s", spareFor, p.ScaleInWindow, summary)
			return d
		}
	}
	if missing > 0 {
		// Launches the group was asked for and has not made (no spot capacity, a quota, a
		// broken launch template) go first: removing a running instance while one may never
		// come would leave the fleet short. Cancelling them lowers the desired capacity to no
		// fewer than the members listed, which terminates nothing.
		cancel := min(missing, in.Desired-lo)
		if over <= 0 {
			cancel = min(cancel, surplus/obs.SlotsPerInstance)
		}
		if cancel <= 0 {
			d.Reason = fmt.Sprintf("no scale-in: the group has not made %d of the launches it was asked for; %s", missing, summary)
			return d
		}
		return cancelLaunches(now, d, in.Desired, in.Desired-cancel, "", summary)
	}

	// Each removal lowers the group's desired capacity by one (terminate with decrement): the
	// room is desired's, not the members'. A group can list more members than it desires (its
	// protected instances kept when someone lowered desired, an instance terminated a moment
	// ago still listed); counting those would take desired below the minimum, or below zero.
	limit := min(p.MaxScaleInStep, in.Desired-lo)
	candidates := removable(now, p.MinUptime, members, d.State.IdleSince)
	free := serving - obs.RunningJobs // free slots of scraped, serving instances
	skipped := ""                     // why the last candidate skipped was kept
	for _, c := range candidates {
		if len(d.Remove) >= limit {
			break
		}
		slots := 0
		if c.Serving() {
			slots = c.Capacity
		}
		if len(d.Remove) >= over {
			if surplus-slots < 0 {
				skipped = fmt.Sprintf("removing %s would leave fewer free slots than wanted", c.ID)
				continue
			}
			// Without a fresh queue signal, never leave the fleet saturated: that would only
			// make it grow again next tick (long jobs would churn an instance every few minutes).
			if obs.Queued < 0 && slots > 0 && free-slots <= 0 {
				skipped = fmt.Sprintf("removing %s would leave no free slot, and no queue signal says none is needed", c.ID)
				continue
			}
		}
		surplus -= slots
		free -= slots
		d.Remove = append(d.Remove, c.ID)
	}
	if len(d.Remove) == 0 {
		why := fmt.Sprintf("no idle instance older than %s", p.MinUptime)
		switch {
		case limit <= 0:
			why = fmt.Sprintf("the desired capacity %d is at the floor %d", in.Desired, lo)
		case skipped != "":
			why = skipped
		}
		d.Reason = fmt.Sprintf("no scale-in: spare capacity but %s; %s", why, summary)
		return d
	}
	d.Unprotect = slices.DeleteFunc(d.Unprotect, func(id string) bool { return slices.Contains(d.Remove, id) })
	d.Desired = in.Desired - len(d.Remove)
	d.State.LastScaleIn = now
	d.Reason = fmt.Sprintf("scale in %d → %d, removing idle %s: %s", in.Desired, d.Desired, strings.Join(d.Remove, ","), summary)
	return d
}

// cancelLaunches lowers the desired capacity from desired to to, cancelling launches the group
// has not made: the caller keeps to at or above the members listed, so nothing is terminated.
func cancelLaunches(now time.Time, d Decision, desired, to int, prefix, summary string) Decision {
	d.Desired = to
	d.State.LastScaleIn = now
	d.Reason = fmt.Sprintf("%sscale in %d → %d, cancelling %d launch(es) the group has not made: %s", prefix, desired, to, desired-to, summary)
	return d
}

// RejectedProbeEvery is how often a fleet whose every runner GitLab rejects launches one
// instance anyway: it serves once the token parameter is fixed, and the fleet then grows again.
const RejectedProbeEvery = 30 * time.Minute

// oldestFirst returns members sorted by launch time, oldest first (then by ID).
func oldestFirst(members []fleet.Instance) []fleet.Instance {
	out := slices.Clone(members)
	slices.SortStableFunc(out, func(a, b fleet.Instance) int {
		return cmp.Or(a.LaunchedAt.Compare(b.LaunchedAt), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// newestLaunch is the latest LaunchedAt of members (zero for none).
func newestLaunch(members []fleet.Instance) time.Time {
	var newest time.Time
	for _, m := range members {
		if m.LaunchedAt.After(newest) {
			newest = m.LaunchedAt
		}
	}
	return newest
}

// repairTarget is the desired capacity that covers the group's members that are not leaving,
// within the group's maximum. A fleet pinned at 0 (or switched off: MaxSize 0, pinned by its
// caller) wants every idle instance gone, which is what the group's own scale-in does (each
// drained, busy ones protected): it is not repaired.
func repairTarget(in Input, members int) int {
	if in.Pinned != nil && *in.Pinned <= 0 {
		return in.Desired
	}
	if in.GroupMax > 0 {
		return min(members, in.GroupMax)
	}
	return members
}

// MaxPinnedRemovals bounds the instances a pin removes in one decision: each is one
// TerminateInstanceInAutoScalingGroup, made in series within the tick's apply timeout and
// against the account's Auto Scaling request rate, which the drains they start need too. A pin
// far below the fleet's size reaches it over a few ticks.
const MaxPinnedRemovals = 50

// decidePinned follows an operator's pin: raise at once, or remove idle instances (up to
// MaxPinnedRemovals a decision, no window, no minimum uptime) until the pin is reached.
func decidePinned(now time.Time, in Input, base int, members []fleet.Instance, d Decision, summary string) Decision {
	target := max(*in.Pinned, 0)
	if in.GroupMax > 0 {
		target = min(target, in.GroupMax)
	}
	target = max(target, in.GroupMin)
	d.State.SpareSince = time.Time{}
	switch {
	case target > base:
		d.Desired = target
		d.State.LastScaleOut = now
		d.Reason = fmt.Sprintf("pinned at %d: scale out %d → %d: %s", target, in.Desired, target, summary)
	case target < base && in.Desired > len(members) && in.Desired > target:
		// Launches the group has not made go before any running instance (see Decide).
		d = cancelLaunches(now, d, in.Desired, max(len(members), target), fmt.Sprintf("pinned at %d: ", target), summary)
	case target < base:
		for _, c := range removable(now, 0, members, d.State.IdleSince) {
			if len(d.Remove) >= min(in.Desired-target, MaxPinnedRemovals) { // each removal decrements desired
				break
			}
			d.Remove = append(d.Remove, c.ID)
		}
		if len(d.Remove) == 0 {
			d.Reason = fmt.Sprintf("pinned at %d: waiting for an instance to become idle: %s", target, summary)
			return d
		}
		d.Unprotect = slices.DeleteFunc(d.Unprotect, func(id string) bool { return slices.Contains(d.Remove, id) })
		d.Desired = in.Desired - len(d.Remove)
		d.State.LastScaleIn = now
		d.Reason = fmt.Sprintf("pinned at %d: removing idle %s: %s", target, strings.Join(d.Remove, ","), summary)
	default:
		d.Reason = fmt.Sprintf("pinned at %d: %s", target, summary)
	}
	return d
}

// slotsPerInstance is the capacity reported by most scraped, serving instances (the largest on
// a tie), or fallback when none reports.
func slotsPerInstance(members []fleet.Instance, fallback int) int {
	counts := map[int]int{}
	best, bestN := 0, 0
	for _, inst := range members {
		if !inst.Serving() || inst.Capacity <= 0 {
			continue
		}
		counts[inst.Capacity]++
		n := counts[inst.Capacity]
		if n > bestN || (n == bestN && inst.Capacity > best) {
			best, bestN = inst.Capacity, n
		}
	}
	if best == 0 {
		return max(fallback, 1)
	}
	return best
}

func unknownGuard(p fleet.Policy, unknown, inService int) string {
	if unknown == 0 || inService == 0 {
		return ""
	}
	share := float64(unknown) / float64(inService)
	if p.MaxUnknownShare < 0 || share > p.MaxUnknownShare {
		return fmt.Sprintf("%d of %d in-service instances unknown (share %.2f above %.2f)", unknown, inService, share, max(p.MaxUnknownShare, 0))
	}
	return ""
}

// replacement picks the instance to replace, if any, and says why: in service, not marked by a
// notice, its scrape failing for p.ReplaceUnknownAfter or longer (the longest first), while at
// least one other in-service runner answers (every runner failing is the scrape's path, not the
// instances) and nothing boots (one replacement at a time, none while the fleet launches). Not
// in a fleet pinned at 0 or switched off.
func replacement(now time.Time, p fleet.Policy, in Input, d Decision) (string, string) {
	if p.ReplaceUnknownAfter < 0 || (in.Pinned != nil && *in.Pinned <= 0) || d.Observation.Booting > 0 {
		return "", ""
	}
	answering := false
	var pick string
	var since time.Time
	for _, inst := range in.Instances {
		if !inst.State.InService() || inst.IntakeStopped || inst.SpotInterrupted {
			continue
		}
		if !inst.Unknown {
			answering = true
			continue
		}
		s, ok := d.State.UnknownSince[inst.ID]
		if ok && now.Sub(s) >= p.ReplaceUnknownAfter && (pick == "" || s.Before(since) || (s.Equal(since) && inst.ID < pick)) {
			pick, since = inst.ID, s
		}
	}
	if !answering || pick == "" {
		return "", ""
	}
	return pick, fmt.Sprintf("replacing %s: its runner's metrics have not answered for %s while others' do (drained first; the group launches another)",
		pick, now.Sub(since).Round(time.Second))
}

// nextState carries idle-since marks forward: kept for instances still idle, set for newly idle
// ones, dropped for busy ones and ones gone; unknown instances keep theirs. Unknown-since marks
// are kept for in-service instances still failing their scrape, set for newly failing ones.
func nextState(now time.Time, prev State, members []fleet.Instance) State {
	s := prev
	s.IdleSince = make(map[string]time.Time, len(members))
	for _, inst := range members {
		since, had := prev.IdleSince[inst.ID]
		switch {
		case inst.Idle():
			if !had {
				since = now
			}
			s.IdleSince[inst.ID] = since
		case inst.Unknown && had:
			s.IdleSince[inst.ID] = since
		}
	}
	if len(s.IdleSince) == 0 {
		s.IdleSince = nil
	}
	s.UnknownSince = nil
	for _, inst := range members {
		if !inst.State.InService() || !inst.Unknown || inst.IntakeStopped || inst.SpotInterrupted {
			continue
		}
		since, had := prev.UnknownSince[inst.ID]
		if !had {
			since = now
		}
		if s.UnknownSince == nil {
			s.UnknownSince = map[string]time.Time{}
		}
		s.UnknownSince[inst.ID] = since
	}
	return s
}

// protection lists busy unprotected instances to protect and idle protected ones to unprotect.
func protection(members []fleet.Instance) (protect, unprotect []string) {
	for _, inst := range members {
		switch {
		case inst.Busy() && !inst.Protected:
			protect = append(protect, inst.ID)
		case inst.Idle() && inst.Protected:
			unprotect = append(unprotect, inst.ID)
		}
	}
	return protect, unprotect
}

// removable lists idle, scraped instances launched at least minUptime ago, best first: those
// offering no slots (unhealthy, intake stopped, reclaimed), then rebalance-marked, then the
// longest idle, then the oldest.
func removable(now time.Time, minUptime time.Duration, members []fleet.Instance, idleSince map[string]time.Time) []fleet.Instance {
	var out []fleet.Instance
	for _, inst := range members {
		if inst.Idle() && now.Sub(inst.LaunchedAt) >= minUptime {
			out = append(out, inst)
		}
	}
	rank := func(i fleet.Instance) int {
		switch {
		case !i.Serving():
			return 0
		case i.RebalanceRecommended:
			return 1
		}
		return 2
	}
	slices.SortStableFunc(out, func(a, b fleet.Instance) int {
		return cmp.Or(
			cmp.Compare(rank(a), rank(b)),
			idleSince[a.ID].Compare(idleSince[b.ID]),
			a.LaunchedAt.Compare(b.LaunchedAt),
			cmp.Compare(a.ID, b.ID),
		)
	})
	return out
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func queuedText(q int) string {
	if q < 0 {
		return "unseen"
	}
	return fmt.Sprint(q)
}
