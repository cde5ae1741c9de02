package runtime

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"wapper.dev/wapper/abi"
)

// pluginMetrics holds a plugin's collectors, resolved once so the hot path
// does no label lookups.
type pluginMetrics struct {
	m         *Metrics
	plugin    string
	calls     map[string]prometheus.Counter
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
		m: m, plugin: plugin, calls: map[string]prometheus.Counter{},
		reports:   m.Reports.WithLabelValues(plugin),
		restarts:  m.Restarts.WithLabelValues(plugin),
		instances: m.Instances.WithLabelValues(plugin),
		logDrops:  m.LogDrops.WithLabelValues(plugin),
	}
	for _, e := range exportNames {
		pm.calls[e] = m.Calls.WithLabelValues(plugin, e)
	}
	return pm
}

func (pm pluginMetrics) call(export string) prometheus.Counter { return pm.calls[export] }

func (pm pluginMetrics) errors(export string, c abi.Code) prometheus.Counter {
	return pm.m.Errors.WithLabelValues(pm.plugin, export, strconv.Itoa(int(c)))
}

func (pm pluginMetrics) traps(reason string) prometheus.Counter {
	return pm.m.Traps.WithLabelValues(pm.plugin, reason)
}
