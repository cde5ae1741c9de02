package controller

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the controller's Prometheus metrics.
type Metrics struct {
	reconciles *prometheus.CounterVec
	duration   prometheus.Histogram
}

// NewMetrics registers the controller's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wapper_cloud_reconciles_total", Help: "Node reconciles, by result."}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "wapper_cloud_reconcile_seconds", Help: "Time to compute a node's desired set.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8)}),
	}
	reg.MustRegister(m.reconciles, m.duration)
	return m
}

func (m *Metrics) observe(d time.Duration, err error) {
	m.duration.Observe(d.Seconds())
	if err != nil {
		m.reconciles.WithLabelValues("error").Inc()
	} else {
		m.reconciles.WithLabelValues("ok").Inc()
	}
}
