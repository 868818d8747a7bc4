package subs

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the engine's Prometheus metrics.
type metrics struct {
	subscriptions prometheus.Gauge
	clients       *prometheus.GaugeVec // kind: subscriptions | updates
	events        prometheus.Counter
	match         prometheus.Histogram
	drops         prometheus.Counter
	batch         prometheus.Histogram
	tooLarge      prometheus.Counter
}

// matchBuckets span 10 us to about 10 s: a restricted re-run is tens of microseconds, a
// full re-run of a large result can take seconds.
var matchBuckets = prometheus.ExponentialBuckets(0.00001, 3, 13)

func newMetrics() *metrics {
	return &metrics{
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "patina_subscriptions", Help: "Live subscriptions (with or without clients).",
		}),
		clients: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "patina_subscription_clients", Help: "Connected stream clients by kind (subscriptions, updates).",
		}, []string{"kind"}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patina_subscription_events_total", Help: "Change and notify events produced.",
		}),
		match: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "patina_subscription_match_seconds", Help: "Time to re-evaluate one subscription after a batch of commits.",
			Buckets: matchBuckets,
		}),
		drops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patina_subscription_drops_total", Help: "Clients disconnected because their event buffer was full (events or bytes).",
		}),
		tooLarge: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patina_subscription_events_too_large_total", Help: "Events (rows or changes) not sent because they encode to more than subscriptions.max_event_bytes.",
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "patina_subscription_batch_seconds", Help: "Time to take in one batch of commit notices, for every subscription it touches.",
			Buckets: matchBuckets,
		}),
	}
}

// register registers the metrics. When they are already registered (an engine reopened on
// the same registry) the registered ones are adopted, so that figures continue.
func (m *metrics) register(r prometheus.Registerer) error {
	return errors.Join(
		adopt(r, &m.subscriptions), adopt(r, &m.clients), adopt(r, &m.events),
		adopt(r, &m.match), adopt(r, &m.drops), adopt(r, &m.batch), adopt(r, &m.tooLarge))
}

func adopt[C prometheus.Collector](r prometheus.Registerer, c *C) error {
	err := r.Register(*c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if old, ok := are.ExistingCollector.(C); ok {
			*c = old
			return nil
		}
	}
	return err
}
