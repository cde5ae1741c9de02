package controller

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	devicesv1beta1 "github.com/kubeedge/api/apis/devices/v1beta1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"wapper.dev/wapper/apis/binding"
	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/cloud/rollout"
	"wapper.dev/wapper/linkproto"
)

// RolloutWriter receives the status.rollout the controller plans for a
// plugin; cloud/status's Writer is one, rate limited with the other
// status writes.
type RolloutWriter interface {
	// SetRollout queues a write of plugin's status.rollout.
	SetRollout(plugin string, st mappersv1alpha1.RolloutStatus)
}

// rollouts is the controller's rollout state: a queue of plugin names to
// plan, and the last plan of each. All of it can be rebuilt from the
// cluster; the plans are a cache.
type rollouts struct {
	queue workqueue.TypedRateLimitingInterface[string]

	mu    sync.Mutex
	plans map[string]storedPlan     // plugin → last plan
	nodes map[string][]rollout.Node // plugin → its nodes, as last computed
}

type storedPlan struct {
	rv   string
	plan rollout.Plan
}

// resolveTimeout bounds the resolution of a module's digest during a
// node's reconcile; the rollout worker waits as long as the resolver
// lets it.
const resolveTimeout = 10 * time.Second

func (c *Controller) initRollouts() error {
	c.rollouts = rollouts{
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "wapper-cloud-rollouts"}),
		plans: map[string]storedPlan{},
		nodes: map[string][]rollout.Node{},
	}
	if c.opts.Kube == nil || c.opts.Rollouts == nil {
		return nil
	}
	c.kubeInf = informers.NewSharedInformerFactory(c.opts.Kube, c.opts.Resync)
	c.nodes = c.kubeInf.Core().V1().Nodes().Informer()
	// Only names and labels matter: keep nothing else of a Node.
	if err := c.nodes.SetTransform(func(obj any) (any, error) {
		if n, ok := obj.(*corev1.Node); ok {
			return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels, ResourceVersion: n.ResourceVersion}}, nil
		}
		return obj, nil
	}); err != nil {
		return err
	}
	_, err := c.nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { c.replanAll() },
		UpdateFunc: func(old, cur any) {
			o, ok1 := old.(*corev1.Node)
			n, ok2 := cur.(*corev1.Node)
			if !ok1 || !ok2 || !maps.Equal(o.Labels, n.Labels) {
				c.replanAll()
			}
		},
		DeleteFunc: func(any) { c.replanAll() },
	})
	return err
}

// leads reports whether this replica writes status.rollout.
func (c *Controller) leads() bool { return c.opts.Leader == nil || c.opts.Leader() }

// LeadershipChanged plans every plugin's rollout again: a new leader
// writes the status.rollout its plans hold.
func (c *Controller) LeadershipChanged() { c.replanAll() }

// replan queues the rollout of plugin name to be planned again.
func (c *Controller) replan(name string) {
	if c.opts.Rollouts != nil && name != "" {
		c.rollouts.queue.Add(name)
	}
}

// replanAll queues every plugin's rollout.
func (c *Controller) replanAll() {
	if c.opts.Rollouts == nil {
		return
	}
	for _, name := range c.plugins.GetIndexer().ListKeys() {
		c.rollouts.queue.Add(name)
	}
}

// replanDevice queues the rollout of the plugin a device runs on: its node
// may join or leave the plugin's nodes.
func (c *Controller) replanDevice(d *devicesv1beta1.Device) {
	if c.opts.Rollouts == nil {
		return
	}
	if choice, err := binding.Select(d, c.modelOf(d), indexedPlugins{c.plugins.GetIndexer()}); err == nil {
		c.replan(choice.Plugin)
	}
}

func (c *Controller) modelOf(d *devicesv1beta1.Device) *devicesv1beta1.DeviceModel {
	if d.Spec.DeviceModelRef == nil {
		return nil
	}
	if mo, ok, err := c.models.GetIndexer().GetByKey(binding.ModelRef(d)); err == nil && ok {
		return mo.(*devicesv1beta1.DeviceModel)
	}
	return nil
}

func (c *Controller) pluginDeleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, ok := obj.(*mappersv1alpha1.MapperPlugin)
	if !ok {
		return
	}
	c.rollouts.mu.Lock()
	delete(c.rollouts.plans, p.Name)
	delete(c.rollouts.nodes, p.Name)
	c.rollouts.mu.Unlock()
	c.opts.Recorder.Forget(p.Name)
}

func (c *Controller) runRolloutWorker(ctx context.Context) {
	for {
		name, quit := c.rollouts.queue.Get()
		if quit {
			return
		}
		err := c.planPlugin(ctx, name)
		if err != nil {
			c.log.Warn("controller: rollout planning failed; retrying", "plugin", name, "err", err)
			c.rollouts.queue.AddRateLimited(name)
		} else {
			c.rollouts.queue.Forget(name)
		}
		c.rollouts.queue.Done(name)
	}
}

// planPlugin plans the rollout of plugin name with its nodes computed
// afresh.
func (c *Controller) planPlugin(ctx context.Context, name string) error {
	if !c.HasSynced() {
		return fmt.Errorf("informer caches not synced yet")
	}
	p, ok := c.Plugin(name)
	if !ok {
		return nil
	}
	_, err := c.planFor(ctx, p, true)
	return err
}

// currentPlan returns the plan of p's current resource version, planning
// it (with the nodes last computed) when there is none yet; nil when
// rollouts are off.
func (c *Controller) currentPlan(p *mappersv1alpha1.MapperPlugin) (*rollout.Plan, error) {
	if c.opts.Rollouts == nil {
		return nil, nil
	}
	c.rollouts.mu.Lock()
	sp, ok := c.rollouts.plans[p.Name]
	c.rollouts.mu.Unlock()
	if ok && sp.rv == p.ResourceVersion {
		return &sp.plan, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
	defer cancel()
	return c.planFor(ctx, p, false)
}

// planFor plans p's rollout, stores the plan, queues its status.rollout
// when it changed, reconciles the connected nodes when the module some
// node is to be sent changed, and queues p to be planned again when the
// current wave's progress deadline passes. freshNodes computes the
// plugin's nodes again; otherwise those last computed are used (a node
// missing from them is sent the previous module during a rollout, as a
// node not moved yet).
func (c *Controller) planFor(ctx context.Context, p *mappersv1alpha1.MapperPlugin, freshNodes bool) (*rollout.Plan, error) {
	c.rollouts.mu.Lock()
	nodes, ok := c.rollouts.nodes[p.Name]
	c.rollouts.mu.Unlock()
	if freshNodes || !ok {
		nodes = c.nodesOf(p.Name)
		c.rollouts.mu.Lock()
		c.rollouts.nodes[p.Name] = nodes
		c.rollouts.mu.Unlock()
	}
	target, err := c.targetDigest(ctx, p)
	if err != nil {
		if p.Status.Rollout.Phase != "" {
			return nil, err
		}
		// The plugin's first module: there is no earlier one to hold
		// the nodes on, so they get the spec as it is and report what
		// they make of it (a module that does not match its pin is
		// theirs to refuse, naming the digests).
		c.log.Warn("controller: cannot resolve the module's digest; sending the plugin as it is", "plugin", p.Name, "err", err)
		target = p.Spec.Module.Digest
	}
	now := c.opts.Now()
	plan, err := rollout.Compute(rollout.Input{
		Generation:   p.Generation,
		Rollout:      p.Spec.Rollout,
		Module:       p.Spec.Module,
		TargetDigest: target,
		Status:       p.Status.Rollout,
		Reports:      p.Status.Nodes,
		Nodes:        nodes,
		Now:          metav1.NewTime(now),
	})
	if err != nil {
		return nil, fmt.Errorf("plan the rollout of %s: %w", p.Name, err)
	}
	if !plan.Deadline.IsZero() {
		// Nothing else may change when a wave's deadline passes: plan
		// again then. The queue keeps the earliest time of a plugin.
		c.rollouts.queue.AddAfter(p.Name, plan.Deadline.Sub(now))
	}
	c.rollouts.mu.Lock()
	old, had := c.rollouts.plans[p.Name]
	c.rollouts.plans[p.Name] = storedPlan{rv: p.ResourceVersion, plan: plan}
	c.rollouts.mu.Unlock()
	if c.leads() {
		if !equality.Semantic.DeepEqual(plan.Status, p.Status.Rollout) {
			c.opts.Rollouts.SetRollout(p.Name, plan.Status)
		}
		c.opts.Recorder.Record(p.Name, plan)
	}
	if had && !old.plan.SameNodes(plan) {
		c.EnqueueConnected()
	}
	return &plan, nil
}

// targetDigest returns the content digest of p's module: the rollout's
// own when the module is the one it targets, else as Options.Digest
// resolves it.
func (c *Controller) targetDigest(ctx context.Context, p *mappersv1alpha1.MapperPlugin) (string, error) {
	st := p.Status.Rollout
	if st.Phase != "" && p.Spec.Module == st.TargetModule {
		return st.TargetDigest, nil
	}
	if c.opts.Digest == nil {
		return p.Spec.Module.Digest, nil
	}
	d, err := c.opts.Digest(ctx, p.Spec.Module)
	if err != nil {
		return "", fmt.Errorf("plugin %s: %w", p.Name, err)
	}
	return d, nil
}

// nodesOf returns the nodes that have a device the plugin name serves,
// with their Node labels.
func (c *Controller) nodesOf(name string) []rollout.Node {
	seen := map[string]bool{}
	var out []rollout.Node
	plugins := indexedPlugins{c.plugins.GetIndexer()}
	for _, o := range c.devices.GetStore().List() {
		d := o.(*devicesv1beta1.Device)
		if d.Spec.NodeName == "" || seen[d.Spec.NodeName] {
			continue
		}
		choice, err := binding.Select(d, c.modelOf(d), plugins)
		if err != nil || choice.Plugin != name {
			continue
		}
		seen[d.Spec.NodeName] = true
		n := rollout.Node{Name: d.Spec.NodeName}
		if c.nodes != nil {
			if no, ok, err := c.nodes.GetIndexer().GetByKey(n.Name); err == nil && ok {
				n.Labels = no.(*corev1.Node).Labels
			}
		}
		out = append(out, n)
	}
	return out
}

// pluginItem renders p for node: as it is, or, when node waits for a
// wave of a rollout, with the previous module.
func (c *Controller) pluginItem(node, key string, p *mappersv1alpha1.MapperPlugin) (linkproto.Item, error) {
	plan, err := c.currentPlan(p)
	if err != nil {
		held := p.Status.Rollout.TargetModule
		if held == (mappersv1alpha1.Module{}) {
			return linkproto.Item{}, err
		}
		// The new module's digest is not known yet (its registry is out of
		// reach): hold it back, and send the module of the last rollout
		// until the rollout worker's retries resolve it.
		c.log.Warn("controller: new module not resolved; nodes keep the module of the last rollout", "plugin", p.Name, "node", node, "err", err)
		q := p.DeepCopy()
		q.Spec.Module = held
		if q.Spec.Module.Digest == "" {
			q.Spec.Module.Digest = p.Status.Rollout.TargetDigest
		}
		return c.itemVariant(linkproto.KindMapperPlugin, key, "held "+held.File+held.Image+"@"+q.Spec.Module.Digest, q)
	}
	if plan == nil || !plan.Previous(node) {
		return c.item(linkproto.KindMapperPlugin, key, p)
	}
	prev := plan.Status.PreviousModule
	q := p.DeepCopy()
	q.Spec.Module = prev
	return c.itemVariant(linkproto.KindMapperPlugin, key, "previous "+prev.File+prev.Image+"@"+prev.Digest, q)
}
