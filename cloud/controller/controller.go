// Package controller is wapper-cloud's Kubernetes controller, in the shape
// of sample-controller: shared informers on Devices, DeviceModels and
// MapperPlugins feed a work queue of node names, and reconciling a node
// computes its desired set (the Devices whose spec.nodeName is the node,
// their DeviceModels, and the MapperPlugins for their protocols) and hands
// it to the hub, which delivers it to the node's host.
//
// A change of a MapperPlugin's module is rolled out in waves (see package
// cloud/rollout): a second queue, of plugin names, plans each plugin's
// rollout, writes it to status.rollout through the status writer, and
// the desired set of a node not yet in a wave carries the previous module.
//
// Only nodes connected to this replica are reconciled: each replica serves
// the hosts connected to it (one replica per node, see package
// cloud/replicas), and all state lives in the API server. Every replica
// plans rollouts to render its own nodes' plugins, but only the leader
// (Options.Leader) writes status.rollout and logs and counts rollout
// steps.
package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	devicesv1beta1 "github.com/kubeedge/api/apis/devices/v1beta1"
	kubeedge "github.com/kubeedge/api/client/clientset/versioned"
	keinformers "github.com/kubeedge/api/client/informers/externalversions"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"wapper.dev/wapper/apis/binding"
	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/cloud/rollout"
	"wapper.dev/wapper/linkproto"
)

// Hub is what the controller needs of the hub.
type Hub interface {
	// SetDesired replaces the desired set of a connected node.
	SetDesired(node string, items map[string]linkproto.Item)
	// Connected lists the nodes connected to this replica.
	Connected() []string
}

// servingHub is a Hub that tells the nodes it serves (hub.Hub is one);
// the controller computes the desired sets of those only.
type servingHub interface {
	Serves(node string) bool
}

// Options configure a Controller.
type Options struct {
	// KubeEdge is the client for Devices and DeviceModels.
	KubeEdge kubeedge.Interface
	// Dynamic is the client for MapperPlugins.
	Dynamic dynamic.Interface
	// Hub receives each node's desired set.
	Hub Hub
	// Resync is the informers' resync period (default 10m).
	Resync time.Duration
	// Workers is the number of reconcile workers (default
	// DefaultWorkers); New refuses a negative number.
	Workers int
	// Logger receives reconcile logs (default slog.Default()).
	Logger *slog.Logger
	// Metrics receives reconcile metrics; nil for none.
	Metrics *Metrics
	// Rollouts receives each plugin's status.rollout. When nil there are
	// no staged rollouts: every node gets spec.module as it is.
	Rollouts RolloutWriter
	// Digest returns the content digest of a module (see
	// modules.Resolver); nil means the digest in spec.module.
	Digest func(ctx context.Context, m mappersv1alpha1.Module) (string, error)
	// Kube, when set, gives the canary selector the labels of Node
	// objects (it needs nodes get, list and watch).
	Kube kubernetes.Interface
	// Recorder logs and counts rollout steps (default: one logging to
	// Logger, with no metrics).
	Recorder *rollout.Recorder
	// Now is the clock rollouts are planned with: wave start times and
	// progress deadlines (default time.Now).
	Now func() time.Time
	// Leader reports whether this replica leads (see package
	// cloud/replicas): only the leader writes status.rollout and records
	// rollout steps. Nil: always (one replica).
	Leader func() bool
	// SecretsNamespace, with Kube, is the namespace whose Secrets plugins
	// may be granted (it needs secrets get, list and watch there); empty:
	// no Secret is delivered. It must not be the namespace of wapper-cloud's
	// own Secrets (node tokens, TLS).
	SecretsNamespace string
}

const (
	indexByNode     = "node"
	indexByModel    = "model"
	indexByProtocol = "protocol"
)

// Controller computes each connected node's desired set.
type Controller struct {
	opts    Options
	log     *slog.Logger
	keInf   keinformers.SharedInformerFactory
	dynInf  dynamicinformer.DynamicSharedInformerFactory
	devices cache.SharedIndexInformer
	models  cache.SharedIndexInformer
	plugins cache.SharedIndexInformer
	queue   workqueue.TypedRateLimitingInterface[string]

	kubeInf  informers.SharedInformerFactory // nil without Options.Kube
	nodes    cache.SharedIndexInformer       // nil without Options.Kube
	rollouts rollouts

	secretInf informers.SharedInformerFactory // nil without Options.SecretsNamespace
	secrets   cache.SharedIndexInformer       // nil without Options.SecretsNamespace

	items sync.Map // key → cachedItem
}

type cachedItem struct {
	rv   string
	item linkproto.Item
}

// DefaultWorkers is the number of reconcile workers when
// Options.Workers is zero (wapper-cloud's --workers).
const DefaultWorkers = 4

// New returns a Controller; call Run to start it.
func New(opts Options) (*Controller, error) {
	if opts.Resync == 0 {
		opts.Resync = 10 * time.Minute
	}
	switch {
	case opts.Workers < 0:
		return nil, fmt.Errorf("controller: %d reconcile workers: want 1 or more", opts.Workers)
	case opts.Workers == 0:
		opts.Workers = DefaultWorkers
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Recorder == nil {
		opts.Recorder = rollout.NewRecorder(opts.Logger, nil)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Controller{
		opts:  opts,
		log:   opts.Logger,
		keInf: keinformers.NewSharedInformerFactory(opts.KubeEdge, opts.Resync),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "wapper-cloud-nodes"}),
	}
	c.dynInf = dynamicinformer.NewDynamicSharedInformerFactory(opts.Dynamic, opts.Resync)
	c.devices = c.keInf.Devices().V1beta1().Devices().Informer()
	c.models = c.keInf.Devices().V1beta1().DeviceModels().Informer()
	c.plugins = c.dynInf.ForResource(mappersv1alpha1.GroupVersionResource).Informer()
	if err := c.plugins.SetTransform(toMapperPlugin); err != nil {
		return nil, err
	}
	if err := c.devices.AddIndexers(cache.Indexers{
		indexByNode: func(obj any) ([]string, error) {
			d := obj.(*devicesv1beta1.Device)
			return []string{d.Spec.NodeName}, nil
		},
		indexByModel: func(obj any) ([]string, error) {
			d := obj.(*devicesv1beta1.Device)
			if d.Spec.DeviceModelRef == nil {
				return nil, nil
			}
			return []string{d.Namespace + "/" + d.Spec.DeviceModelRef.Name}, nil
		},
	}); err != nil {
		return nil, err
	}
	if err := c.plugins.AddIndexers(cache.Indexers{
		indexByProtocol: func(obj any) ([]string, error) {
			return obj.(*mappersv1alpha1.MapperPlugin).Spec.Protocols, nil
		},
	}); err != nil {
		return nil, err
	}
	if _, err := c.devices.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { c.enqueueDevice(obj) },
		UpdateFunc: func(old, cur any) {
			c.enqueueDevice(old)
			c.enqueueDevice(cur)
		},
		DeleteFunc: func(obj any) { c.enqueueDevice(obj) },
	}); err != nil {
		return nil, err
	}
	if _, err := c.models.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.enqueueModel(obj); c.replanAll() },
		UpdateFunc: func(_, cur any) { c.enqueueModel(cur); c.replanAll() },
		DeleteFunc: func(obj any) { c.enqueueModel(obj); c.replanAll() },
	}); err != nil {
		return nil, err
	}
	if _, err := c.plugins.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.EnqueueConnected(); c.replanAll() },
		UpdateFunc: func(old, cur any) { c.enqueuePluginChange(old, cur) },
		DeleteFunc: func(obj any) { c.EnqueueConnected(); c.pluginDeleted(obj); c.replanAll() },
	}); err != nil {
		return nil, err
	}
	if err := c.initRollouts(); err != nil {
		return nil, err
	}
	if err := c.initSecrets(); err != nil {
		return nil, err
	}
	return c, nil
}

// toMapperPlugin converts the dynamic informer's objects to typed
// MapperPlugins before they are stored.
func toMapperPlugin(obj any) (any, error) {
	switch o := obj.(type) {
	case *unstructured.Unstructured:
		p := &mappersv1alpha1.MapperPlugin{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.UnstructuredContent(), p); err != nil {
			return nil, fmt.Errorf("decode MapperPlugin %s: %w", o.GetName(), err)
		}
		return p, nil
	case cache.DeletedFinalStateUnknown:
		if u, ok := o.Obj.(*unstructured.Unstructured); ok {
			p, err := toMapperPlugin(u)
			if err != nil {
				return nil, err
			}
			o.Obj = p
		}
		return o, nil
	}
	return obj, nil
}

// Enqueue asks for node's desired set to be computed again, as when its
// host connects.
func (c *Controller) Enqueue(node string) {
	if node != "" {
		c.queue.Add(node)
	}
}

// EnqueueConnected enqueues every connected node.
func (c *Controller) EnqueueConnected() {
	for _, n := range c.opts.Hub.Connected() {
		c.queue.Add(n)
	}
}

func (c *Controller) enqueueDevice(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if d, ok := obj.(*devicesv1beta1.Device); ok {
		c.Enqueue(d.Spec.NodeName)
		c.replanDevice(d)
	}
}

func (c *Controller) enqueueModel(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	m, ok := obj.(*devicesv1beta1.DeviceModel)
	if !ok {
		return
	}
	devs, err := c.devices.GetIndexer().ByIndex(indexByModel, m.Namespace+"/"+m.Name)
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	for _, o := range devs {
		c.Enqueue(o.(*devicesv1beta1.Device).Spec.NodeName)
	}
}

func (c *Controller) enqueuePluginChange(old, cur any) {
	o, ok1 := old.(*mappersv1alpha1.MapperPlugin)
	n, ok2 := cur.(*mappersv1alpha1.MapperPlugin)
	if ok1 && ok2 && o.ResourceVersion == n.ResourceVersion {
		return // a resync
	}
	c.EnqueueConnected()
	if ok1 && ok2 && o.Generation != n.Generation {
		c.replanAll() // the protocols may have changed, and so the nodes
	} else if ok2 {
		c.replan(n.Name)
	}
}

// Run starts the informers, waits for their caches, and runs
// Options.Workers workers until ctx ends. It returns nil once the workers
// and the informers have stopped.
func (c *Controller) Run(ctx context.Context) error {
	defer utilruntime.HandleCrash()
	defer c.queue.ShutDown()
	defer c.rollouts.queue.ShutDown()
	// Shutdown waits for the informers' goroutines, which end with ctx.
	defer c.dynInf.Shutdown()
	defer c.keInf.Shutdown()
	c.keInf.Start(ctx.Done())
	c.dynInf.Start(ctx.Done())
	synced := []cache.InformerSynced{c.devices.HasSynced, c.models.HasSynced, c.plugins.HasSynced}
	if c.kubeInf != nil {
		defer c.kubeInf.Shutdown()
		c.kubeInf.Start(ctx.Done())
		synced = append(synced, c.nodes.HasSynced)
	}
	if c.secretInf != nil {
		defer c.secretInf.Shutdown()
		c.secretInf.Start(ctx.Done())
		synced = append(synced, c.secrets.HasSynced)
	}
	c.log.Info("controller: waiting for informer caches")
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		// Only the end of ctx stops the wait: a clean stop.
		c.log.Info("controller: stopped before the informer caches synced")
		return nil
	}
	c.log.Info("controller: caches synced; reconciling connected nodes", "workers", c.opts.Workers)
	c.EnqueueConnected()
	c.replanAll()
	var wg sync.WaitGroup
	for range c.opts.Workers {
		wg.Go(func() { wait.UntilWithContext(ctx, c.runWorker, time.Second) })
	}
	wg.Go(func() { wait.UntilWithContext(ctx, c.runRolloutWorker, time.Second) })
	<-ctx.Done()
	c.queue.ShutDown()
	c.rollouts.queue.ShutDown()
	wg.Wait()
	return nil
}

// HasSynced reports whether the informers have synced.
func (c *Controller) HasSynced() bool {
	return c.devices.HasSynced() && c.models.HasSynced() && c.plugins.HasSynced() &&
		(c.nodes == nil || c.nodes.HasSynced()) && (c.secrets == nil || c.secrets.HasSynced())
}

func (c *Controller) runWorker(ctx context.Context) {
	for c.processNext(ctx) {
	}
}

func (c *Controller) processNext(ctx context.Context) bool {
	node, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(node)
	start := time.Now()
	err := c.reconcile(node)
	if m := c.opts.Metrics; m != nil {
		m.observe(time.Since(start), err)
	}
	if err != nil {
		c.log.Warn("controller: reconcile failed; retrying", "node", node, "err", err)
		c.queue.AddRateLimited(node)
		return true
	}
	c.queue.Forget(node)
	return true
}

func (c *Controller) reconcile(node string) error {
	if s, ok := c.opts.Hub.(servingHub); ok && !s.Serves(node) {
		return nil // another replica's node, or not connected: computed on connect
	}
	if !c.HasSynced() {
		return fmt.Errorf("informer caches not synced yet")
	}
	items, err := c.DesiredSet(node)
	if err != nil {
		return err
	}
	c.opts.Hub.SetDesired(node, items)
	return nil
}

// DesiredSet computes node's desired objects, keyed by linkproto.Key.
func (c *Controller) DesiredSet(node string) (map[string]linkproto.Item, error) {
	devs, err := c.devices.GetIndexer().ByIndex(indexByNode, node)
	if err != nil {
		return nil, err
	}
	out := make(map[string]linkproto.Item, 3*len(devs))
	add := func(kind string, o runtimeObject) error {
		key := linkproto.Key(kind, o.GetNamespace(), o.GetName())
		if _, ok := out[key]; ok {
			return nil
		}
		it, err := c.item(kind, key, o)
		if err != nil {
			return err
		}
		out[key] = it
		return nil
	}
	for _, o := range devs {
		d := o.(*devicesv1beta1.Device)
		if err := add(linkproto.KindDevice, d); err != nil {
			return nil, err
		}
		var model *devicesv1beta1.DeviceModel
		if d.Spec.DeviceModelRef != nil {
			mo, ok, err := c.models.GetIndexer().GetByKey(binding.ModelRef(d))
			if err != nil {
				return nil, err
			}
			if ok {
				model = mo.(*devicesv1beta1.DeviceModel)
				if err := add(linkproto.KindDeviceModel, model); err != nil {
					return nil, err
				}
			}
		}
		if p := c.pluginFor(d, model); p != nil {
			key := linkproto.Key(linkproto.KindMapperPlugin, "", p.Name)
			if _, ok := out[key]; ok {
				continue
			}
			it, err := c.pluginItem(node, key, p)
			if err != nil {
				return nil, err
			}
			out[key] = it
			if err := c.addSecrets(out, p); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// pluginFor picks the MapperPlugin a device runs on with binding.Select,
// the rule the host applies too. When the rule fails the node gets no
// plugin for the device, and the host reports why on the device.
func (c *Controller) pluginFor(d *devicesv1beta1.Device, model *devicesv1beta1.DeviceModel) *mappersv1alpha1.MapperPlugin {
	choice, err := binding.Select(d, model, indexedPlugins{c.plugins.GetIndexer()})
	if err != nil {
		c.log.Debug("no plugin for device", "device", d.Namespace+"/"+d.Name, "err", err)
		return nil
	}
	p, ok := c.Plugin(choice.Plugin)
	if !ok {
		// Deleted between Select and this lookup; the delete event
		// reconciles the node again.
		return nil
	}
	return p
}

// indexedPlugins is binding.Plugins over the MapperPlugin informer's
// indexer.
type indexedPlugins struct{ idx cache.Indexer }

// Has implements binding.Plugins.
func (p indexedPlugins) Has(name string) bool {
	_, ok, err := p.idx.GetByKey(name)
	return err == nil && ok
}

// Providing implements binding.Plugins.
func (p indexedPlugins) Providing(protocol string) []string {
	names, err := p.idx.IndexKeys(indexByProtocol, protocol)
	if err != nil {
		return nil
	}
	return names
}

// Plugin returns the MapperPlugin called name from the informer cache.
func (c *Controller) Plugin(name string) (*mappersv1alpha1.MapperPlugin, bool) {
	o, ok, _ := c.plugins.GetIndexer().GetByKey(name)
	if !ok {
		return nil, false
	}
	return o.(*mappersv1alpha1.MapperPlugin), true
}

// Device returns the Device ns/name from the informer cache.
func (c *Controller) Device(ns, name string) (*devicesv1beta1.Device, bool) {
	o, ok, _ := c.devices.GetIndexer().GetByKey(ns + "/" + name)
	if !ok {
		return nil, false
	}
	return o.(*devicesv1beta1.Device), true
}

type runtimeObject interface {
	runtime.Object
	GetNamespace() string
	GetName() string
	GetResourceVersion() string
}

// item renders an object as delivered to hosts: status, managed fields and
// resource version removed, versioned by a hash of the result. Items are
// cached by resource version, so a plugin shared by many nodes is rendered
// once.
func (c *Controller) item(kind, key string, o runtimeObject) (linkproto.Item, error) {
	return c.itemVariant(kind, key, "", o)
}

// itemVariant is item for one variant of an object (such as a plugin with
// its previous module), cached apart from the others.
func (c *Controller) itemVariant(kind, key, variant string, o runtimeObject) (linkproto.Item, error) {
	rv := o.GetResourceVersion()
	cacheKey := key
	if variant != "" {
		cacheKey = key + "\x00" + variant
	}
	if v, ok := c.items.Load(cacheKey); ok && v.(cachedItem).rv == rv {
		return v.(cachedItem).item, nil
	}
	var obj any
	switch t := o.(type) {
	case *devicesv1beta1.Device:
		d := t.DeepCopy()
		d.Status = devicesv1beta1.DeviceStatusOld{}
		d.TypeMeta.APIVersion, d.TypeMeta.Kind = devicesv1beta1.SchemeGroupVersion.String(), linkproto.KindDevice
		clean(&d.ObjectMeta.ManagedFields, &d.ObjectMeta.ResourceVersion, &d.ObjectMeta.Generation)
		obj = d
	case *devicesv1beta1.DeviceModel:
		m := t.DeepCopy()
		m.TypeMeta.APIVersion, m.TypeMeta.Kind = devicesv1beta1.SchemeGroupVersion.String(), linkproto.KindDeviceModel
		clean(&m.ObjectMeta.ManagedFields, &m.ObjectMeta.ResourceVersion, &m.ObjectMeta.Generation)
		obj = m
	case *mappersv1alpha1.MapperPlugin:
		p := t.DeepCopy()
		p.Status = mappersv1alpha1.MapperPluginStatus{}
		p.Spec.Rollout = mappersv1alpha1.Rollout{} // the cloud's business, not the host's
		p.TypeMeta.APIVersion, p.TypeMeta.Kind = mappersv1alpha1.SchemeGroupVersion.String(), linkproto.KindMapperPlugin
		clean(&p.ObjectMeta.ManagedFields, &p.ObjectMeta.ResourceVersion, &p.ObjectMeta.Generation)
		obj = p
	default:
		return linkproto.Item{}, fmt.Errorf("controller: cannot deliver %T", o)
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return linkproto.Item{}, fmt.Errorf("controller: encode %s: %w", key, err)
	}
	sum := sha256.Sum256(b)
	it := linkproto.Item{Key: key, Version: hex.EncodeToString(sum[:12]), Object: b}
	c.items.Store(cacheKey, cachedItem{rv: rv, item: it})
	return it, nil
}

// BoundDevice is a Device and the MapperPlugin it runs on.
type BoundDevice struct {
	Device *devicesv1beta1.Device
	// Plugin is the MapperPlugin's name; empty when none fits, and then
	// Problem says why.
	Plugin, Problem string
}

// Inventory returns every Device with its plugin, and every MapperPlugin,
// from the informer caches (unsorted).
func (c *Controller) Inventory() ([]BoundDevice, []*mappersv1alpha1.MapperPlugin) {
	plugins := indexedPlugins{c.plugins.GetIndexer()}
	var devs []BoundDevice
	for _, o := range c.devices.GetIndexer().List() {
		d := o.(*devicesv1beta1.Device)
		b := BoundDevice{Device: d}
		if choice, err := binding.Select(d, c.modelOf(d), plugins); err != nil {
			b.Problem = err.Error()
		} else {
			b.Plugin = choice.Plugin
		}
		devs = append(devs, b)
	}
	var mps []*mappersv1alpha1.MapperPlugin
	for _, o := range c.plugins.GetIndexer().List() {
		mps = append(mps, o.(*mappersv1alpha1.MapperPlugin))
	}
	return devs, mps
}
