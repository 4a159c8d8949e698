package observe

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Kind labels used for messages that have no parsed kind.
const (
	// KindInvalid labels a message whose body could not be parsed.
	KindInvalid = "invalid"
	// KindUnknown labels a well-formed event of a kind the worker does not handle.
	KindUnknown = "unknown"
)

// Outcome of one message's handling (label "outcome" of the duration histogram).
const (
	OutcomeAcked        = "acked"
	OutcomeNacked       = "nacked"
	OutcomeDeadLettered = "dead_lettered"
	OutcomeIgnored      = "ignored"
)

// Metrics are the message-handling metrics of the worker. Labels stay low-cardinality: queue is
// the configured queue role ("lifecycle", "control"), kind a messages.Kind or KindInvalid /
// KindUnknown, cause one of "invalid", "rejected", "panic".
type Metrics struct {
	// Received counts messages delivered to the router.
	Received *prometheus.CounterVec
	// Acked counts messages acked after their handler succeeded (or were ignored as unknown).
	Acked *prometheus.CounterVec
	// Nacked counts messages released for redelivery after a transient failure.
	Nacked *prometheus.CounterVec
	// DeadLettered counts messages the worker published to the queue's DLQ and acked.
	DeadLettered *prometheus.CounterVec
	// Unknown counts well-formed events of kinds no handler takes; they are acked.
	Unknown *prometheus.CounterVec
	// Retries counts in-process retries of transient handler failures.
	Retries *prometheus.CounterVec
	// HandlerDuration observes the whole handling of one message, retries included.
	HandlerDuration *prometheus.HistogramVec
	// EventLag observes the time from the event's own time (or a command's issue time) to its
	// receipt by the worker.
	EventLag *prometheus.HistogramVec
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	qk := []string{"queue", "kind"}
	m := &Metrics{
		Received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runnerfleet_messages_received_total", Help: "Messages delivered to the worker's router.",
		}, qk),
		Acked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runnerfleet_messages_acked_total", Help: "Messages acked (handled, or ignored as an unknown kind).",
		}, qk),
		Nacked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runnerfleet_messages_nacked_total", Help: "Messages released for redelivery after a transient failure.",
		}, qk),
		DeadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runnerfleet_messages_dead_lettered_total", Help: "Messages the worker moved to the queue's DLQ (with a reason attribute) and acked.",
		}, []string{"queue", "kind", "cause"}),
		Unknown: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runnerfleet_messages_unknown_total", Help: "Well-formed events of kinds no handler takes (acked).",
		}, []string{"queue"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runnerfleet_handler_retries_total", Help: "In-process retries of transient handler failures.",
		}, qk),
		HandlerDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "runnerfleet_handler_duration_seconds",
			Help:    "Time to handle one message, retries included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"queue", "kind", "outcome"}),
		EventLag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "runnerfleet_event_lag_seconds",
			Help:    "Time from an event's own time (a command's issue time) to its receipt by the worker.",
			Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600},
		}, qk),
	}
	reg.MustRegister(m.Received, m.Acked, m.Nacked, m.DeadLettered, m.Unknown, m.Retries, m.HandlerDuration, m.EventLag)
	return m
}

// ObserveLag records the lag of an event of kind on queue from its own time t; a zero t (no
// time in the message) or a time in the future (clock skew) is not recorded.
func (m *Metrics) ObserveLag(queue, kind string, t, now time.Time) {
	if t.IsZero() || now.Before(t) {
		return
	}
	m.EventLag.WithLabelValues(queue, kind).Observe(now.Sub(t).Seconds())
}
