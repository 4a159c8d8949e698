package cycle

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the handler's Prometheus series; labels are fleet names and small fixed sets.
type metrics struct {
	started   *prometheus.CounterVec
	finished  *prometheus.CounterVec
	retired   *prometheus.CounterVec
	active    *prometheus.GaugeVec
	steps     *prometheus.CounterVec
	tokens    *prometheus.CounterVec
	applyErrs *prometheus.CounterVec
	// lookFailures counts looks the worker could not make: a runner's (one per runner and step),
	// or the group's (a step that could not describe it), by reason (the Worker* reasons).
	lookFailures *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "runnerfleet", Subsystem: "cycle", Name: name, Help: help}, append([]string{"fleet"}, labels...))
	}
	m := &metrics{
		started:   counter("started_total", "Cycles started, by fleet and trigger (command, token).", "trigger"),
		finished:  counter("finished_total", "Cycles ended, by fleet and outcome (succeeded, failed, aborted).", "outcome"),
		retired:   counter("retired_instances_total", "Old instances a cycle terminated through the group (each then drained)."),
		steps:     counter("steps_total", "Cycle steps taken, by fleet and result (advanced, duplicate, lost_race, claimed: another step in flight held the fleet).", "result"),
		tokens:    counter("token_changes_total", "Changes of a fleet's token parameter, by what was done (cycle, report, deferred).", "action"),
		applyErrs: counter("apply_errors_total", "Auto Scaling calls of a cycle step that failed, by operation.", "op"),
		lookFailures: counter("look_failures_total", "Looks at a runner (or at the group) of a cycle step that the worker could not make: "+
			"its own failure (throttled, access-denied, aws-error, deadline, url-template, network, other), counted neither as healthy nor as unhealthy.", "reason"),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "runnerfleet", Subsystem: "cycle", Name: "in_progress",
			Help: "1 while a cycle of the fleet is in progress."}, []string{"fleet"}),
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.started, m.finished, m.retired, m.active, m.steps, m.tokens, m.applyErrs, m.lookFailures} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	return m, errors.Join(errs...)
}
