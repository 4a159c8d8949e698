package sim

import (
	"container/heap"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/runnerfleet/runnerfleet/fleet"
	"github.com/runnerfleet/runnerfleet/scaling"
)

// Config describes the simulated group and its runners. The zero value of a field means its
// default (see DefaultConfig).
type Config struct {
	// Boot is the time from launch to taking jobs. Default 180s.
	Boot time.Duration
	// Concurrency is the job slots of one instance (the runner's `concurrent`). Default 4.
	Concurrency int
	// Tick is the time between two decisions. Default 60s.
	Tick time.Duration
	// Min and Max are the group's bounds. Defaults 1 and 40.
	Min, Max int
	// Start is the wall-clock time of the trace's start (policies with schedules and plots read
	// the time of day from it). Default Monday 2026-01-05 00:00 UTC.
	Start time.Time
	// ScrapeFailure is the share (0..1) of scrapes that fail, making that instance unknown.
	ScrapeFailure float64
	// NoQueueSignals switches the simulated runners' queue metrics off (queue size/depth and the
	// queuing-exceeded counter are never reported).
	NoQueueSignals bool
	// AcceptableQueuing is the runners' acceptable queuing duration: a job picked up after
	// waiting longer counts in the queuing-exceeded counter. Default 60s.
	AcceptableQueuing time.Duration
	// Placement says which free slot takes a job: PlacementInstance (default) or PlacementSlot.
	Placement string
	// Seed seeds the simulation's randomness (which free slot takes a job, which scrapes fail).
	Seed uint64
}

// Job placements: how the simulated runners share the queue.
const (
	// PlacementInstance gives a job to an instance with a free slot, each equally likely: every
	// gitlab-runner process keeps one job request in flight (request_concurrency 1) whatever its
	// free slots, and the first request GitLab answers gets the job.
	PlacementInstance = "instance"
	// PlacementSlot gives a job to a free slot, each equally likely: emptier instances get more.
	PlacementSlot = "slot"
)

// DefaultStart is the default wall-clock start of a trace: a Monday, midnight UTC.
var DefaultStart = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

// DefaultConfig returns the defaults of the issue: boot 180 s, concurrency 4, tick 60 s, min 1,
// max 40, no scrape failures.
func DefaultConfig() Config {
	c := Config{}
	c.setDefaults()
	return c
}

func (c *Config) setDefaults() {
	if c.Boot == 0 {
		c.Boot = 180 * time.Second
	}
	if c.Concurrency == 0 {
		c.Concurrency = 4
	}
	if c.Tick == 0 {
		c.Tick = 60 * time.Second
	}
	if c.Min == 0 {
		c.Min = 1
	}
	if c.Max == 0 {
		c.Max = 40
	}
	if c.Start.IsZero() {
		c.Start = DefaultStart
	}
	if c.Placement == "" {
		c.Placement = PlacementInstance
	}
	if c.AcceptableQueuing == 0 {
		c.AcceptableQueuing = 60 * time.Second
	}
}

// Validate reports every problem of c (after defaults) joined, or nil.
func (c Config) Validate() error {
	var errs []error
	if c.Boot < 0 {
		errs = append(errs, fmt.Errorf("boot must not be negative, got %s", c.Boot))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency must be at least 1, got %d", c.Concurrency))
	}
	if c.Tick < time.Second {
		errs = append(errs, fmt.Errorf("tick must be at least 1s, got %s", c.Tick))
	}
	if c.Min < 1 {
		errs = append(errs, fmt.Errorf("min must be at least 1, got %d", c.Min))
	}
	if c.Max < c.Min {
		errs = append(errs, fmt.Errorf("max (%d) must be at least min (%d)", c.Max, c.Min))
	}
	if c.ScrapeFailure < 0 || c.ScrapeFailure >= 1 {
		errs = append(errs, fmt.Errorf("scrape failure share must be in [0, 1), got %g", c.ScrapeFailure))
	}
	if c.Placement != PlacementInstance && c.Placement != PlacementSlot {
		errs = append(errs, fmt.Errorf("placement must be %q or %q, got %q", PlacementInstance, PlacementSlot, c.Placement))
	}
	return errors.Join(errs...)
}

// Policy is a scaling policy under simulation.
type Policy struct {
	// Name names the policy in results.
	Name string
	// Decide is called at every tick with what the scraper returned; the Decision is applied to
	// the simulated group as handlers/scale applies it to a real one (a lower Desired without
	// Remove makes the group terminate its oldest unprotected instances, as an ASG does).
	Decide func(now time.Time, in scaling.Input) scaling.Decision
	// KillAfter, when positive, kills the jobs still running on a removed instance this long
	// after its removal began (a lifecycle hook timing out without heartbeats). Zero: removed
	// instances drain for as long as their jobs run.
	KillAfter time.Duration
	// Cooldown, when positive, makes the group honour its cooldown when the policy lowers the
	// desired capacity, as SetDesiredCapacity with HonorCooldown true does: the lowering is
	// refused while a scaling activity is in progress (an instance launching until it is in
	// service, or terminating until it is gone: a lifecycle hook keeps the activity going while
	// the instance drains) and until Cooldown has passed since the last activity ended. Raising
	// is never refused.
	Cooldown time.Duration

	// trueQueue, for tests bounding what observation could buy, feeds every in-service
	// runner's queue size with the true queue at the tick. Production never sees it.
	trueQueue bool
}

// SeedCooldown is how long the AWS sample waits after the last scaling activity before lowering.
const SeedCooldown = 600 * time.Second

// SeedHookTimeout is the AWS sample's lifecycle hook timeout; it sends no heartbeats.
const SeedHookTimeout = 3600 * time.Second

// SeedSpare is the constant the AWS sample adds to the running jobs.
const SeedSpare = 2

// SeedPolicy reproduces the AWS sample "Deploy and Manage GitLab Runners on Amazon EC2": every
// tick, desired = clamp(ceil((running jobs + 2) / concurrency), min, max) with concurrency a
// constant and an unknown instance counted as 0 jobs (the sample scrapes InService and Pending
// instances; draining ones are not its members any more). The sample sets that desired capacity
// with HonorCooldown false to raise and true to lower, so the group raises at once and lowers
// only SeedCooldown after the last scaling activity ended (see Policy.Cooldown), removing its
// oldest instances; jobs still running SeedHookTimeout after an instance's removal began are
// killed.
func SeedPolicy(concurrency int) Policy {
	return Policy{
		Name:      "seed",
		KillAfter: SeedHookTimeout,
		Cooldown:  SeedCooldown,
		Decide: func(now time.Time, in scaling.Input) scaling.Decision {
			running := 0
			for _, i := range in.Instances {
				if i.State.InService() && !i.Unknown {
					running += i.RunningJobs
				}
			}
			want := (running + SeedSpare + concurrency - 1) / concurrency
			want = min(max(want, in.GroupMin), in.GroupMax)
			d := scaling.Decision{Desired: want, State: in.State}
			switch {
			case want > in.Desired:
				d.Reason = fmt.Sprintf("seed: %d running → raise to %d", running, want)
			case want < in.Desired:
				d.Reason = fmt.Sprintf("seed: %d running → lower to %d (honouring the cooldown)", running, want)
			default:
				d.Reason = fmt.Sprintf("seed: %d running, keep %d", running, want)
			}
			return d
		},
	}
}

// OurPolicy runs p through scaling.Decide, as the worker does; removed instances drain without
// limit. Bounds p leaves unset are the group's.
func OurPolicy(p fleet.Policy) Policy {
	return Policy{
		Name: "policy",
		Decide: func(now time.Time, in scaling.Input) scaling.Decision {
			q := p
			if q.MinInstances == 0 {
				q.MinInstances = in.GroupMin
			}
			if q.MaxInstances == 0 {
				q.MaxInstances = in.GroupMax
			}
			return scaling.Decide(now, q, in)
		},
	}
}

// Result is what a simulation measured. Waits are in seconds, from a job's arrival to its pickup.
type Result struct {
	Policy        string  `json:"policy"`
	Jobs          int     `json:"jobs"`
	P50           float64 `json:"p50"`
	P95           float64 `json:"p95"`
	Max           float64 `json:"max"`
	InstanceHours float64 `json:"instance-hours"`
	ScaleActions  int     `json:"scale-actions"`
	Killed        int     `json:"killed"`
	// Duration is the simulated time, from the trace's start to its last job's end.
	Duration time.Duration `json:"-"`
	// Timeline has one sample per tick.
	Timeline []Sample `json:"-"`
	// Waits are every job's queue wait, sorted.
	Waits []time.Duration `json:"-"`
}

// Sample is the simulated world at one tick, after the decision was applied.
type Sample struct {
	At time.Time
	// Running and Queued are the true running and waiting jobs (demand = Running + Queued).
	Running, Queued int
	// Capacity is the job slots of in-service instances that take jobs.
	Capacity int
	// Instances counts launched, not yet terminated instances (booting and draining included).
	Instances int
	// Desired is the group's desired capacity.
	Desired int
	// OldestWait is how long the oldest waiting job has waited.
	OldestWait time.Duration
	// Reason is the policy's reason.
	Reason string
}

type runJob struct {
	end    time.Duration
	inst   *instance
	killed bool
	index  int
}

type instance struct {
	id               string
	launched, ready  time.Duration
	removed          bool
	removedAt        time.Duration
	terminated       bool
	terminatedAt     time.Duration
	jobs             []*runJob
	protected        bool
	picked           bool
	lastPickup       time.Duration
	queueSize        int
	exceeded         int
	scraped          bool
	lastScrape       time.Duration
	exceededAtScrape int
}

type jobHeap []*runJob

func (h jobHeap) Len() int           { return len(h) }
func (h jobHeap) Less(i, j int) bool { return h[i].end < h[j].end }
func (h jobHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].index, h[j].index = i, j }
func (h *jobHeap) Push(x any)        { j := x.(*runJob); j.index = len(*h); *h = append(*h, j) }
func (h *jobHeap) Pop() any {
	old := *h
	j := old[len(old)-1]
	*h = old[:len(old)-1]
	return j
}

// world is one simulation run.
type world struct {
	cfg     Config
	pol     Policy
	rng     *rand.Rand
	jobs    []Job
	next    int // next job to arrive
	queue   []Job
	running jobHeap
	active  []*instance // not terminated
	all     []*instance
	desired int
	state   scaling.State
	waits   []time.Duration
	killed  int
	actions int
	nextID  int
	res     Result
	// lastActivityEnd is when the group's last scaling activity ended (an instance in service
	// or terminated); activity reports that there was one.
	lastActivityEnd time.Duration
	activity        bool
}

// Run replays jobs (sorted by arrival) through pol on cfg's simulated group, starting with the
// group's minimum of instances in service, until every job has ended.
func Run(cfg Config, pol Policy, jobs []Job) (Result, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return Result{}, fmt.Errorf("simulation config: %w", err)
	}
	if pol.Decide == nil {
		return Result{}, errors.New("simulation policy has no Decide")
	}
	if !slices.IsSortedFunc(jobs, func(a, b Job) int { return int(a.Arrival - b.Arrival) }) {
		return Result{}, errors.New("trace jobs are not sorted by arrival")
	}
	w := &world{cfg: cfg, pol: pol, jobs: jobs, rng: rand.New(rand.NewPCG(cfg.Seed, 0x5eed))}
	w.res.Policy, w.res.Jobs = pol.Name, len(jobs)
	for range cfg.Min {
		in := w.launch(0)
		in.ready = 0
	}
	w.desired = cfg.Min
	t, nextTick := time.Duration(0), time.Duration(0)
	for {
		w.completeUntil(t)
		w.killUntil(t)
		for w.next < len(w.jobs) && w.jobs[w.next].Arrival <= t {
			w.queue = append(w.queue, w.jobs[w.next])
			w.next++
		}
		w.dispatch(t)
		if t == nextTick {
			w.tick(t)
			nextTick += cfg.Tick
		}
		if w.next == len(w.jobs) && len(w.queue) == 0 && w.running.Len() == 0 {
			break
		}
		t = w.nextEvent(t, nextTick)
	}
	w.finish(t)
	return w.res, nil
}

func (w *world) launch(t time.Duration) *instance {
	w.nextID++
	in := &instance{id: fmt.Sprintf("i-%05d", w.nextID), launched: t, ready: t + w.cfg.Boot}
	w.active = append(w.active, in)
	w.all = append(w.all, in)
	return in
}

func (w *world) terminate(in *instance, t time.Duration) {
	in.terminated, in.terminatedAt = true, t
	w.activity, w.lastActivityEnd = true, max(w.lastActivityEnd, t)
	w.active = slices.DeleteFunc(w.active, func(x *instance) bool { return x == in })
}

func (w *world) completeUntil(t time.Duration) {
	for w.running.Len() > 0 && w.running[0].end <= t {
		j := heap.Pop(&w.running).(*runJob)
		in := j.inst
		in.jobs = slices.DeleteFunc(in.jobs, func(x *runJob) bool { return x == j })
		if in.removed && len(in.jobs) == 0 {
			w.terminate(in, j.end)
		}
	}
}

func (w *world) killUntil(t time.Duration) {
	if w.pol.KillAfter <= 0 {
		return
	}
	for _, in := range slices.Clone(w.active) {
		if in.removed && in.removedAt+w.pol.KillAfter <= t {
			for _, j := range in.jobs {
				heap.Remove(&w.running, j.index)
				w.killed++
			}
			in.jobs = nil
			w.terminate(in, in.removedAt+w.pol.KillAfter)
		}
	}
}

func (w *world) taking(in *instance, t time.Duration) bool {
	return !in.removed && in.ready <= t && len(in.jobs) < w.cfg.Concurrency
}

// dispatch hands queued jobs, first come first served, to free slots of in-service instances
// that take jobs, chosen at random as runners polling GitLab get them (see Placement).
func (w *world) dispatch(t time.Duration) {
	weight := func(in *instance) int {
		if !w.taking(in, t) {
			return 0
		}
		if w.cfg.Placement == PlacementSlot {
			return w.cfg.Concurrency - len(in.jobs)
		}
		return 1
	}
	for len(w.queue) > 0 {
		total := 0
		for _, in := range w.active {
			total += weight(in)
		}
		if total == 0 {
			return
		}
		k := w.rng.IntN(total)
		var pick *instance
		for _, in := range w.active {
			if k < weight(in) {
				pick = in
				break
			}
			k -= weight(in)
		}
		job := w.queue[0]
		w.queue = w.queue[1:]
		wait := t - job.Arrival
		w.waits = append(w.waits, wait)
		rj := &runJob{end: t + job.Duration, inst: pick}
		pick.jobs = append(pick.jobs, rj)
		heap.Push(&w.running, rj)
		// What the runner learns from GitLab at a pickup: the jobs still pending for it.
		pick.picked, pick.lastPickup, pick.queueSize = true, t, len(w.queue)
		if wait > w.cfg.AcceptableQueuing {
			pick.exceeded++
		}
	}
}

func (w *world) nextEvent(t, nextTick time.Duration) time.Duration {
	next := nextTick
	if w.next < len(w.jobs) {
		next = min(next, w.jobs[w.next].Arrival)
	}
	if w.running.Len() > 0 {
		next = min(next, w.running[0].end)
	}
	for _, in := range w.active {
		if in.ready > t {
			next = min(next, in.ready)
		}
		if w.pol.KillAfter > 0 && in.removed {
			next = min(next, in.removedAt+w.pol.KillAfter)
		}
	}
	return max(next, t+1)
}

// observe is the scraper: per instance, what production would give the policy.
func (w *world) observe(t time.Duration) []fleet.Instance {
	out := make([]fleet.Instance, 0, len(w.active))
	for _, in := range w.active {
		o := fleet.Instance{ID: in.id, LaunchedAt: w.at(in.launched), Protected: in.protected,
			LaunchTemplateVersion: "1"}
		switch {
		case in.removed:
			o.State = fleet.StateTerminatingWait
		case in.ready > t:
			o.State = fleet.StatePending // not scraped: a booting instance reports nothing
		default:
			o.State = fleet.StateInService
			if w.cfg.ScrapeFailure > 0 && w.rng.Float64() < w.cfg.ScrapeFailure {
				o.Unknown, o.UnknownReason = true, "scrape failed (simulated)"
				break
			}
			o.Healthy = true
			o.Capacity = w.cfg.Concurrency
			o.RunningJobs = len(in.jobs)
			o.QueueStale = true
			if !w.cfg.NoQueueSignals {
				if in.picked {
					o.QueueSize, o.QueueDepth = in.queueSize, 1
					o.QueueAge, o.QueueStale = t-in.lastPickup, false
				}
				if w.pol.trueQueue {
					o.QueueSize, o.QueueDepth, o.QueueAge, o.QueueStale = len(w.queue), 1, 0, false
				}
				if in.scraped && t > in.lastScrape {
					o.QueuingExceededRate = float64(in.exceeded-in.exceededAtScrape) / (t - in.lastScrape).Seconds()
				}
			}
			in.scraped, in.lastScrape, in.exceededAtScrape = true, t, in.exceeded
		}
		out = append(out, o)
	}
	return out
}

func (w *world) at(d time.Duration) time.Time { return w.cfg.Start.Add(d) }

func (w *world) tick(t time.Duration) {
	now := w.at(t)
	in := scaling.Input{Instances: w.observe(t), Desired: w.desired, GroupMin: w.cfg.Min, GroupMax: w.cfg.Max, State: w.state}
	d := w.pol.Decide(now, in)
	w.state = d.State
	before := w.desired
	byID := map[string]*instance{}
	for _, in := range w.active {
		byID[in.id] = in
	}
	for _, id := range d.Protect {
		if in := byID[id]; in != nil {
			in.protected = true
		}
	}
	for _, id := range d.Unprotect {
		if in := byID[id]; in != nil {
			in.protected = false
		}
	}
	for _, id := range d.Remove {
		if in := byID[id]; in != nil && !in.removed {
			w.remove(in, t)
			w.desired--
		}
	}
	for _, id := range d.Replace {
		// Terminated without lowering the desired capacity: the group launches another.
		if in := byID[id]; in != nil && !in.removed {
			w.remove(in, t)
			next := w.launch(t)
			next.protected = w.pol.KillAfter == 0
			w.activity, w.lastActivityEnd = true, max(w.lastActivityEnd, next.ready)
		}
	}
	target := min(max(d.Desired, w.cfg.Min), w.cfg.Max)
	if target > w.desired {
		for range target - w.desired {
			in := w.launch(t)
			in.protected = w.pol.KillAfter == 0 // our fleets protect new instances
			// The launch activity ends when the instance is in service; while it boots,
			// coolingDown sees it in progress.
			w.activity, w.lastActivityEnd = true, max(w.lastActivityEnd, in.ready)
		}
		w.desired = target
	}
	refused := ""
	if target < w.desired && w.coolingDown(t) {
		refused = fmt.Sprintf("; the group refused %d → %d: scaling activity in progress or in cooldown", w.desired, target)
		target = w.desired
	}
	if target < w.desired {
		// The group terminates its oldest unprotected instances (the sample's OldestInstance).
		var victims []*instance
		for _, in := range w.active {
			if !in.removed && !in.protected {
				victims = append(victims, in)
			}
		}
		slices.SortStableFunc(victims, func(a, b *instance) int { return int(a.launched - b.launched) })
		for _, in := range victims[:min(len(victims), w.desired-target)] {
			w.remove(in, t)
			w.desired--
		}
	}
	if w.desired != before {
		w.actions++
	}
	w.sample(t, d.Reason+refused)
}

// coolingDown reports whether the group refuses to lower its desired capacity at t under the
// policy's Cooldown: an instance is launching (not yet in service) or terminating (removed, not
// yet gone), or the last activity ended less than Cooldown ago.
func (w *world) coolingDown(t time.Duration) bool {
	if w.pol.Cooldown <= 0 {
		return false
	}
	for _, in := range w.active {
		if in.removed || in.ready > t {
			return true
		}
	}
	return w.activity && t-w.lastActivityEnd < w.pol.Cooldown
}

func (w *world) remove(in *instance, t time.Duration) {
	in.removed, in.removedAt = true, t
	if len(in.jobs) == 0 {
		w.terminate(in, t)
	}
}

func (w *world) sample(t time.Duration, reason string) {
	s := Sample{At: w.at(t), Running: w.running.Len(), Queued: len(w.queue), Instances: len(w.active),
		Desired: w.desired, Reason: reason}
	for _, in := range w.active {
		if !in.removed && in.ready <= t {
			s.Capacity += w.cfg.Concurrency
		}
	}
	if len(w.queue) > 0 {
		s.OldestWait = t - w.queue[0].Arrival
	}
	w.res.Timeline = append(w.res.Timeline, s)
}

func (w *world) finish(end time.Duration) {
	w.res.Duration = end
	w.res.Killed = w.killed
	w.res.ScaleActions = w.actions
	var hours float64
	for _, in := range w.all {
		stop := end
		if in.terminated {
			stop = min(in.terminatedAt, end)
		}
		hours += (stop - in.launched).Hours()
	}
	w.res.InstanceHours = hours
	slices.Sort(w.waits)
	w.res.Waits = w.waits
	w.res.P50 = percentile(w.waits, 0.50).Seconds()
	w.res.P95 = percentile(w.waits, 0.95).Seconds()
	if len(w.waits) > 0 {
		w.res.Max = w.waits[len(w.waits)-1].Seconds()
	}
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
