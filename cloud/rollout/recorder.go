package rollout

import (
	"log/slog"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
)

// Recorder logs the steps of rollouts and counts them in Prometheus
// metrics. Plans are computed again on every change of a plugin (and by
// every reconcile worker), so the Recorder logs and counts each step once,
// remembering the last step seen per plugin; that memory serves only the
// logs and metrics, never the rollout itself.
type Recorder struct {
	log *slog.Logger

	waves     *prometheus.CounterVec
	rollbacks *prometheus.CounterVec
	failures  *prometheus.CounterVec
	updated   *prometheus.GaugeVec
	failed    *prometheus.GaugeVec

	mu   sync.Mutex
	last map[string]step // plugin → last step recorded
}

type step struct {
	target string
	wave   int32
	phase  mappersv1alpha1.RolloutPhase
}

// NewRecorder returns a Recorder logging to log (nil means slog.Default())
// with its metrics registered with reg (nil for none).
func NewRecorder(log *slog.Logger, reg prometheus.Registerer) *Recorder {
	if log == nil {
		log = slog.Default()
	}
	r := &Recorder{
		log: log,
		waves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wapper_cloud_rollout_waves_total", Help: "Rollout waves started, by plugin."}, []string{"plugin"}),
		rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wapper_cloud_rollout_rollbacks_total", Help: "Rollouts rolled back (spec.module set back to the previous module), by plugin."}, []string{"plugin"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wapper_cloud_rollout_failures_total", Help: "Rollouts stopped by a node failing the target module, by plugin."}, []string{"plugin"}),
		updated: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wapper_cloud_rollout_updated_nodes", Help: "Nodes that report the rollout's target module loaded, by plugin."}, []string{"plugin"}),
		failed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wapper_cloud_rollout_failed_nodes", Help: "Nodes that failed the rollout's target module, by plugin."}, []string{"plugin"}),
		last: map[string]step{},
	}
	if reg != nil {
		reg.MustRegister(r.waves, r.rollbacks, r.failures, r.updated, r.failed)
	}
	return r
}

// Record logs and counts what plan changes for plugin. It is safe for
// concurrent use.
func (r *Recorder) Record(plugin string, plan Plan) {
	st := plan.Status
	cur := step{target: st.TargetDigest, wave: st.CurrentWave, phase: st.Phase}
	r.updated.WithLabelValues(plugin).Set(float64(st.UpdatedNodes))
	r.failed.WithLabelValues(plugin).Set(float64(len(st.FailedNodes)))
	r.mu.Lock()
	prev, seen := r.last[plugin]
	r.last[plugin] = cur
	r.mu.Unlock()
	if seen && prev == cur {
		return
	}
	log := r.log.With("plugin", plugin, "target", st.TargetDigest, "previous", st.PreviousDigest)
	if plan.RolledBack && (prev.target != cur.target || !seen) {
		r.rollbacks.WithLabelValues(plugin).Inc()
		log.Warn("rollout: rolling back: every node is sent the previous module", "from", st.PreviousDigest, "nodes", st.TotalNodes)
	} else if plan.Started && (prev.target != cur.target || !seen) {
		log.Info("rollout: new module; rolling out in waves", "nodes", st.TotalNodes, "inWaves", st.PreviousModule != mappersv1alpha1.Module{})
	}
	if plan.WaveStarted && (prev.target != cur.target || prev.wave != cur.wave) {
		r.waves.WithLabelValues(plugin).Inc()
		log.Info("rollout: wave started", "wave", st.CurrentWave, "nodes", st.CurrentWaveNodes, "updated", st.UpdatedNodes, "total", st.TotalNodes)
	}
	if cur.phase == prev.phase && cur.target == prev.target {
		return
	}
	switch cur.phase {
	case mappersv1alpha1.RolloutFailed:
		r.failures.WithLabelValues(plugin).Inc()
		for _, f := range st.FailedNodes {
			log.Warn("rollout: node failed the target module; no further wave starts", "node", f.Node, "reason", f.Reason)
		}
	case mappersv1alpha1.RolloutPaused:
		log.Info("rollout: paused by spec.rollout.paused", "wave", st.CurrentWave, "updated", st.UpdatedNodes, "total", st.TotalNodes)
	case mappersv1alpha1.RolloutComplete:
		log.Info("rollout: complete", "nodes", st.TotalNodes, "waves", strconv.Itoa(int(st.CurrentWave)))
	}
}

// Forget drops what the Recorder holds of a deleted plugin.
func (r *Recorder) Forget(plugin string) {
	r.mu.Lock()
	delete(r.last, plugin)
	r.mu.Unlock()
	r.updated.DeleteLabelValues(plugin)
	r.failed.DeleteLabelValues(plugin)
}
