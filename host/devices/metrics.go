package devices

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	readings     *prometheus.CounterVec
	readErrors   *prometheus.CounterVec
	writes       *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	skipped      *prometheus.CounterVec
	addRetries   *prometheus.CounterVec
	pluginErrors prometheus.Counter
	upgrades     *prometheus.CounterVec
	phases       *prometheus.GaugeVec
	plugins      *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		readings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wapper_readings_total",
			Help: "Property values read from devices, by plugin."}, []string{"plugin"}),
		readErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wapper_read_errors_total",
			Help: "Failed property reads, by plugin and ABI error code."}, []string{"plugin", "code"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wapper_desired_writes_total",
			Help: "Desired values written to devices, by plugin and result (ok, error)."}, []string{"plugin", "result"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wapper_device_events_dropped_total",
			Help: "Device events a slow subscriber missed, by subscriber."}, []string{"subscriber"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wapper_reads_skipped_total",
			Help: "Collect-cycle reads (and state queries) skipped because every instance of the plugin stayed busy for a whole cycle, by plugin; raise limits.instances when it grows."}, []string{"plugin"}),
		addRetries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wapper_device_add_retries_total",
			Help: "Transient failures to add or update a device in its plugin, each retried with backoff, by plugin and ABI error code."}, []string{"plugin", "code"}),
		pluginErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "wapper_plugin_load_errors_total",
			Help: "MapperPlugins that failed to load (missing module, digest mismatch, refused module)."}),
		upgrades: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wapper_plugin_upgrades_total",
			Help: "Hot upgrades of a MapperPlugin's module, by plugin and result (ok: every device moved to the new module; rolled_back: the new module failed its probe or its canary devices, and the old one kept running)."}, []string{"plugin", "result"}),
		phases: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wapper_devices",
			Help: "Devices by phase (Running, Error, Pending)."}, []string{"phase"}),
		plugins: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wapper_plugins",
			Help: "MapperPlugins by status (loaded, failed)."}, []string{"status"}),
	}
	for _, ph := range []Phase{PhasePending, PhaseRunning, PhaseError} {
		m.phases.WithLabelValues(string(ph))
	}
	if reg != nil {
		reg.MustRegister(m.readings, m.readErrors, m.writes, m.dropped, m.skipped, m.addRetries, m.pluginErrors, m.upgrades, m.phases, m.plugins)
	}
	return m
}

// updateGauges recounts plugins (devices count their phase changes
// themselves). Callers hold the reconciliation lock (Manager.rec).
func (m *Manager) updateGauges() {
	m.mu.RLock()
	defer m.mu.RUnlock()
	loaded, failed := 0, 0
	for _, p := range m.plugins {
		if p.err != nil {
			failed++
		} else {
			loaded++
		}
	}
	m.met.plugins.WithLabelValues("loaded").Set(float64(loaded))
	m.met.plugins.WithLabelValues("failed").Set(float64(failed))
}
