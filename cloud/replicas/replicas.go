// Package replicas shares wapper-cloud's work among several replicas.
//
// Each edge node is served by one replica at a time: the one that holds
// the node's Lease (coordination.k8s.io/v1, named LeaseName(node), in
// wapper-cloud's namespace). A replica claims the Lease when the node's
// host says hello, renews it while the host stays connected, and releases
// it when the host leaves. A hello reaching a replica while another
// replica holds the node's Lease, and has renewed it within its duration,
// is refused (HeldError, which the hub answers with 409 Conflict and
// Retry-After); the host tries again, behind a Service reaching another
// replica or, when the holder died, waiting for its Lease to run out.
// Only the replica serving a node computes the node's desired set and
// writes the status its reports carry.
//
// Work that is not per node (planning MapperPlugin rollouts and writing
// status.rollout) is done by one leader, chosen with client-go's leader
// election on the Lease LeaderLease (see Leader).
//
// Expiry is judged by each Lease's renewTime against this replica's clock,
// as Kubernetes' node leases are: the replicas' clocks must agree to well
// within the lease duration.
package replicas

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Defaults of Options (wapper-cloud's --lease-duration and --lease-renew).
const (
	// DefaultLeaseDuration is how long a Lease not renewed keeps its
	// node (or the leadership) with its holder.
	DefaultLeaseDuration = 15 * time.Second
	// DefaultRenewInterval is how often a holder renews its Leases.
	DefaultRenewInterval = 5 * time.Second
)

// LeaderLease names the Lease of the leader election.
const LeaderLease = "wapper-cloud-leader"

// leasePrefix starts the name of every node's Lease.
const leasePrefix = "wapper-node-"

// NodeLabel marks a node's Lease with the node's name (when the name fits
// a label value; LeaseName tells the Lease of any node).
const NodeLabel = "mappers.wapper.dev/node"

// LeaseName returns the name of node's Lease: "wapper-node-" and the node
// name, or, for a name too long for that, its beginning and a hash.
func LeaseName(node string) string {
	const maxName = 253
	if len(leasePrefix)+len(node) <= maxName {
		return leasePrefix + node
	}
	sum := sha256.Sum256([]byte(node))
	h := hex.EncodeToString(sum[:8])
	keep := maxName - len(leasePrefix) - len(h) - 1
	return leasePrefix + node[:keep] + "-" + h
}

// Identity returns a replica identity: the host name (a pod's name in
// Kubernetes) and a random suffix, so that a restarted replica is never
// taken for its predecessor.
func Identity() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "wapper-cloud"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return h + "-" + hex.EncodeToString(b)
}

// HeldError is the refusal of a node held by another replica.
type HeldError struct {
	// Node is the node refused.
	Node string
	// Holder is the identity of the replica that holds it.
	Holder string
	// Expires is when the holder's Lease runs out unless renewed.
	Expires time.Time
	// now is when the Lease was looked at.
	now time.Time
}

// Error implements error.
func (e *HeldError) Error() string {
	return fmt.Sprintf("node %s is served by wapper-cloud replica %s (its lease runs until %s unless renewed); try again, or another replica",
		e.Node, e.Holder, e.Expires.UTC().Format(time.RFC3339))
}

// RetryAfter is how long until the holder's Lease runs out, at least a
// second: when a host should try again.
func (e *HeldError) RetryAfter() time.Duration {
	return max(e.Expires.Sub(e.now), time.Second)
}

// record is what decide needs of a Lease.
type record struct {
	holder   string
	renewed  time.Time
	duration time.Duration
}

// verdict is decide's answer.
type verdict int

const (
	// mine: this replica holds the lease; renew it.
	mine verdict = iota
	// free: nobody holds it; take it.
	free
	// expired: another replica held it but let it run out; take it over.
	expired
	// held: another replica holds it.
	held
)

// decide tells what replica me may do with a lease as recorded, at now.
func decide(r record, me string, now time.Time) verdict {
	switch {
	case r.holder == me:
		return mine
	case r.holder == "":
		return free
	case !now.Before(r.renewed.Add(r.duration)):
		return expired
	}
	return held
}

func recordOf(l *coordinationv1.Lease) record {
	var r record
	if l.Spec.HolderIdentity != nil {
		r.holder = *l.Spec.HolderIdentity
	}
	if l.Spec.RenewTime != nil {
		r.renewed = l.Spec.RenewTime.Time
	}
	if l.Spec.LeaseDurationSeconds != nil {
		r.duration = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	return r
}

// Options configure Nodes.
type Options struct {
	// Kube reaches the API server (leases get, create and update in
	// Namespace).
	Kube kubernetes.Interface
	// Namespace holds the Leases.
	Namespace string
	// Identity names this replica in the Leases' holderIdentity (default
	// Identity()).
	Identity string
	// LeaseDuration is how long a Lease not renewed holds (default
	// DefaultLeaseDuration; whole seconds, at least one).
	LeaseDuration time.Duration
	// RenewInterval is how often Run renews the Leases held (default
	// DefaultRenewInterval; less than LeaseDuration).
	RenewInterval time.Duration
	// OnLost is called when this replica loses a node it served (its
	// Lease was taken over, or could not be renewed for LeaseDuration
	// less RenewInterval, so before another replica may take it): the
	// node's session must end.
	OnLost func(node string)
	// Logger receives logs (default slog.Default()).
	Logger *slog.Logger
	// Metrics receives the metrics; nil for none.
	Metrics *Metrics
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// withDefaults fills in the defaults of o and checks it.
func (o Options) withDefaults() (Options, error) {
	if o.Identity == "" {
		o.Identity = Identity()
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration = DefaultLeaseDuration
	}
	if o.RenewInterval == 0 {
		o.RenewInterval = DefaultRenewInterval
	}
	if o.LeaseDuration < time.Second || o.LeaseDuration%time.Second != 0 {
		return o, fmt.Errorf("lease duration %s: want whole seconds, at least 1s", o.LeaseDuration)
	}
	if o.RenewInterval <= 0 || o.RenewInterval >= o.LeaseDuration {
		return o, fmt.Errorf("lease renew interval %s: want more than 0 and less than the lease duration %s", o.RenewInterval, o.LeaseDuration)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}

// Nodes claims, renews and releases the Leases of the nodes this replica
// serves.
type Nodes struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	claims map[string]*claim // node → this replica's claim on it
}

// claim is this replica's hold on one node: the sessions using it and when
// its Lease was last renewed.
type claim struct {
	sessions int
	renewed  time.Time
	lease    *coordinationv1.Lease // as last written
}

// NewNodes returns Nodes; call Run to renew the Leases it claims.
func NewNodes(opts Options) (*Nodes, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if opts.Kube == nil || opts.Namespace == "" {
		return nil, errors.New("replicas: Options.Kube and Options.Namespace are required")
	}
	n := &Nodes{opts: opts, log: opts.Logger.With("replica", opts.Identity), claims: map[string]*claim{}}
	if opts.Metrics != nil {
		opts.Metrics.bindNodes(n)
	}
	return n, nil
}

// Identity returns this replica's identity.
func (n *Nodes) Identity() string { return n.opts.Identity }

// Owned returns the nodes this replica holds, sorted.
func (n *Nodes) Owned() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]string, 0, len(n.claims))
	for node := range n.claims {
		out = append(out, node)
	}
	sort.Strings(out)
	return out
}

// Claim makes this replica node's server, taking or renewing its Lease,
// for one session; the session calls release, once, when it ends (the
// Lease is released when the node's last session here has). It fails
// with a *HeldError when another replica holds the node.
func (n *Nodes) Claim(ctx context.Context, node string) (release func(), err error) {
	l, err := n.hold(ctx, node, nil)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	c := n.claims[node]
	if c == nil {
		c = &claim{}
		n.claims[node] = c
	}
	c.sessions++
	c.renewed, c.lease = n.opts.Now(), l
	n.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { n.release(node, c) }) }, nil
}

// release ends one session's use of claim c on node; the last one
// releases the Lease.
func (n *Nodes) release(node string, c *claim) {
	n.mu.Lock()
	if n.claims[node] != c { // lost meanwhile, and perhaps claimed again
		n.mu.Unlock()
		return
	}
	c.sessions--
	last := c.sessions == 0
	if last {
		delete(n.claims, node)
	}
	n.mu.Unlock()
	if !last {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.opts.RenewInterval)
	defer cancel()
	if err := n.releaseLease(ctx, node); err != nil {
		n.log.Warn("replicas: could not release a node's lease; it runs out by itself", "node", node, "err", err, "in", n.opts.LeaseDuration)
	}
}

// hold takes or renews node's Lease for this replica and returns it as
// written. last, when not nil, is the Lease as this replica last wrote it:
// a renewal then needs no read unless the Lease changed since.
func (n *Nodes) hold(ctx context.Context, node string, last *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	api := n.opts.Kube.CoordinationV1().Leases(n.opts.Namespace)
	name := LeaseName(node)
	for range 3 {
		now := n.opts.Now()
		var l *coordinationv1.Lease
		var err error
		if last != nil {
			l, last = last.DeepCopy(), nil
		} else {
			l, err = api.Get(ctx, name, metav1.GetOptions{})
		}
		if apierrors.IsNotFound(err) {
			l = n.newLease(node, name, now)
			out, err := api.Create(ctx, l, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("create the lease of node %s: %w", node, err)
			}
			n.log.Info("replicas: serving node", "node", node)
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read the lease of node %s: %w", node, err)
		}
		r := recordOf(l)
		v := decide(r, n.opts.Identity, now)
		if v == held {
			return nil, &HeldError{Node: node, Holder: r.holder, Expires: r.renewed.Add(r.duration), now: now}
		}
		n.fill(l, node, now, v != mine)
		out, err := api.Update(ctx, l, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("update the lease of node %s: %w", node, err)
		}
		switch v {
		case expired:
			n.log.Info("replicas: took over a node whose replica let its lease run out", "node", node, "from", r.holder)
			if m := n.opts.Metrics; m != nil {
				m.takeovers.Inc()
			}
		case free:
			n.log.Info("replicas: serving node", "node", node)
		}
		return out, nil
	}
	return nil, fmt.Errorf("the lease of node %s keeps changing under this replica; try again", node)
}

func (n *Nodes) newLease(node, name string, now time.Time) *coordinationv1.Lease {
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: n.opts.Namespace,
		Labels: map[string]string{"app.kubernetes.io/managed-by": "wapper-cloud"}}}
	n.fill(l, node, now, true)
	return l
}

// fill makes l this replica's, renewed at now; acquired also sets the
// acquire time and counts a transition.
func (n *Nodes) fill(l *coordinationv1.Lease, node string, now time.Time, acquired bool) {
	id := n.opts.Identity
	secs := int32(n.opts.LeaseDuration / time.Second)
	t := metav1.NewMicroTime(now)
	l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &id, &secs, &t
	if acquired {
		l.Spec.AcquireTime = &t
		if l.Spec.LeaseTransitions == nil {
			l.Spec.LeaseTransitions = new(int32)
		} else {
			tr := *l.Spec.LeaseTransitions + 1
			l.Spec.LeaseTransitions = &tr
		}
	}
	if len(node) <= 63 {
		if l.Labels == nil {
			l.Labels = map[string]string{}
		}
		l.Labels[NodeLabel] = node
	}
}

// releaseLease empties node's Lease when this replica still holds it, so
// that another replica may take the node at once.
func (n *Nodes) releaseLease(ctx context.Context, node string) error {
	api := n.opts.Kube.CoordinationV1().Leases(n.opts.Namespace)
	l, err := api.Get(ctx, LeaseName(node), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if recordOf(l).holder != n.opts.Identity {
		return nil
	}
	l.Spec.HolderIdentity = nil
	_, err = api.Update(ctx, l, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return nil // changed meanwhile: no longer ours to release
	}
	if err == nil {
		n.log.Info("replicas: released node", "node", node)
	}
	return err
}

// Run renews the Leases held every RenewInterval until ctx ends, calling
// OnLost for each node lost; then it releases them all. It returns nil.
func (n *Nodes) Run(ctx context.Context) error {
	t := time.NewTicker(n.opts.RenewInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			n.releaseAll()
			return nil
		case <-t.C:
		}
		n.renew(ctx)
	}
}

// renew renews every Lease held; a node whose Lease another replica holds
// now, or that could not be renewed for a lease duration less a renew
// interval, is lost.
func (n *Nodes) renew(ctx context.Context) {
	for _, node := range n.Owned() {
		n.mu.Lock()
		var last *coordinationv1.Lease
		if c := n.claims[node]; c != nil {
			last = c.lease
		}
		n.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, n.opts.RenewInterval)
		l, err := n.hold(cctx, node, last)
		cancel()
		now := n.opts.Now()
		n.mu.Lock()
		c := n.claims[node]
		if c == nil { // released meanwhile
			n.mu.Unlock()
			continue
		}
		var held *HeldError
		// Unrenewed, a node is given up a renew interval before its
		// Lease runs out: before another replica may take it over.
		lost := errors.As(err, &held) || (err != nil && now.Sub(c.renewed) >= n.opts.LeaseDuration-n.opts.RenewInterval)
		switch {
		case err == nil:
			c.renewed, c.lease = now, l
		case lost:
			delete(n.claims, node)
		}
		n.mu.Unlock()
		if err != nil && ctx.Err() != nil {
			return
		}
		if !lost {
			if err != nil {
				n.log.Warn("replicas: could not renew a node's lease; retrying", "node", node, "err", err)
			}
			continue
		}
		n.log.Warn("replicas: lost a node: closing its session", "node", node, "err", err)
		if m := n.opts.Metrics; m != nil {
			m.lost.Inc()
		}
		if n.opts.OnLost != nil {
			n.opts.OnLost(node)
		}
	}
}

// releaseAll releases every Lease held, as the replica stops.
func (n *Nodes) releaseAll() {
	n.mu.Lock()
	nodes := make([]string, 0, len(n.claims))
	for node := range n.claims {
		nodes = append(nodes, node)
	}
	n.claims = map[string]*claim{}
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), n.opts.RenewInterval)
	defer cancel()
	for _, node := range nodes {
		if err := n.releaseLease(ctx, node); err != nil {
			n.log.Warn("replicas: could not release a node's lease at shutdown; it runs out by itself", "node", node, "err", err)
		}
	}
}

// Metrics are the Prometheus metrics of replication.
type Metrics struct {
	reg       prometheus.Registerer
	takeovers prometheus.Counter
	lost      prometheus.Counter
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reg: reg,
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wapper_cloud_node_lease_takeovers_total",
			Help: "Nodes this replica took over from a replica that let their lease run out (a replica died or was cut off)."}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wapper_cloud_node_leases_lost_total",
			Help: "Nodes this replica lost while serving them: their lease was taken over or could not be renewed in time."}),
	}
	reg.MustRegister(m.takeovers, m.lost)
	return m
}

func (m *Metrics) bindNodes(n *Nodes) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wapper_cloud_owned_nodes", Help: "Nodes this replica serves: it holds their leases."},
		func() float64 {
			n.mu.Lock()
			defer n.mu.Unlock()
			return float64(len(n.claims))
		}))
}

// BindLeader registers the gauge wapper_cloud_leader of l with reg.
func BindLeader(reg prometheus.Registerer, l *Leader) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wapper_cloud_leader", Help: "1 while this replica is the leader, which plans rollouts and writes status.rollout; 0 otherwise."},
		func() float64 {
			if l.IsLeader() {
				return 1
			}
			return 0
		}))
}
