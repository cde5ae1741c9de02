package cloudlink

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	connects prometheus.Counter
	refused  prometheus.Counter
	items    prometheus.Counter
	sent     prometheus.Counter
	acked    prometheus.Counter
	drops    *prometheus.CounterVec
	heard    prometheus.Gauge
}

// drop counts a session that ended, or a connection that failed, by why.
func (m *metrics) drop(reason string) { m.drops.WithLabelValues(reason).Inc() }

func newMetrics(reg prometheus.Registerer, l *Link) *metrics {
	m := &metrics{
		connects: prometheus.NewCounter(prometheus.CounterOpts{Name: "wapper_cloudlink_connects_total", Help: "Sessions established with wapper-cloud."}),
		refused:  prometheus.NewCounter(prometheus.CounterOpts{Name: "wapper_cloudlink_refused_total", Help: "Connections wapper-cloud refused for a wrong or missing node credential."}),
		items:    prometheus.NewCounter(prometheus.CounterOpts{Name: "wapper_cloudlink_items_received_total", Help: "Objects and removals received from wapper-cloud."}),
		sent:     prometheus.NewCounter(prometheus.CounterOpts{Name: "wapper_cloudlink_reports_sent_total", Help: "Reports sent to wapper-cloud (resends included)."}),
		acked:    prometheus.NewCounter(prometheus.CounterOpts{Name: "wapper_cloudlink_reports_acked_total", Help: "Reports wapper-cloud acknowledged as written."}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wapper_cloudlink_disconnects_total",
			Help: "Sessions that ended and connections that failed, by reason: timeout (nothing heard within --cloud-timeout, or connecting took longer than the handshake timeout), closed (by the cloud), refused (credential), elsewhere (another wapper-cloud replica serves the node, or may: 409/503 with Retry-After), connect (other connection failures), error."}, []string{"reason"}),
		heard: prometheus.NewGauge(prometheus.GaugeOpts{Name: "wapper_cloudlink_last_heard_timestamp_seconds", Help: "When wapper-cloud was last heard from (a message, a ping or a pong), as a Unix time."}),
	}
	for _, r := range []string{"timeout", "closed", "refused", "elsewhere", "connect", "error"} {
		m.drops.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.connects, m.refused, m.items, m.sent, m.acked, m.drops, m.heard,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wapper_cloudlink_connected", Help: "1 while the link to wapper-cloud is up."},
				func() float64 {
					if l.Connected() {
						return 1
					}
					return 0
				}),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wapper_cloudlink_outbox", Help: "Devices and plugins whose latest report the cloud has not acknowledged."},
				func() float64 { return float64(l.Pending()) }))
	}
	return m
}
