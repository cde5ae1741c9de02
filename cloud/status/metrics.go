package status

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the status writer's Prometheus metrics.
type Metrics struct {
	reg    prometheus.Registerer
	writes *prometheus.CounterVec
}

// NewMetrics registers the writer's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{reg: reg, writes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wapper_cloud_status_writes_total", Help: "Status writes to the API server, by kind (device, plugin) and result."},
		[]string{"kind", "result"})}
	reg.MustRegister(m.writes)
	return m
}

func (m *Metrics) bind(w *Writer) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wapper_cloud_status_pending", Help: "Objects whose reported status waits to be written."},
		func() float64 { return float64(w.Pending()) }))
}
