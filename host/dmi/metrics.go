package dmi

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the bridge's Prometheus metrics.
type Metrics struct {
	requests      *prometheus.CounterVec
	registrations *prometheus.CounterVec
	reportsSent   *prometheus.CounterVec
	reportsFailed *prometheus.CounterVec
	pending       prometheus.Gauge
	waiting       *prometheus.GaugeVec
	oldestChange  prometheus.Gauge
	connected     prometheus.Gauge
	devices       prometheus.Gauge
	unreportable  *prometheus.CounterVec
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
			Help: "Reports accepted by edgecore, by kind (twins or state) and class (state_change, value_change or steady).",
		}, []string{"kind", "class"}),
		reportsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wapper_dmi_reports_failed_total",
			Help: "Reports edgecore did not accept, by kind and reason (unavailable and ratelimited are retried, rejected are dropped).",
		}, []string{"kind", "reason"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wapper_dmi_outbox_pending",
			Help: "Reports waiting in the outbox for edgecore.",
		}),
		waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wapper_dmi_outbox_waiting",
			Help: "Reports waiting in the outbox, by class, in the order they are sent: state_change (a state edgecore does not have), value_change (a twin value edgecore does not have), steady (a re-report).",
		}, []string{"class"}),
		oldestChange: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wapper_dmi_outbox_oldest_change_seconds",
			Help: "Age of the oldest state or twin value change waiting in the outbox, 0 if none.",
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wapper_dmi_edgecore_registered",
			Help: "1 while connected to edgecore with every protocol registered, else 0.",
		}),
		devices: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wapper_dmi_devices",
			Help: "Devices held from edgecore over DMI.",
		}),
		unreportable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wapper_dmi_twins_unreportable_total",
			Help: "Twins left out of DMI reports because edgecore would drop them, each time, by reason: name (property name), reported or desired (characters or length of the value), type (the reported value does not parse as its type).",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.registrations, m.reportsSent, m.reportsFailed, m.pending, m.waiting, m.oldestChange, m.connected, m.devices, m.unreportable)
	}
	return m
}

func kindName(k byte) string {
	if k == kindTwins {
		return "twins"
	}
	return "state"
}

// observeOutbox sets the outbox gauges.
func (m *Metrics) observeOutbox(o *outbox) {
	s := o.stats()
	n := 0
	for c, w := range s.waiting {
		m.waiting.WithLabelValues(classNames[c]).Set(float64(w))
		n += w
	}
	m.pending.Set(float64(n))
	m.oldestChange.Set(s.oldestChange.Seconds())
}
