package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Trace kinds the generator makes.
const (
	// KindWeek is a working week, Monday to Sunday: pipelines of parallel stages arriving through
	// working hours (peaks late morning and afternoon, a lunch dip), team bursts, nightly
	// scheduled pipelines, then a quiet weekend.
	KindWeek = "week"
	// KindWeekend is Saturday and Sunday: a few pipelines and the nightly ones.
	KindWeekend = "weekend"
	// KindSpike is one working day at a third of the usual rate with a sudden spike: a burst of
	// several hundred jobs within two minutes (a dependency bump fanned out to every project).
	KindSpike = "spike"
)

// Kinds lists the kinds Generate knows.
var Kinds = []string{KindWeek, KindWeekend, KindSpike}

// Trace is a generated or read trace: its jobs and the wall-clock time of its start.
type Trace struct {
	// Start is the wall-clock time of arrival 0, or zero when the trace does not say.
	Start time.Time
	Jobs  []Job
}

// Generate makes a trace of kind, the same for the same seed.
func Generate(kind string, seed uint64) (Trace, error) {
	g := &generator{rng: rand.New(rand.NewPCG(seed, uint64(len(kind))*0x9e3779b97f4a7c15))}
	switch kind {
	case KindWeek:
		for day := range 7 {
			if day < 5 {
				g.workday(day, 1)
			} else {
				g.weekendDay(day)
			}
		}
		return g.trace(DefaultStart), nil
	case KindWeekend:
		g.weekendDay(0)
		g.weekendDay(1)
		return g.trace(DefaultStart.AddDate(0, 0, 5)), nil // a Saturday
	case KindSpike:
		g.workday(0, 1.0/3)
		at := 10*time.Hour + 30*time.Minute
		for range 320 {
			g.add(at+g.uniform(0, 120*time.Second), g.duration(6*time.Minute))
		}
		return g.trace(DefaultStart), nil
	}
	return Trace{}, fmt.Errorf("unknown trace kind %q (want one of %v)", kind, Kinds)
}

type generator struct {
	rng  *rand.Rand
	jobs []Job
}

func (g *generator) trace(start time.Time) Trace {
	slices.SortStableFunc(g.jobs, func(a, b Job) int { return int(a.Arrival - b.Arrival) })
	// Millisecond precision, as written to and read from CSV.
	for i := range g.jobs {
		g.jobs[i].Arrival = g.jobs[i].Arrival.Round(time.Millisecond)
		g.jobs[i].Duration = g.jobs[i].Duration.Round(time.Millisecond)
	}
	return Trace{Start: start, Jobs: g.jobs}
}

func (g *generator) add(at, d time.Duration) { g.jobs = append(g.jobs, Job{Arrival: at, Duration: d}) }

// weekdayRate is pipelines per hour by hour of a working day.
var weekdayRate = [24]float64{
	0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.5, 2, 6, 11, 13, 12,
	7, 10, 13, 12, 9, 6, 3, 1.5, 1, 0.8, 0.5, 0.3,
}

func (g *generator) workday(day int, scale float64) {
	origin := time.Duration(day) * 24 * time.Hour
	g.poisson(origin, weekdayRate, scale)
	// Team bursts: a few merges land together and each runs its pipeline.
	for range g.rng.IntN(3) + 1 + int(2*scale) {
		at := origin + g.uniform(9*time.Hour, 17*time.Hour)
		for range g.rng.IntN(5) + 4 {
			g.pipeline(at+g.uniform(0, 4*time.Minute), false)
		}
	}
	g.nightly(origin)
}

func (g *generator) weekendDay(day int) {
	origin := time.Duration(day) * 24 * time.Hour
	var rate [24]float64
	for h := range rate {
		rate[h] = 0.2
		if h >= 10 && h < 18 {
			rate[h] = 0.6
		}
	}
	g.poisson(origin, rate, 1)
	g.nightly(origin)
}

// nightly is the scheduled pipeline at 02:00 with a wide test stage.
func (g *generator) nightly(origin time.Duration) {
	at := origin + 2*time.Hour
	build := g.duration(5 * time.Minute)
	g.add(at, build)
	at += build + 20*time.Second
	for range 24 {
		g.add(at, g.duration(12*time.Minute))
	}
}

// poisson starts pipelines as a Poisson process whose rate per hour is rate[hour] × scale.
func (g *generator) poisson(origin time.Duration, rate [24]float64, scale float64) {
	for h, r := range rate {
		r *= scale
		if r <= 0 {
			continue
		}
		t := 0.0
		for {
			t += g.rng.ExpFloat64() / r // hours
			if t >= 1 {
				break
			}
			at := origin + time.Duration(h)*time.Hour + time.Duration(t*float64(time.Hour))
			g.pipeline(at, g.rng.Float64() < 0.08)
		}
	}
}

// pipeline adds the jobs of one pipeline starting at at: a build stage, one to three test
// stages of parallel jobs, sometimes a deploy; each stage starts when the previous one's
// slowest job would have ended (open loop: the trace does not know about queueing).
func (g *generator) pipeline(at time.Duration, big bool) {
	stages := [][2]int{{1, 2}} // build: 1-2 jobs
	for range g.rng.IntN(3) + 1 {
		if big {
			stages = append(stages, [2]int{10, 30})
		} else {
			stages = append(stages, [2]int{2, 8})
		}
	}
	if g.rng.Float64() < 0.4 {
		stages = append(stages, [2]int{1, 1}) // deploy
	}
	medians := []time.Duration{3 * time.Minute, 6 * time.Minute, 5 * time.Minute, 4 * time.Minute, 2 * time.Minute}
	for s, bounds := range stages {
		n := bounds[0] + g.rng.IntN(bounds[1]-bounds[0]+1)
		median := medians[min(s, len(medians)-1)]
		if s == len(stages)-1 && bounds == [2]int{1, 1} {
			median = 2 * time.Minute
		}
		longest := time.Duration(0)
		for range n {
			d := g.duration(median)
			longest = max(longest, d)
			g.add(at, d)
		}
		at += longest + g.uniform(5*time.Second, 30*time.Second)
	}
}

// duration draws a job duration: log-normal around median, between 20 s and 45 min.
func (g *generator) duration(median time.Duration) time.Duration {
	d := time.Duration(float64(median) * math.Exp(0.6*g.rng.NormFloat64()))
	return min(max(d, 20*time.Second), 45*time.Minute)
}

func (g *generator) uniform(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(g.rng.Int64N(int64(hi-lo)+1))
}
