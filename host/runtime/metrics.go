package runtime

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the runtime's Prometheus collectors.
type Metrics struct {
	Calls *prometheus.CounterVec
	// CallDurations times the calls Calls counts, by the same labels.
	CallDurations *prometheus.HistogramVec
	Errors        *prometheus.CounterVec
	Traps         *prometheus.CounterVec
	Restarts      *prometheus.CounterVec
	Instances     *prometheus.GaugeVec
	Reports       *prometheus.CounterVec
	Denials       *prometheus.CounterVec
	LogDrops      *prometheus.CounterVec
}

// callBuckets are the upper bounds of wapper_plugin_call_duration_seconds:
// 16 from 50 µs to 30 s, each about 2.4 times the one before; longer calls
// (up to the longest call timeout, 5 min) fall in +Inf.
var callBuckets = prometheus.ExponentialBucketsRange(50e-6, 30, 16)

// NewMetrics creates the collectors and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wapper_plugin_calls_total", Help: "Calls into plugin exports.",
		}, []string{"plugin", "export"}),
		CallDurations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "wapper_plugin_call_duration_seconds", Help: "Time of the calls wapper_plugin_calls_total counts, whatever their outcome.",
			Buckets: callBuckets,
		}, []string{"plugin", "export"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wapper_plugin_call_errors_total", Help: "Plugin calls that returned an error, by ABI code.",
		}, []string{"plugin", "export", "code"}),
		Traps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wapper_plugin_traps_total", Help: "Instances thrown away, by reason (trap, timeout, exit, panic, malformed).",
		}, []string{"plugin", "reason"}),
		Restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wapper_plugin_restarts_total", Help: "Instances recreated after a failure.",
		}, []string{"plugin"}),
		Instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wapper_plugin_instances", Help: "Live instances per plugin.",
		}, []string{"plugin"}),
		Reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wapper_plugin_reports_total", Help: "Readings pushed by plugins with the report host function.",
		}, []string{"plugin"}),
		Denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wapper_plugin_grant_denials_total", Help: "Resource opens refused by the plugin's grants.",
		}, []string{"plugin", "kind"}),
		LogDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wapper_plugin_log_lines_dropped_total", Help: "Plugin log lines (log host function, stdout, stderr) dropped by the per-plugin rate limit.",
		}, []string{"plugin"}),
	}
	if reg != nil {
		reg.MustRegister(m.Calls, m.CallDurations, m.Errors, m.Traps, m.Restarts, m.Instances, m.Reports, m.Denials, m.LogDrops)
	}
	return m
}
