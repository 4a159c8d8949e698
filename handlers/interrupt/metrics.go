package interrupt

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the package's Prometheus series. Labels are low-cardinality: fleet, kind, action,
// cause, op — never instance IDs.
type Metrics struct {
	// Notices counts spot and rebalance notices by fleet ("" when unmanaged), kind (spot,
	// rebalance) and action (stopped, reported, unmanaged, unreachable: SSM could not reach it).
	Notices *prometheus.CounterVec
	// JobsLost counts jobs that were running when an instance went away outside a drain's
	// control, by cause: spot (reclaimed after a warning), drain (the instance stopped or
	// terminated while its drain was in progress).
	JobsLost *prometheus.CounterVec
	// DrainsLost counts drains finished as lost.
	DrainsLost *prometheus.CounterVec
	// Replaced counts rebalance-marked instances a tick replaced.
	Replaced *prometheus.CounterVec
	// Retired counts instances retired by a drain command, by replace ("true"/"false").
	Retired *prometheus.CounterVec
	// Errors counts failed calls by op (stop_intake, terminate, replace).
	Errors *prometheus.CounterVec
	// StateChanges counts leaving instances' state changes by result: not_managed (the instance's
	// group tag names no managed fleet: nothing looked up) or looked_up.
	StateChanges *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "runnerfleet", Subsystem: "interrupt", Name: name, Help: help}, labels)
	}
	m := &Metrics{
		Notices:      counter("notices_total", "Spot interruption and rebalance notices, by what was done.", "fleet", "kind", "action"),
		JobsLost:     counter("jobs_lost_total", "Jobs running when an instance went away outside a completed drain.", "fleet", "cause"),
		DrainsLost:   counter("drains_lost_total", "Drains finished as lost: the instance stopped or terminated under them.", "fleet"),
		Replaced:     counter("replaced_total", "Rebalance-marked instances replaced by a tick.", "fleet"),
		Retired:      counter("retired_total", "Instances retired by a drain command.", "fleet", "replace"),
		Errors:       counter("errors_total", "Failed calls, by operation.", "fleet", "op"),
		StateChanges: counter("state_changes_total", "State changes of leaving instances, by whether they were looked up (not_managed: not a fleet's).", "result"),
	}
	if reg != nil {
		reg.MustRegister(m.Notices, m.JobsLost, m.DrainsLost, m.Replaced, m.Retired, m.Errors, m.StateChanges)
	}
	return m
}
