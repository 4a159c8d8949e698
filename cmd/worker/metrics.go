package main

import "github.com/prometheus/client_golang/prometheus"

// workerMetrics are the metrics of the worker's own handlers (the router's are in infra/observe).
type workerMetrics struct {
	// ticks counts ticks handled, by fleet and source ("schedule" or "command").
	ticks *prometheus.CounterVec
}

func newWorkerMetrics(reg prometheus.Registerer) *workerMetrics {
	m := &workerMetrics{
		ticks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runnerfleet_ticks_total", Help: "Fleet ticks handled, by fleet and source (schedule, command).",
		}, []string{"fleet", "source"}),
	}
	reg.MustRegister(m.ticks)
	return m
}
