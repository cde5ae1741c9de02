// Package status writes what hosts report back into the cluster: device
// twins and state to KubeEdge's DeviceStatus resource (or, where that CRD
// is not installed, to the Device's status as older KubeEdge releases
// have it), and each node's plugin state and the module's rollout to
// MapperPlugin status.
//
// Reports are coalesced per object for a short flush interval, written by
// a few workers under a token-bucket rate limit, and acknowledged to the
// host only once written, so a cloud that dies mid-way loses nothing: the
// host still holds every unacknowledged report in its outbox.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	devicesv1beta1 "github.com/kubeedge/api/apis/devices/v1beta1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"

	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/linkproto"
)

// Resources written.
var (
	// DeviceStatuses is KubeEdge 1.23's DeviceStatus resource.
	DeviceStatuses = devicesv1beta1.SchemeGroupVersion.WithResource("devicestatuses")
	// Devices is KubeEdge's Device resource.
	Devices = devicesv1beta1.SchemeGroupVersion.WithResource("devices")
)

// DeviceLookup finds a Device's UID (for the DeviceStatus owner reference);
// ok is false when the device no longer exists.
type DeviceLookup func(namespace, name string) (uid types.UID, ok bool)

// Defaults of Options (wapper-cloud's --status-* flags).
const (
	// DefaultQPS is the status writes per second to the API server.
	DefaultQPS = 50
	// DefaultBurst is the status write burst.
	DefaultBurst = 100
	// DefaultFlushInterval is how long reports for one object gather.
	DefaultFlushInterval = time.Second
	// DefaultWorkers is the number of concurrent writers.
	DefaultWorkers = 16
)

// Options configure a Writer.
type Options struct {
	// Dynamic is the client the writer uses.
	Dynamic dynamic.Interface
	// UseDeviceStatus writes twins to DeviceStatus objects; when false
	// they go to Device status. See HasDeviceStatus.
	UseDeviceStatus bool
	// Device looks up Devices; required with UseDeviceStatus.
	Device DeviceLookup
	// QPS and Burst limit status writes (defaults 50 and 100).
	QPS   float32
	Burst int
	// FlushInterval is how long reports for one object are gathered
	// before it is written (default 1s).
	FlushInterval time.Duration
	// Workers is the number of concurrent writers (default 16).
	Workers int
	// FieldManager names the writer in managed fields (default
	// "wapper-cloud").
	FieldManager string
	// Logger receives write logs (default slog.Default()).
	Logger *slog.Logger
	// Metrics receives write metrics; nil for none.
	Metrics *Metrics
}

// HasDeviceStatus reports whether the cluster serves KubeEdge's
// DeviceStatus resource.
func HasDeviceStatus(dc discovery.DiscoveryInterface) (bool, error) {
	list, err := dc.ServerResourcesForGroupVersion(devicesv1beta1.SchemeGroupVersion.String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("discover %s: %w", devicesv1beta1.SchemeGroupVersion, err)
	}
	for _, r := range list.APIResources {
		if r.Name == DeviceStatuses.Resource {
			return true, nil
		}
	}
	return false, nil
}

// Writer is a hub.Upstream that writes reports to the cluster.
type Writer struct {
	opts    Options
	log     *slog.Logger
	limiter flowcontrol.RateLimiter
	queue   workqueue.TypedRateLimitingInterface[string]

	// exists holds the DeviceStatus objects known to exist, so that the
	// first write of any other is a create rather than a failed patch.
	exists sync.Map // "ns/name" → struct{}

	mu      sync.Mutex              // guards devices, plugins and last
	devices map[string]*deviceEntry // "ns/name": reports to write
	plugins map[string]*pluginEntry // plugin name
	last    map[string]reported     // "ns/name": every device's latest report, for Reported
}

// reported is a device's latest report, and the node it came from.
type reported struct {
	node   string
	report linkproto.DeviceReport
}

type waiter struct {
	seq  uint64
	done func([]uint64)
}

type deviceEntry struct {
	report  linkproto.DeviceReport
	waiters []waiter
}

type pluginEntry struct {
	nodes   map[string]linkproto.PluginReport
	rollout *mappersv1alpha1.RolloutStatus // nil: leave status.rollout alone
	waiters []waiter
}

// New returns a Writer; call Run to start its workers.
func New(opts Options) *Writer {
	if opts.QPS <= 0 {
		opts.QPS = DefaultQPS
	}
	if opts.Burst <= 0 {
		opts.Burst = DefaultBurst
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.FieldManager == "" {
		opts.FieldManager = "wapper-cloud"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Writer{
		opts:    opts,
		log:     opts.Logger,
		limiter: flowcontrol.NewTokenBucketRateLimiter(opts.QPS, opts.Burst),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "wapper-cloud-status"}),
		devices: map[string]*deviceEntry{},
		plugins: map[string]*pluginEntry{},
		last:    map[string]reported{},
	}
}

// DeviceState is what a node last reported of a device.
type DeviceState struct {
	// Node reported it.
	Node string
	// Report is the device's twins, state and last online time, each
	// field as last reported.
	Report linkproto.DeviceReport
}

// Reported returns the latest report of every device this writer was
// sent, keyed "ns/name", keeping only the devices exists confirms: the
// others are forgotten.
func (w *Writer) Reported(exists func(ns, name string) bool) map[string]DeviceState {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]DeviceState, len(w.last))
	for k, r := range w.last {
		if !exists(r.report.Namespace, r.report.Name) {
			delete(w.last, k)
			continue
		}
		out[k] = DeviceState{Node: r.node, Report: r.report}
	}
	return out
}

// Submit implements hub.Upstream.
func (w *Writer) Submit(node string, reports []linkproto.Report, done func([]uint64)) {
	var bad []uint64
	w.mu.Lock()
	for _, r := range reports {
		wt := waiter{seq: r.Seq, done: done}
		switch {
		case r.Device != nil && r.Device.Name != "":
			k := "d/" + r.Device.Namespace + "/" + r.Device.Name
			e := w.devices[k[2:]]
			if e == nil {
				e = &deviceEntry{}
				w.devices[k[2:]] = e
			}
			e.report = e.report.Merge(*r.Device)
			e.waiters = append(e.waiters, wt)
			l := w.last[k[2:]]
			if l.node != node {
				l = reported{node: node} // moved: what the old node said is stale
			}
			l.report = l.report.Merge(*r.Device)
			w.last[k[2:]] = l
			w.queue.AddAfter(k, w.opts.FlushInterval)
		case r.Plugin != nil && r.Plugin.Name != "":
			e := w.plugins[r.Plugin.Name]
			if e == nil {
				e = &pluginEntry{nodes: map[string]linkproto.PluginReport{}}
				w.plugins[r.Plugin.Name] = e
			}
			e.nodes[node] = *r.Plugin
			e.waiters = append(e.waiters, wt)
			w.queue.AddAfter("p/"+r.Plugin.Name, w.opts.FlushInterval)
		default:
			bad = append(bad, r.Seq) // nothing to write; acknowledge so the host drops it
		}
	}
	w.mu.Unlock()
	if len(bad) > 0 {
		w.log.Warn("status: acknowledging empty reports", "node", node, "count", len(bad))
		done(bad)
	}
}

// SetRollout queues a write of a MapperPlugin's status.rollout, gathered
// and rate limited with its nodes' reports; a later call before the write
// replaces it.
func (w *Writer) SetRollout(plugin string, st mappersv1alpha1.RolloutStatus) {
	w.mu.Lock()
	e := w.plugins[plugin]
	if e == nil {
		e = &pluginEntry{nodes: map[string]linkproto.PluginReport{}}
		w.plugins[plugin] = e
	}
	e.rollout = st.DeepCopy()
	w.mu.Unlock()
	w.queue.AddAfter("p/"+plugin, w.opts.FlushInterval)
}

// Pending returns how many objects wait to be written.
func (w *Writer) Pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.devices) + len(w.plugins)
}

// Run runs the workers until ctx ends, and returns once they have all
// stopped. It returns nil: a failed write is logged and retried, never
// fatal.
func (w *Writer) Run(ctx context.Context) error {
	if m := w.opts.Metrics; m != nil {
		m.bind(w)
	}
	var wg sync.WaitGroup
	for range w.opts.Workers {
		wg.Go(func() {
			for w.next(ctx) {
			}
		})
	}
	<-ctx.Done()
	w.queue.ShutDown()
	wg.Wait()
	return nil
}

func (w *Writer) next(ctx context.Context) bool {
	key, quit := w.queue.Get()
	if quit {
		return false
	}
	defer w.queue.Done(key)
	if err := w.limiter.Wait(ctx); err != nil {
		return false
	}
	var err error
	var kind string
	switch key[:2] {
	case "d/":
		kind = "device"
		err = w.writeDevice(ctx, key[2:])
	case "p/":
		kind = "plugin"
		err = w.writePlugin(ctx, key[2:])
	}
	if m := w.opts.Metrics; m != nil {
		m.writes.WithLabelValues(kind, result(err)).Inc()
	}
	if err != nil {
		w.log.Warn("status: write failed; retrying", "object", key[2:], "kind", kind, "err", err)
		w.queue.AddRateLimited(key)
		return true
	}
	w.queue.Forget(key)
	return true
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// ack tells each waiting session its report is written; a session
// gathers the sequence numbers into one acknowledgement message.
func ack(ws []waiter) {
	for _, w := range ws {
		w.done([]uint64{w.seq})
	}
}

func (w *Writer) takeDevice(k string) (*deviceEntry, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.devices[k]
	delete(w.devices, k)
	return e, ok
}

// putBackDevice returns a failed entry, under any newer reports.
func (w *Writer) putBackDevice(k string, e *deviceEntry) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if cur := w.devices[k]; cur != nil {
		e.report = e.report.Merge(cur.report)
		e.waiters = append(e.waiters, cur.waiters...)
	}
	w.devices[k] = e
}

func (w *Writer) writeDevice(ctx context.Context, k string) error {
	e, ok := w.takeDevice(k)
	if !ok {
		return nil
	}
	err := w.patchDevice(ctx, e.report)
	if errors.Is(err, errGone) {
		w.log.Info("status: device is gone; dropping its report", "device", k)
		err = nil
	}
	if err != nil {
		w.putBackDevice(k, e)
		return err
	}
	ack(e.waiters)
	return nil
}

var errGone = errors.New("object is gone")

func (w *Writer) patchDevice(ctx context.Context, r linkproto.DeviceReport) error {
	st := devicesv1beta1.DeviceStatusStatus{Twins: r.Twins, State: r.State, LastOnlineTime: r.LastOnlineTime}
	patch, err := json.Marshal(map[string]any{"status": st})
	if err != nil {
		return err
	}
	po := metav1.PatchOptions{FieldManager: w.opts.FieldManager}
	if !w.opts.UseDeviceStatus {
		_, err := w.opts.Dynamic.Resource(Devices).Namespace(r.Namespace).Patch(ctx, r.Name, types.MergePatchType, patch, po)
		if apierrors.IsNotFound(err) {
			return errGone
		}
		return err
	}
	api := w.opts.Dynamic.Resource(DeviceStatuses).Namespace(r.Namespace)
	key := r.Namespace + "/" + r.Name
	if _, ok := w.exists.Load(key); ok {
		_, err = api.Patch(ctx, r.Name, types.MergePatchType, patch, po)
		if !apierrors.IsNotFound(err) {
			return err
		}
		w.exists.Delete(key)
	}
	uid, ok := w.opts.Device(r.Namespace, r.Name)
	if !ok {
		return errGone
	}
	ds := &devicesv1beta1.DeviceStatus{
		TypeMeta: metav1.TypeMeta{APIVersion: devicesv1beta1.SchemeGroupVersion.String(), Kind: "DeviceStatus"},
		ObjectMeta: metav1.ObjectMeta{Name: r.Name, Namespace: r.Namespace, OwnerReferences: []metav1.OwnerReference{{
			APIVersion: devicesv1beta1.SchemeGroupVersion.String(), Kind: "Device", Name: r.Name, UID: uid,
		}}},
		Status: st,
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ds)
	if err != nil {
		return err
	}
	_, err = api.Create(ctx, &unstructured.Unstructured{Object: u}, metav1.CreateOptions{FieldManager: w.opts.FieldManager})
	if apierrors.IsAlreadyExists(err) {
		// Written before (by this replica before a restart, or another).
		w.exists.Store(key, struct{}{})
		_, err = api.Patch(ctx, r.Name, types.MergePatchType, patch, po)
		return err
	}
	if err == nil {
		w.exists.Store(key, struct{}{})
	}
	return err
}

func (w *Writer) writePlugin(ctx context.Context, name string) error {
	w.mu.Lock()
	e, ok := w.plugins[name]
	delete(w.plugins, name)
	w.mu.Unlock()
	if !ok {
		return nil
	}
	err := w.updatePlugin(ctx, name, e.nodes, e.rollout)
	if errors.Is(err, errGone) {
		w.log.Info("status: MapperPlugin is gone; dropping its node states", "plugin", name)
		err = nil
	}
	if err != nil {
		w.mu.Lock()
		if cur := w.plugins[name]; cur != nil {
			for n, r := range cur.nodes {
				e.nodes[n] = r
			}
			if cur.rollout != nil {
				e.rollout = cur.rollout
			}
			e.waiters = append(e.waiters, cur.waiters...)
		}
		w.plugins[name] = e
		w.mu.Unlock()
		return err
	}
	ack(e.waiters)
	return nil
}

// updatePlugin sets this replica's nodes' entries in a MapperPlugin's
// status, leaving other nodes' entries (other replicas') alone, and its
// status.rollout when rollout is not nil, retrying on conflicts.
func (w *Writer) updatePlugin(ctx context.Context, name string, nodes map[string]linkproto.PluginReport, rollout *mappersv1alpha1.RolloutStatus) error {
	gvr := schema.GroupVersionResource(mappersv1alpha1.GroupVersionResource)
	api := w.opts.Dynamic.Resource(gvr)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u, err := api.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return errGone
		}
		if err != nil {
			return err
		}
		p := &mappersv1alpha1.MapperPlugin{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), p); err != nil {
			return fmt.Errorf("decode MapperPlugin %s: %w", name, err)
		}
		changed := SetNodes(&p.Status, nodes, metav1.Now())
		if rollout != nil && !equality.Semantic.DeepEqual(p.Status.Rollout, *rollout) {
			p.Status.Rollout = *rollout
			changed = true
		}
		if !changed {
			return nil
		}
		out, err := runtime.DefaultUnstructuredConverter.ToUnstructured(p)
		if err != nil {
			return err
		}
		_, err = api.UpdateStatus(ctx, &unstructured.Unstructured{Object: out}, metav1.UpdateOptions{FieldManager: w.opts.FieldManager})
		return err
	})
}

// SetNodes merges node reports into a MapperPlugin status, keeping the
// list sorted by node and LastTransitionTime at the last change of phase,
// digest or rejected digest (a rollout tells a node's failure of its
// module from one left over from an earlier rollout by that time). It
// reports whether anything changed.
func SetNodes(st *mappersv1alpha1.MapperPluginStatus, nodes map[string]linkproto.PluginReport, now metav1.Time) bool {
	changed := false
	idx := map[string]int{}
	for i, n := range st.Nodes {
		idx[n.Node] = i
	}
	for node, r := range nodes {
		ns := mappersv1alpha1.NodeStatus{Node: node, Phase: mappersv1alpha1.PluginPhase(r.Phase), Digest: r.Digest, Message: r.Message, RejectedDigest: r.RejectedDigest, LastTransitionTime: now}
		i, ok := idx[node]
		if !ok {
			st.Nodes = append(st.Nodes, ns)
			changed = true
			continue
		}
		old := st.Nodes[i]
		if old.Phase == ns.Phase && old.Digest == ns.Digest && old.RejectedDigest == ns.RejectedDigest {
			ns.LastTransitionTime = old.LastTransitionTime
		}
		if old != ns {
			st.Nodes[i] = ns
			changed = true
		}
	}
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].Node < st.Nodes[j].Node })
	return changed
}
