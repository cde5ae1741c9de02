// Package rollout plans the staged rollout of a MapperPlugin's module
// across the edge nodes that run it. The planner is a pure function: from
// the plugin's spec, its status (status.rollout and the nodes' reports in
// status.nodes) and the nodes that run it, Compute returns the next
// status.rollout and which module each node is to be sent. Since all of a
// rollout's state lives in the status, a restarted wapper-cloud carries on
// where the last one stopped.
//
// The rules:
//
//   - The first time a plugin is seen there is no rollout: every node gets
//     the module at once.
//   - A change of the module's content digest starts a rollout. The nodes
//     not yet in a wave are sent the previous module pinned by its digest;
//     the nodes of a wave are sent the new one. The first wave is the nodes
//     that spec.rollout.canaryNodeSelector matches, when it matches any;
//     each wave holds spec.rollout.maxUnavailable nodes otherwise.
//   - The next wave starts only once every node moved so far reports the
//     target module loaded, and not while spec.rollout.paused is true.
//   - A node that fails the target module (it reports it Failed, or
//     rejected it and rolled back) fails the rollout: no further wave
//     starts, and status.rollout.failedNodes says why, until the node
//     reports the target loaded or spec.module changes. Only reports made
//     after the node was moved in this rollout count (after its wave
//     started, by the node's lastTransitionTime): a rejection left over
//     from an earlier rollout of the same module does not.
//   - A node of the current wave that has not reported the target loaded
//     spec.rollout.progressDeadlineSeconds after the wave started fails
//     the rollout in the same way, paused or not. Input.Now is the clock;
//     Plan.Deadline says when to plan again for it.
//   - Setting spec.module back to the previous module before the rollout
//     completed rolls back at once: every node is sent the previous module
//     in one step, since the new one is known bad.
//   - A new module set while a rollout is under way replaces it: the
//     nodes that had moved go back to the last module that completed a
//     rollout, and the new rollout starts from there in waves.
//   - A module whose content digest is not known (a file module without
//     spec.module.digest) cannot be pinned, so it reaches every node at
//     once.
package rollout

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
)

// HostnameLabel is the label every node has, set to its name, so that a
// canary selector can name nodes that have no Kubernetes Node object.
const HostnameLabel = "kubernetes.io/hostname"

// Node is an edge node that runs the plugin: it has a device the plugin
// serves.
type Node struct {
	// Name is the node's name.
	Name string
	// Labels are the labels of the node's Kubernetes Node object, if any.
	Labels map[string]string
}

// Input is what Compute plans from.
type Input struct {
	// Generation is the plugin's metadata.generation.
	Generation int64
	// Rollout is spec.rollout.
	Rollout mappersv1alpha1.Rollout
	// Module is spec.module.
	Module mappersv1alpha1.Module
	// TargetDigest is the content digest (sha256 of the .wasm) of Module,
	// or "" when it is not known.
	TargetDigest string
	// Status is status.rollout as last written.
	Status mappersv1alpha1.RolloutStatus
	// Reports are status.nodes: what each node last reported.
	Reports []mappersv1alpha1.NodeStatus
	// Nodes are the nodes that run the plugin.
	Nodes []Node
	// Now is the time of the plan: a wave started by it starts at Now,
	// and a wave's progress deadline passes when Now reaches it. The
	// zero time records no times: every report counts, and no deadline
	// passes.
	Now metav1.Time
}

// Plan is the outcome of Compute.
type Plan struct {
	// Status is the next status.rollout.
	Status mappersv1alpha1.RolloutStatus
	// WaveStarted is set when this plan starts a new wave (Status.CurrentWave).
	WaveStarted bool
	// RolledBack is set when this plan starts a rollback.
	RolledBack bool
	// Started is set when this plan starts a new rollout (a new target).
	Started bool
	// Deadline, when not zero, is when the progress deadline of the
	// current wave passes while some node of it has yet to report the
	// target loaded: plan again then.
	Deadline time.Time

	waved bool            // nodes not moved are sent Status.PreviousModule
	moved map[string]bool // nodes sent the target
}

// Previous reports whether node is to be sent the previous module
// (Status.PreviousModule) instead of spec.module: during a rollout in
// waves, every node not moved yet, including nodes Compute did not know.
func (p Plan) Previous(node string) bool { return p.waved && !p.moved[node] }

// SameNodes reports whether p and q send every node the same module.
func (p Plan) SameNodes(q Plan) bool {
	if p.waved != q.waved {
		return false
	}
	if !p.waved {
		return true
	}
	return p.Status.PreviousModule == q.Status.PreviousModule && maps.Equal(p.moved, q.moved)
}

// Waved reports whether a rollout holds a previous module that nodes not
// yet moved are sent.
func waved(r *mappersv1alpha1.RolloutStatus) bool {
	return r.Phase != mappersv1alpha1.RolloutComplete && r.PreviousModule != (mappersv1alpha1.Module{})
}

// Compute plans the rollout; see the package documentation for the rules.
// It fails only on an invalid spec.rollout.
func Compute(in Input) (Plan, error) {
	r := *in.Status.DeepCopy()
	now := in.Now.Rfc3339Copy() // as the API server stores it
	var plan Plan
	if r.Phase == "" {
		// First sight of the plugin: no rollout, every node at once.
		r = mappersv1alpha1.RolloutStatus{TargetDigest: in.TargetDigest, TargetModule: in.Module, Phase: mappersv1alpha1.RolloutProgressing, StartTime: now}
	} else if changed(in, &r) {
		plan.Started = true
		switch {
		case waved(&r) && in.TargetDigest == r.PreviousDigest:
			plan.RolledBack = true
			r = mappersv1alpha1.RolloutStatus{TargetDigest: in.TargetDigest, TargetModule: in.Module, PreviousDigest: r.TargetDigest}
		case waved(&r):
			// Replaces a rollout under way: start again from the last
			// module that completed one.
			r = mappersv1alpha1.RolloutStatus{TargetDigest: in.TargetDigest, TargetModule: in.Module, PreviousDigest: r.PreviousDigest, PreviousModule: r.PreviousModule}
		default:
			prev := pinned(r.TargetModule, r.TargetDigest)
			r = mappersv1alpha1.RolloutStatus{TargetDigest: in.TargetDigest, TargetModule: in.Module, PreviousDigest: r.TargetDigest, PreviousModule: prev}
		}
		if in.TargetDigest == "" || r.PreviousDigest == "" {
			r.PreviousModule = mappersv1alpha1.Module{} // cannot pin either side: at once
		}
		r.Phase = mappersv1alpha1.RolloutProgressing
		r.StartTime = now
	} else {
		r.TargetModule = in.Module // the same content, perhaps named otherwise
	}
	r.ObservedGeneration = in.Generation

	names := make([]string, 0, len(in.Nodes))
	byName := make(map[string]Node, len(in.Nodes))
	for _, n := range in.Nodes {
		if _, dup := byName[n.Name]; !dup {
			names = append(names, n.Name)
			byName[n.Name] = n
		}
	}
	slices.Sort(names)
	reports := make(map[string]mappersv1alpha1.NodeStatus, len(in.Reports))
	for _, rep := range in.Reports {
		reports[rep.Node] = rep
	}
	t := r.TargetDigest
	healthy := func(n string) bool {
		rep, ok := reports[n]
		return ok && rep.Phase == mappersv1alpha1.PhaseLoaded && (t == "" || rep.Digest == t) && (t == "" || rep.RejectedDigest != t)
	}
	// A report counts against the rollout only when made after the node
	// was moved: after its wave started for the current wave's nodes,
	// after the rollout started for the others (their wave ended with
	// them healthy). A zero time lets every report count.
	waveStart := r.CurrentWaveStartTime
	fresh := func(n string, rep mappersv1alpha1.NodeStatus) bool {
		since := r.StartTime
		if slices.Contains(r.CurrentWaveNodes, n) {
			since = waveStart
		}
		return !rep.LastTransitionTime.Before(&since)
	}
	failure := func(n string) (string, bool) {
		rep, ok := reports[n]
		switch {
		case !ok || !fresh(n, rep):
			return "", false
		case t != "" && rep.RejectedDigest == t:
			return orDefault(rep.Message, "rejected "+t), true
		case rep.Phase == mappersv1alpha1.PhaseFailed && (t == "" || rep.Digest == t || rep.Digest == ""):
			return orDefault(rep.Message, "failed to load "+orDefault(t, "the module")), true
		}
		return "", false
	}

	isWaved := waved(&r)
	if isWaved && r.CurrentWave > 0 && waveStart.IsZero() {
		// A wave started by a cloud that kept no start time: its
		// deadline runs from now. Every report counts this once (the
		// failures found are kept in failedNodes).
		r.CurrentWaveStartTime = now
	}
	deadline := in.Rollout.ProgressDeadline()
	overdue := func(n string) (string, bool) {
		start := r.CurrentWaveStartTime
		if !isWaved || start.IsZero() || !slices.Contains(r.CurrentWaveNodes, n) || now.Time.Before(start.Add(deadline)) {
			return "", false
		}
		rep, ok := reports[n]
		return fmt.Sprintf("did not report %s loaded within %s of its wave's start (last report: %s)", t, deadline, describe(rep, ok)), true
	}
	moved := map[string]bool{}
	if !isWaved {
		for _, n := range names {
			moved[n] = true
		}
	} else {
		for _, n := range slices.Concat(r.MovedNodes, r.CurrentWaveNodes) {
			moved[n] = true
		}
		for _, n := range names {
			if healthy(n) {
				moved[n] = true
			}
		}
	}

	// Failed nodes: those moved that report a failure of the target,
	// those failed before that do not yet report it loaded, and those of
	// the current wave past its deadline.
	var failed []mappersv1alpha1.FailedNode
	oldReasons := map[string]string{}
	for _, f := range r.FailedNodes {
		oldReasons[f.Node] = f.Reason
	}
	for _, n := range names {
		if !moved[n] || healthy(n) {
			continue
		}
		if reason, ok := failure(n); ok {
			failed = append(failed, mappersv1alpha1.FailedNode{Node: n, Reason: reason})
		} else if reason, ok := oldReasons[n]; ok {
			failed = append(failed, mappersv1alpha1.FailedNode{Node: n, Reason: reason})
		} else if reason, ok := overdue(n); ok {
			failed = append(failed, mappersv1alpha1.FailedNode{Node: n, Reason: reason})
		}
	}
	r.FailedNodes = failed

	var waiting []string
	var updated int32
	for _, n := range names {
		if healthy(n) {
			updated++
		} else if moved[n] {
			waiting = append(waiting, n)
		}
	}
	var rest []string
	for _, n := range names {
		if !moved[n] {
			rest = append(rest, n)
		}
	}

	switch {
	case r.Phase == mappersv1alpha1.RolloutComplete && !plan.Started:
		// Complete stays complete until the module changes: new nodes,
		// and nodes that restart, get the target directly.
		r.FailedNodes = nil
		r.Message = "every node is sent " + orDefault(t, "the module")
	case len(failed) > 0:
		r.Phase = mappersv1alpha1.RolloutFailed
		r.Message = fmt.Sprintf("%d node(s) failed %s (first: %s: %s); no further wave starts; set spec.module back to the previous module to roll back",
			len(failed), orDefault(t, "the module"), failed[0].Node, failed[0].Reason)
	case len(waiting) > 0:
		r.Phase = mappersv1alpha1.RolloutProgressing
		r.Message = waitMessage(r.CurrentWave, waiting, t)
		if in.Rollout.Paused && isWaved {
			r.Phase = mappersv1alpha1.RolloutPaused
			r.Message = "paused by spec.rollout.paused; " + r.Message
		}
	case len(rest) == 0:
		r.Phase = mappersv1alpha1.RolloutComplete
		r.MovedNodes, r.CurrentWaveNodes = nil, nil
		r.Message = "every node runs " + orDefault(t, "the module")
	case in.Rollout.Paused:
		r.Phase = mappersv1alpha1.RolloutPaused
		r.Message = fmt.Sprintf("paused by spec.rollout.paused; %d node(s) still run %s", len(rest), r.PreviousDigest)
	default:
		wave, err := nextWave(in.Rollout, r.CurrentWave, rest, byName, len(names))
		if err != nil {
			return Plan{}, err
		}
		for _, n := range wave {
			moved[n] = true
		}
		r.CurrentWave++
		r.CurrentWaveNodes = wave
		r.CurrentWaveStartTime = now
		r.Phase = mappersv1alpha1.RolloutProgressing
		r.Message = waitMessage(r.CurrentWave, wave, t)
		plan.WaveStarted = true
	}
	if waved(&r) {
		r.MovedNodes = r.MovedNodes[:0]
		for _, n := range names {
			if moved[n] {
				r.MovedNodes = append(r.MovedNodes, n)
			}
		}
		plan.waved, plan.moved = true, moved
	}
	r.UpdatedNodes = updated
	r.TotalNodes = int32(len(names))
	if len(r.MovedNodes) == 0 {
		r.MovedNodes = nil
	}
	plan.Deadline = nextDeadline(&r, now, deadline, healthy)
	plan.Status = r
	return plan, nil
}

// nextDeadline returns when the progress deadline of r's current wave
// passes, when that is after now and some node of the wave is still due
// to report the target and not failed yet; zero otherwise.
func nextDeadline(r *mappersv1alpha1.RolloutStatus, now metav1.Time, deadline time.Duration, healthy func(string) bool) time.Time {
	at := r.CurrentWaveStartTime.Add(deadline)
	if !waved(r) || r.CurrentWaveStartTime.IsZero() || !at.After(now.Time) {
		return time.Time{}
	}
	failed := map[string]bool{}
	for _, f := range r.FailedNodes {
		failed[f.Node] = true
	}
	for _, n := range r.CurrentWaveNodes {
		if !healthy(n) && !failed[n] {
			return at
		}
	}
	return time.Time{}
}

// describe says what a node last reported, for a failure's reason.
func describe(rep mappersv1alpha1.NodeStatus, ok bool) string {
	if !ok {
		return "none"
	}
	s := string(rep.Phase)
	if rep.Digest != "" {
		s += " " + rep.Digest
	}
	if rep.RejectedDigest != "" {
		s += ", rejected " + rep.RejectedDigest
	}
	if !rep.LastTransitionTime.IsZero() {
		s += " since " + rep.LastTransitionTime.UTC().Format(time.RFC3339)
	}
	if rep.Message != "" {
		s += ": " + rep.Message
	}
	return s
}

// changed reports whether spec.module names another module than the
// rollout's target.
func changed(in Input, r *mappersv1alpha1.RolloutStatus) bool {
	if in.TargetDigest != "" || r.TargetDigest != "" {
		return in.TargetDigest != r.TargetDigest
	}
	return in.Module.File != r.TargetModule.File || in.Module.Image != r.TargetModule.Image
}

// pinned returns m pinned by its content digest d when m has no digest.
func pinned(m mappersv1alpha1.Module, d string) mappersv1alpha1.Module {
	if m.Digest == "" {
		m.Digest = d
	}
	return m
}

// nextWave picks the next wave among rest (sorted, none moved yet): the
// canary nodes for the first wave when the selector matches any, else the
// first WaveSize(total) of rest.
func nextWave(ro mappersv1alpha1.Rollout, done int32, rest []string, nodes map[string]Node, total int) ([]string, error) {
	if done == 0 && ro.CanaryNodeSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(ro.CanaryNodeSelector)
		if err != nil {
			return nil, fmt.Errorf("rollout canaryNodeSelector: %w", err)
		}
		var canary []string
		for _, n := range rest {
			if sel.Matches(NodeLabels(nodes[n])) {
				canary = append(canary, n)
			}
		}
		if len(canary) > 0 {
			return canary, nil
		}
	}
	size, err := ro.WaveSize(total)
	if err != nil {
		return nil, err
	}
	return slices.Clone(rest[:min(size, len(rest))]), nil
}

// NodeLabels returns the labels a canary selector sees on n: its Node's
// labels and HostnameLabel.
func NodeLabels(n Node) labels.Set {
	s := make(labels.Set, len(n.Labels)+1)
	for k, v := range n.Labels {
		s[k] = v
	}
	if _, ok := s[HostnameLabel]; !ok {
		s[HostnameLabel] = n.Name
	}
	return s
}

// waitMessage says which nodes a rollout waits for.
func waitMessage(wave int32, nodes []string, target string) string {
	msg := fmt.Sprintf("waiting for %s to report %s loaded", list(nodes), orDefault(target, "the module"))
	if wave > 0 {
		msg = fmt.Sprintf("wave %d: %s", wave, msg)
	}
	return msg
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// list names up to five nodes.
func list(nodes []string) string {
	if len(nodes) <= 5 {
		return strings.Join(nodes, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(nodes[:5], ", "), len(nodes)-5)
}
