package runtime

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"wapper.dev/wapper/abi"
)

// pluginMetrics holds a plugin's collectors, resolved once so the hot path
// does no label lookups.
type pluginMetrics struct {
	m         *Metrics
	plugin    string
	calls     map[string]prometheus.Counter
	times     map[string]*callTimer
	reports   prometheus.Counter
	restarts  prometheus.Counter
	instances prometheus.Gauge
	logDrops  prometheus.Counter
}

var exportNames = []string{
	abi.ExportMarker, abi.ExportAlloc, abi.ExportFree, abi.ExportInit, abi.ExportDeviceAdd, abi.ExportDeviceUpdate,
	abi.ExportDeviceRemove, abi.ExportRead, abi.ExportWrite, abi.ExportState, abi.ExportReadBatch, abi.ExportReadMany,
	abi.ExportMethod, abi.ExportPoll,
}

func newPluginMetrics(m *Metrics, plugin string) pluginMetrics {
	pm := pluginMetrics{
		m: m, plugin: plugin, calls: map[string]prometheus.Counter{}, times: map[string]*callTimer{},
		reports:   m.Reports.WithLabelValues(plugin),
		restarts:  m.Restarts.WithLabelValues(plugin),
		instances: m.Instances.WithLabelValues(plugin),
		logDrops:  m.LogDrops.WithLabelValues(plugin),
	}
	for _, e := range exportNames {
		pm.calls[e] = m.Calls.WithLabelValues(plugin, e)
		pm.times[e] = &callTimer{vec: m.CallDurations, plugin: plugin, export: e}
	}
	return pm
}

func (pm pluginMetrics) call(export string) prometheus.Counter { return pm.calls[export] }

func (pm pluginMetrics) callTime(export string) *callTimer { return pm.times[export] }

// callTimer is one export's series of wapper_plugin_call_duration_seconds,
// made at the export's first call: a histogram series is some twenty
// lines on /metrics, not worth having for exports a plugin never has
// called.
type callTimer struct {
	once           sync.Once
	vec            *prometheus.HistogramVec
	plugin, export string
	obs            prometheus.Observer
}

// observe records a call that took d.
func (t *callTimer) observe(d time.Duration) {
	t.once.Do(func() { t.obs = t.vec.WithLabelValues(t.plugin, t.export) })
	t.obs.Observe(d.Seconds())
}

func (pm pluginMetrics) errors(export string, c abi.Code) prometheus.Counter {
	return pm.m.Errors.WithLabelValues(pm.plugin, export, strconv.Itoa(int(c)))
}

func (pm pluginMetrics) traps(reason string) prometheus.Counter {
	return pm.m.Traps.WithLabelValues(pm.plugin, reason)
}
