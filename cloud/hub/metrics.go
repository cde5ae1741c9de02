package hub

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the hub's Prometheus metrics.
type Metrics struct {
	reg          prometheus.Registerer
	authFailures prometheus.Counter
	batches      prometheus.Counter
	items        prometheus.Counter
	acks         prometheus.Counter
	reports      prometheus.Counter
	// refusedReports counts reports on objects outside a node's set.
	refusedReports prometheus.Counter
	// refusedHellos counts hosts refused because another replica serves
	// their node.
	refusedHellos prometheus.Counter
}

// NewMetrics registers the hub's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reg: reg,
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wapper_cloud_hub_auth_failures_total", Help: "Requests refused for a missing or wrong node credential."}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wapper_cloud_hub_batches_sent_total", Help: "Apply batches sent to hosts."}),
		items: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wapper_cloud_hub_items_sent_total", Help: "Objects (and removals) sent to hosts."}),
		acks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wapper_cloud_hub_batches_acked_total", Help: "Apply batches hosts acknowledged."}),
		reports: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wapper_cloud_hub_reports_received_total", Help: "Upstream reports received from hosts."}),
		refusedReports: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wapper_cloud_hub_reports_refused_total", Help: "Reports dropped because they name a device or plugin outside the node's desired set."}),
		refusedHellos: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wapper_cloud_hub_hellos_refused_total", Help: "Host connections refused because another replica serves their node (or ownership could not be decided)."}),
	}
	reg.MustRegister(m.authFailures, m.batches, m.items, m.acks, m.reports, m.refusedReports, m.refusedHellos)
	return m
}

func (m *Metrics) bind(h *Hub) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wapper_cloud_hub_sessions", Help: "Hosts connected to this replica."},
		func() float64 { return float64(len(h.Connected())) }))
}
