package update

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the handler's Prometheus series. Labels: the fleet (a handful per worker) and small
// fixed sets (phase, outcome).
type metrics struct {
	steps     *prometheus.CounterVec
	outcomes  *prometheus.CounterVec
	lostRaces *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "runnerfleet", Subsystem: "update", Name: "steps_total",
			Help: "Steps of fleet updates taken, by fleet and the phase stepped from."}, []string{"fleet", "phase"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "runnerfleet", Subsystem: "update", Name: "finished_total",
			Help: "Fleet updates finished, by fleet and outcome (succeeded, no_changes, planned, failed)."}, []string{"fleet", "outcome"}),
		lostRaces: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "runnerfleet", Subsystem: "update", Name: "lost_races_total",
			Help: "Update record writes that lost to another writer (a duplicate or concurrent step)."}, []string{"fleet"}),
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.steps, m.outcomes, m.lostRaces} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	return m, errors.Join(errs...)
}
