package dmi

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the bridge's Prometheus metrics.
type Metrics struct {
	requests      *prometheus.CounterVec
	registrations *prometheus.CounterVec
	reportsSent   *prometheus.CounterVec
	reportsFailed *prometheus.CounterVec
	pending       prometheus.Gauge
	connected     prometheus.Gauge
	devices       prometheus.Gauge
}

// NewMetrics creates the bridge's metrics and registers them with reg
// (none if reg is nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wapper_dmi_requests_total",
			Help: "DeviceMapperService calls from edgecore, by method and gRPC code.",
		}, []string{"method", "code"}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wapper_dmi_registrations_total",
			Help: "MapperRegister calls to edgecore, by protocol and result (ok or error).",
		}, []string{"protocol", "result"}),
		reportsSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wapper_dmi_reports_sent_total",
			Help: "Reports accepted by edgecore, by kind (twins or state).",
		}, []string{"kind"}),
		reportsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wapper_dmi_reports_failed_total",
			Help: "Reports edgecore did not accept, by kind and reason (unavailable and ratelimited are retried, rejected are dropped).",
		}, []string{"kind", "reason"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wapper_dmi_outbox_pending",
			Help: "Reports waiting in the outbox for edgecore.",
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wapper_dmi_edgecore_registered",
			Help: "1 while connected to edgecore with every protocol registered, else 0.",
		}),
		devices: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wapper_dmi_devices",
			Help: "Devices held from edgecore over DMI.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.registrations, m.reportsSent, m.reportsFailed, m.pending, m.connected, m.devices)
	}
	return m
}

func kindName(k byte) string {
	if k == kindTwins {
		return "twins"
	}
	return "state"
}
