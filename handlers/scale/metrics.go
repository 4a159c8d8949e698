package scale

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the handler's Prometheus series, served on the worker's /metrics. Labels are the
// fleet name (a handful per worker) and small fixed sets; never instance IDs.
type metrics struct {
	activeJobs    *prometheus.GaugeVec
	capacity      *prometheus.GaugeVec
	desired       *prometheus.GaugeVec
	inService     *prometheus.GaugeVec
	unknown       *prometheus.GaugeVec
	queued        *prometheus.GaugeVec
	decisions     *prometheus.CounterVec
	unknownScrape *prometheus.CounterVec
	applyErrors   *prometheus.CounterVec
	publishFails  *prometheus.CounterVec
	tickSeconds   *prometheus.HistogramVec
	lostRaces     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "runnerfleet", Subsystem: "fleet", Name: name, Help: help}, []string{"fleet"})
	}
	m := &metrics{
		activeJobs: gauge("active_jobs", "Jobs occupying slots on scraped in-service instances, at the last tick."),
		capacity:   gauge("capacity", "Job slots offered or coming (booting and unknown instances count as one typical instance), at the last tick."),
		desired:    gauge("desired_capacity", "The group's desired capacity after the last decision."),
		inService:  gauge("in_service_instances", "InService instances at the last tick."),
		unknown:    gauge("unknown_instances", "InService instances whose runner metrics could not be read at the last tick."),
		queued:     gauge("queued_jobs", "Jobs waiting, from the freshest runner queue signal at the last tick; -1 when none is fresh."),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "runnerfleet", Subsystem: "scale", Name: "decisions_total",
			Help: "Scaling decisions taken, by fleet and action (scale_out, scale_in, steady; held: decided while a cycle owns the capacity, nothing resized or removed)."}, []string{"fleet", "action"}),
		unknownScrape: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "runnerfleet", Subsystem: "scale", Name: "unknown_scrapes_total",
			Help: "Runner scrapes that failed, by fleet and reason."}, []string{"fleet", "reason"}),
		applyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "runnerfleet", Subsystem: "scale", Name: "apply_errors_total",
			Help: "Failed Auto Scaling calls applying a decision, by fleet and operation."}, []string{"fleet", "op"}),
		publishFails: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "runnerfleet", Subsystem: "scale", Name: "metric_publish_failures_total",
			Help: "Failed CloudWatch publishes of fleet metrics (they never block a decision)."}, []string{"fleet"}),
		tickSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "runnerfleet", Subsystem: "scale", Name: "tick_duration_seconds",
			Help:    "Time from the start of a tick to its decision applied.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}}, []string{"fleet"}),
		lostRaces: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "runnerfleet", Subsystem: "scale", Name: "skipped_ticks_total",
			Help: "Ticks not decided, by fleet and cause (duplicate delivery, another worker decided first)."}, []string{"fleet", "cause"}),
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.activeJobs, m.capacity, m.desired, m.inService, m.unknown, m.queued,
		m.decisions, m.unknownScrape, m.applyErrors, m.publishFails, m.tickSeconds, m.lostRaces} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) observe(f FleetMetrics) {
	m.activeJobs.WithLabelValues(f.Fleet).Set(float64(f.ActiveJobs))
	m.capacity.WithLabelValues(f.Fleet).Set(float64(f.Capacity))
	m.desired.WithLabelValues(f.Fleet).Set(float64(f.DesiredCapacity))
	m.inService.WithLabelValues(f.Fleet).Set(float64(f.InServiceInstances))
	m.unknown.WithLabelValues(f.Fleet).Set(float64(f.UnknownInstances))
	m.queued.WithLabelValues(f.Fleet).Set(float64(f.QueuedJobs))
}
