package drain

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the drain's Prometheus metrics. Labels are low-cardinality: fleet, outcome,
// document, phase.
type Metrics struct {
	// InProgress is the number of unfinished drains per fleet, as of the last Sweep (the table
	// is the truth across replicas).
	InProgress *prometheus.GaugeVec
	// OldestAge is the age in seconds of the oldest unfinished drain per fleet, as of the last Sweep.
	OldestAge *prometheus.GaugeVec
	// LeastTimeLeft is the time in seconds before the nearest maximum-drain deadline of the
	// fleet's unfinished drains (0 when none), as of the last Sweep.
	LeastTimeLeft *prometheus.GaugeVec
	// Duration observes how long finished drains took, by fleet and outcome.
	Duration *prometheus.HistogramVec
	// Heartbeats counts lifecycle heartbeats sent, by fleet.
	Heartbeats *prometheus.CounterVec
	// Finished counts finished drains by fleet and outcome.
	Finished *prometheus.CounterVec
	// Errors counts drains finished in error (any outcome but completed) and failed SSM
	// commands, by fleet and kind.
	Errors *prometheus.CounterVec
	// Steps counts steps taken, by fleet and the phase they ran.
	Steps *prometheus.CounterVec
	// Recovered counts drains Sweep advanced because their follow-up was overdue.
	Recovered *prometheus.CounterVec
}

// NewMetrics creates the drain metrics and registers them with reg (nil: not registered, for
// tests and for several handlers in one process).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		InProgress: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "runnerfleet", Subsystem: "drain", Name: "in_progress",
			Help: "Unfinished drains per fleet, as of the last sweep of the state table.",
		}, []string{"fleet"}),
		OldestAge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "runnerfleet", Subsystem: "drain", Name: "oldest_age_seconds",
			Help: "Age of the oldest unfinished drain per fleet, as of the last sweep.",
		}, []string{"fleet"}),
		LeastTimeLeft: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "runnerfleet", Subsystem: "drain", Name: "least_time_left_seconds",
			Help: "Time before the nearest maximum-drain deadline of the fleet's unfinished drains (0 when none), as of the last sweep: past it, jobs still running are killed.",
		}, []string{"fleet"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "runnerfleet", Subsystem: "drain", Name: "duration_seconds",
			Help: "How long finished drains took, from the lifecycle event to the finish.",
			// 1 s to ~48 h.
			Buckets: prometheus.ExponentialBuckets(1, 3, 12),
		}, []string{"fleet", "outcome"}),
		Heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "runnerfleet", Subsystem: "drain", Name: "heartbeats_total",
			Help: "Lifecycle action heartbeats sent.",
		}, []string{"fleet"}),
		Finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "runnerfleet", Subsystem: "drain", Name: "finished_total",
			Help: "Drains finished, by outcome.",
		}, []string{"fleet", "outcome"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "runnerfleet", Subsystem: "drain", Name: "errors_total",
			Help: "Failed SSM commands (kind = document role) and drains finished in error (kind = outcome).",
		}, []string{"fleet", "kind"}),
		Steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "runnerfleet", Subsystem: "drain", Name: "steps_total",
			Help: "Drain steps taken, by the phase they ran.",
		}, []string{"fleet", "phase"}),
		Recovered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "runnerfleet", Subsystem: "drain", Name: "recovered_total",
			Help: "Drains the sweep advanced because their next step was overdue.",
		}, []string{"fleet"}),
	}
	if reg != nil {
		reg.MustRegister(m.InProgress, m.OldestAge, m.LeastTimeLeft, m.Duration, m.Heartbeats, m.Finished, m.Errors, m.Steps, m.Recovered)
	}
	return m
}
