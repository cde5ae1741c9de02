// Package replicas shares wapper-cloud's work among several replicas.
//
// Each replica keeps one heartbeat Lease of its own (coordination.k8s.io/v1,
// named HeartbeatName(identity) and labelled HeartbeatLabel, in
// wapper-cloud's namespace): it creates it when it starts, renews it every
// RenewInterval and deletes it when it stops. A replica is alive while its
// heartbeat exists and was renewed within its duration.
//
// Each edge node is served by one replica at a time: the one its Lease
// (named LeaseName(node)) names as holder, when that replica is alive. A
// node's Lease is written only when a replica claims the node (the node's
// host says hello) and when it releases it (the host leaves); it is never
// renewed, so renewals cost one write per replica, not one per node. A
// hello reaching a replica while another, alive, replica holds the node is
// refused (HeldError, which the hub answers with 409 Conflict and
// Retry-After: when the holder's heartbeat runs out unless renewed); the
// host tries again, behind a Service reaching another replica or, when the
// holder died, once its heartbeat has run out, when the node's Lease is
// taken over. A replica that stops deletes its heartbeat: all its nodes are
// free at once. A replica that cannot renew its heartbeat for its duration
// less a renew interval gives all its nodes up, before any other replica
// may take them over. Only the replica serving a node computes the node's
// desired set and writes the status its reports carry.
//
// Work that is not per node (planning MapperPlugin rollouts and writing
// status.rollout) is done by one leader, chosen with client-go's leader
// election on the Lease LeaderLease (see Leader).
//
// Expiry is judged by a heartbeat's renewTime against this replica's
// clock, as Kubernetes' node leases are: the replicas' clocks must agree
// to well within the lease duration.
package replicas

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
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
	// DefaultLeaseDuration is how long a replica whose heartbeat is not
	// renewed keeps its nodes (and the leadership).
	DefaultLeaseDuration = 15 * time.Second
	// DefaultRenewInterval is how often a replica renews its heartbeat
	// (and the leader its Lease).
	DefaultRenewInterval = 5 * time.Second
)

// LeaderLease names the Lease of the leader election.
const LeaderLease = "wapper-cloud-leader"

// leasePrefix starts the name of every node's Lease.
const leasePrefix = "wapper-node-"

// heartbeatPrefix starts the name of every replica's heartbeat Lease.
const heartbeatPrefix = "wapper-replica-"

// NodeLabel marks a node's Lease with the node's name (when the name fits
// a label value; LeaseName tells the Lease of any node).
const NodeLabel = "mappers.wapper.dev/node"

// HeartbeatLabel marks a replica's heartbeat Lease (value "true").
const HeartbeatLabel = "mappers.wapper.dev/replica-heartbeat"

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

// HeartbeatName returns the name of the heartbeat Lease of the replica
// identity: "wapper-replica-" and a hash of the identity (whose
// holderIdentity is the identity itself).
func HeartbeatName(identity string) string {
	sum := sha256.Sum256([]byte(identity))
	return heartbeatPrefix + hex.EncodeToString(sum[:10])
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
	// Expires is when the holder's heartbeat runs out unless renewed.
	Expires time.Time
	// now is when the heartbeat was looked at.
	now time.Time
}

// Error implements error.
func (e *HeldError) Error() string {
	return fmt.Sprintf("node %s is served by wapper-cloud replica %s (its heartbeat runs until %s unless renewed); try again, or another replica",
		e.Node, e.Holder, e.Expires.UTC().Format(time.RFC3339))
}

// RetryAfter is how long until the holder's heartbeat runs out, at least
// a second: when a host should try again.
func (e *HeldError) RetryAfter() time.Duration {
	return max(e.Expires.Sub(e.now), time.Second)
}

// record is what decide needs of a heartbeat Lease (or of a node Lease
// renewed by an earlier wapper-cloud, which renewed node Leases).
type record struct {
	holder   string
	renewed  time.Time
	duration time.Duration
}

// alive reports whether r, renewed, holds at now.
func (r record) alive(now time.Time) bool {
	return !r.renewed.IsZero() && now.Before(r.renewed.Add(r.duration))
}

// verdict is decide's answer.
type verdict int

const (
	// mine: the node's Lease names this replica; claim it again.
	mine verdict = iota
	// free: it names nobody; take it.
	free
	// expired: it names another replica whose heartbeat is gone or ran
	// out; take it over.
	expired
	// held: it names another replica, alive.
	held
)

// decide tells what replica me may do with a node's Lease naming holder,
// at now, given the holder's heartbeat (nil when it has none) and the node
// Lease's own renewal (the zero record but for Leases renewed by an
// earlier wapper-cloud).
func decide(holder, me string, beat *record, legacy record, now time.Time) verdict {
	switch {
	case holder == me:
		return mine
	case holder == "":
		return free
	case beat != nil && beat.alive(now), legacy.alive(now):
		return held
	}
	return expired
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
	// Kube reaches the API server (leases get, create, update and delete
	// in Namespace).
	Kube kubernetes.Interface
	// Beat, when set, is the client of this replica's heartbeat (and of
	// the leader election): give it a rate limit of its own, apart from
	// Kube's, so that a storm of claims cannot hold renewals back until
	// the replica gives its nodes up (default Kube).
	Beat kubernetes.Interface
	// Namespace holds the Leases.
	Namespace string
	// Identity names this replica in the Leases' holderIdentity (default
	// Identity()).
	Identity string
	// LeaseDuration is how long a heartbeat not renewed holds (default
	// DefaultLeaseDuration; whole seconds, at least one).
	LeaseDuration time.Duration
	// RenewInterval is how often Run renews the heartbeat (default
	// DefaultRenewInterval; less than LeaseDuration).
	RenewInterval time.Duration
	// OnLost is called when this replica loses a node it served (the
	// heartbeat could not be renewed for LeaseDuration less
	// RenewInterval, so before another replica may take the node over;
	// or its Lease was found taken over): the node's session must end.
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
	if o.Beat == nil {
		o.Beat = o.Kube
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}

// beatCacheFor is how long a heartbeat read for a contested claim answers
// the next ones on the same holder: a burst of hellos for the nodes of one
// replica reads its heartbeat about once a second, not once each.
const beatCacheFor = time.Second

// nodeLocks is the number of locks that serialize the Lease writes of one
// node (a node hashes to one of them).
const nodeLocks = 1024

// Nodes keeps this replica's heartbeat and claims and releases the Leases
// of the nodes it serves.
type Nodes struct {
	opts  Options
	log   *slog.Logger
	api   leaseAPI              // node Leases and other replicas' heartbeats
	beats leaseAPI              // this replica's heartbeat
	locks [nodeLocks]sync.Mutex // a node's claim and release
	ready chan struct{}         // closed at the first heartbeat written

	mu       sync.Mutex
	claims   map[string]*claim     // node → this replica's claim on it
	pending  map[string]bool       // nodes whose Lease may still name this replica, unserved: to release
	beat     *coordinationv1.Lease // the heartbeat as last written
	lastBeat time.Time             // when the last heartbeat written was sent
	epoch    int                   // counts the times every node was given up
	stopping bool
	seen     map[string]*seenBeat // holder → its heartbeat as last read
	swept    time.Time            // when dead replicas' heartbeats were last deleted
}

// leaseAPI is the Leases client of the namespace.
type leaseAPI = interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error)
	Create(ctx context.Context, l *coordinationv1.Lease, opts metav1.CreateOptions) (*coordinationv1.Lease, error)
	Update(ctx context.Context, l *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
	List(ctx context.Context, opts metav1.ListOptions) (*coordinationv1.LeaseList, error)
}

// sweepEvery is how often a replica deletes the heartbeats of replicas
// dead for more than a lease duration (killed, so they could not delete
// theirs).
const sweepEvery = 10 * time.Minute

// seenBeat is another replica's heartbeat as last read.
type seenBeat struct {
	mu    sync.Mutex // one read at a time
	at    time.Time  // when read; zero: never
	found bool
	r     record
}

// claim is this replica's hold on one node: the sessions using it and its
// Lease as last written.
type claim struct {
	sessions int
	lease    *coordinationv1.Lease
}

// NewNodes returns Nodes; call Run to write and renew the heartbeat,
// without which no node is claimed.
func NewNodes(opts Options) (*Nodes, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if opts.Kube == nil || opts.Namespace == "" {
		return nil, errors.New("replicas: Options.Kube and Options.Namespace are required")
	}
	n := &Nodes{opts: opts, log: opts.Logger.With("replica", opts.Identity), api: opts.Kube.CoordinationV1().Leases(opts.Namespace),
		beats: opts.Beat.CoordinationV1().Leases(opts.Namespace),
		ready: make(chan struct{}), claims: map[string]*claim{}, pending: map[string]bool{}, seen: map[string]*seenBeat{}}
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

// lock locks node's claims and releases.
func (n *Nodes) lock(node string) func() {
	h := fnv.New32a()
	_, _ = h.Write([]byte(node))
	m := &n.locks[h.Sum32()%nodeLocks]
	m.Lock()
	return m.Unlock
}

// alive reports, with n.mu held, whether this replica's heartbeat is fresh
// enough to serve nodes: written, and renewed less than a lease duration
// less a renew interval ago.
func (n *Nodes) alive(now time.Time) bool {
	return !n.stopping && !n.lastBeat.IsZero() && now.Sub(n.lastBeat) < n.opts.LeaseDuration-n.opts.RenewInterval
}

// Claim makes this replica node's server, writing its Lease, for one
// session; the session calls release, once, when it ends (the Lease is
// released when the node's last session here has). It fails with a
// *HeldError when another replica, alive, holds the node, and with another
// error when this replica cannot tell or cannot serve nodes now (its
// heartbeat is not written or not renewed).
func (n *Nodes) Claim(ctx context.Context, node string) (release func(), err error) {
	wait, cancel := context.WithTimeout(ctx, n.opts.RenewInterval)
	select {
	case <-n.ready:
	case <-wait.Done():
	}
	cancel()
	unlock := n.lock(node)
	defer unlock()
	n.mu.Lock()
	if !n.alive(n.opts.Now()) {
		n.mu.Unlock()
		return nil, errors.New("this wapper-cloud replica cannot serve nodes now: its heartbeat lease is not renewed")
	}
	c := n.claims[node]
	epoch := n.epoch
	if c != nil {
		c.sessions++
		n.mu.Unlock()
		return n.releaser(node, c), nil
	}
	n.mu.Unlock()
	l, err := n.hold(ctx, node)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	if n.epoch != epoch || !n.alive(n.opts.Now()) {
		// Every node was given up meanwhile: so is this one.
		n.pending[node] = true
		n.mu.Unlock()
		return nil, errors.New("this wapper-cloud replica cannot serve nodes now: its heartbeat lease is not renewed")
	}
	delete(n.pending, node)
	c = &claim{sessions: 1, lease: l}
	n.claims[node] = c
	n.mu.Unlock()
	return n.releaser(node, c), nil
}

func (n *Nodes) releaser(node string, c *claim) func() {
	var once sync.Once
	return func() { once.Do(func() { n.release(node, c) }) }
}

// release ends one session's use of claim c on node; the last one
// releases the Lease.
func (n *Nodes) release(node string, c *claim) {
	unlock := n.lock(node)
	defer unlock()
	n.mu.Lock()
	if n.claims[node] != c { // lost meanwhile, and perhaps claimed again
		n.mu.Unlock()
		return
	}
	c.sessions--
	if c.sessions > 0 {
		n.mu.Unlock()
		return
	}
	delete(n.claims, node)
	stopping := n.stopping
	n.mu.Unlock()
	if stopping { // deleting the heartbeat frees it with every other node
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.opts.RenewInterval)
	defer cancel()
	if err := n.releaseLease(ctx, node, c.lease); err != nil {
		n.log.Warn("replicas: could not release a node's lease; retrying at the next renewal", "node", node, "err", err)
		n.mu.Lock()
		n.pending[node] = true
		n.mu.Unlock()
	}
}

// hold writes node's Lease for this replica (creating it, taking it when
// free or when its holder is not alive) and returns it as written.
func (n *Nodes) hold(ctx context.Context, node string) (*coordinationv1.Lease, error) {
	name := LeaseName(node)
	for range 3 {
		l, err := n.api.Get(ctx, name, metav1.GetOptions{})
		now := n.opts.Now()
		if apierrors.IsNotFound(err) {
			l = n.newLease(node, name, now)
			out, err := n.api.Create(ctx, l, metav1.CreateOptions{})
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
		legacy := recordOf(l)
		holder := legacy.holder
		var beat *record
		if holder != "" && holder != n.opts.Identity {
			if beat, err = n.heartbeatOf(ctx, holder); err != nil {
				return nil, fmt.Errorf("read the heartbeat of replica %s, which node %s's lease names: %w", holder, node, err)
			}
		}
		v := decide(holder, n.opts.Identity, beat, legacy, now)
		if v == held {
			exp := legacy.renewed.Add(legacy.duration)
			if beat != nil && beat.alive(now) {
				exp = beat.renewed.Add(beat.duration)
			}
			return nil, &HeldError{Node: node, Holder: holder, Expires: exp, now: now}
		}
		n.fill(l, node, now, v != mine)
		out, err := n.api.Update(ctx, l, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue // read again: another replica may have won it
		}
		if err != nil {
			return nil, fmt.Errorf("update the lease of node %s: %w", node, err)
		}
		switch v {
		case expired:
			n.log.Info("replicas: took over a node whose replica is gone (its heartbeat lease ran out or was deleted)", "node", node, "from", holder)
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

// heartbeatOf returns the heartbeat of replica holder (nil when it has
// none), as read at most beatCacheFor ago.
func (n *Nodes) heartbeatOf(ctx context.Context, holder string) (*record, error) {
	n.mu.Lock()
	s := n.seen[holder]
	if s == nil {
		s = &seenBeat{}
		n.seen[holder] = s
	}
	n.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := n.opts.Now()
	if s.at.IsZero() || now.Sub(s.at) >= beatCacheFor || now.Before(s.at) {
		l, err := n.api.Get(ctx, HeartbeatName(holder), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			s.found = false
		case err != nil:
			return nil, err
		default:
			s.r = recordOf(l)
			s.found = s.r.holder == holder
		}
		s.at = now
	}
	if !s.found {
		return nil, nil
	}
	r := s.r
	return &r, nil
}

func (n *Nodes) newLease(node, name string, now time.Time) *coordinationv1.Lease {
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: n.opts.Namespace,
		Labels: map[string]string{"app.kubernetes.io/managed-by": "wapper-cloud"}}}
	n.fill(l, node, now, true)
	return l
}

// fill makes node's Lease l this replica's: it records the holder only
// (no renewal time nor duration: whether the holder is alive is told by
// its heartbeat). acquired also sets the acquire time and counts a
// transition.
func (n *Nodes) fill(l *coordinationv1.Lease, node string, now time.Time, acquired bool) {
	id := n.opts.Identity
	l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &id, nil, nil
	if acquired || l.Spec.AcquireTime == nil {
		t := metav1.NewMicroTime(now)
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

// releaseLease empties node's Lease when it still names this replica, so
// that another replica may take the node at once. last is the Lease as
// this replica wrote it at its claim (nil: read it first). A Lease found
// naming another replica at the end of a session was taken over: a node
// lost (counted; the session has ended already).
func (n *Nodes) releaseLease(ctx context.Context, node string, last *coordinationv1.Lease) error {
	session := last != nil
	for range 2 {
		l := last
		if l == nil {
			var err error
			if l, err = n.api.Get(ctx, LeaseName(node), metav1.GetOptions{}); apierrors.IsNotFound(err) {
				return nil
			} else if err != nil {
				return err
			}
		}
		last = nil
		if h := recordOf(l).holder; h != n.opts.Identity {
			if h != "" && session {
				n.log.Warn("replicas: a node's lease was taken over by another replica while this one served it", "node", node, "by", h)
				if m := n.opts.Metrics; m != nil {
					m.lost.Inc()
				}
			}
			return nil
		}
		l = l.DeepCopy()
		l.Spec.HolderIdentity = nil
		_, err := n.api.Update(ctx, l, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue // changed since: read it
		}
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err == nil {
			n.log.Info("replicas: released node", "node", node)
		}
		return err
	}
	return fmt.Errorf("the lease of node %s keeps changing", node)
}

// Run writes this replica's heartbeat and renews it every RenewInterval
// until ctx ends, giving every node up (OnLost) when it could not be
// renewed for LeaseDuration less RenewInterval; then it deletes the
// heartbeat, which frees every node this replica held. It returns nil.
func (n *Nodes) Run(ctx context.Context) error {
	n.renew(ctx)
	t := time.NewTicker(n.opts.RenewInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			n.stop()
			return nil
		case <-t.C:
		}
		n.renew(ctx)
	}
}

// renew renews the heartbeat; gives every node up when it has not been
// renewed for a lease duration less a renew interval (judged before the
// renewal too, for a replica that was paused); and releases the Leases
// still to release.
func (n *Nodes) renew(ctx context.Context) {
	n.giveUpIfStale()
	cctx, cancel := context.WithTimeout(ctx, n.opts.RenewInterval)
	err := n.writeBeat(cctx)
	cancel()
	if err != nil && ctx.Err() == nil {
		n.log.Warn("replicas: could not renew this replica's heartbeat lease; retrying", "err", err)
	}
	n.giveUpIfStale()
	now := n.opts.Now()
	n.mu.Lock()
	for h, s := range n.seen { // forget replicas not asked about lately
		if s.mu.TryLock() {
			if now.Sub(s.at) > time.Minute {
				delete(n.seen, h)
			}
			s.mu.Unlock()
		}
	}
	var pending []string
	sweep := false
	if n.alive(now) {
		for node := range n.pending {
			pending = append(pending, node)
		}
		if n.swept.IsZero() || now.Sub(n.swept) >= sweepEvery || now.Before(n.swept) {
			sweep, n.swept = true, now
		}
	}
	n.mu.Unlock()
	if sweep {
		cctx, cancel := context.WithTimeout(ctx, n.opts.RenewInterval)
		n.sweep(cctx, now)
		cancel()
	}
	sort.Strings(pending)
	for _, node := range pending {
		if ctx.Err() != nil {
			return
		}
		n.releasePending(ctx, node)
	}
}

// sweep deletes the heartbeats of replicas dead for more than a lease
// duration (not renewed for two), each only as read: a heartbeat renewed
// meanwhile stays.
func (n *Nodes) sweep(ctx context.Context, now time.Time) {
	list, err := n.api.List(ctx, metav1.ListOptions{LabelSelector: HeartbeatLabel + "=true"})
	if err != nil {
		n.log.Warn("replicas: could not list the replicas' heartbeat leases, to delete dead ones", "err", err)
		return
	}
	for _, l := range list.Items {
		r := recordOf(&l)
		if r.holder == n.opts.Identity || r.renewed.IsZero() || now.Before(r.renewed.Add(2*r.duration)) {
			continue
		}
		rv := l.ResourceVersion
		err := n.api.Delete(ctx, l.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
		switch {
		case err == nil:
			n.log.Info("replicas: deleted the heartbeat lease of a dead replica", "lease", l.Name, "replica", r.holder, "renewed", r.renewed)
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		default:
			n.log.Warn("replicas: could not delete the heartbeat lease of a dead replica", "lease", l.Name, "err", err)
		}
	}
}

// giveUpIfStale gives every node up (OnLost) when the heartbeat has not
// been renewed for a lease duration less a renew interval: before another
// replica may take them over.
func (n *Nodes) giveUpIfStale() {
	n.mu.Lock()
	var lost []string
	if !n.stopping && !n.lastBeat.IsZero() && !n.alive(n.opts.Now()) && len(n.claims) > 0 {
		n.epoch++
		for node := range n.claims {
			lost = append(lost, node)
			n.pending[node] = true
		}
		n.claims = map[string]*claim{}
	}
	since := n.lastBeat
	n.mu.Unlock()
	if len(lost) == 0 {
		return
	}
	sort.Strings(lost)
	n.log.Warn("replicas: this replica's heartbeat lease was not renewed in time: giving every node up before another replica may take them over",
		"nodes", len(lost), "renewed", since)
	if m := n.opts.Metrics; m != nil {
		m.lost.Add(float64(len(lost)))
	}
	for _, node := range lost {
		if n.opts.OnLost != nil {
			n.opts.OnLost(node)
		}
	}
}

// releasePending releases node's Lease if it still names this replica and
// the node is not served here.
func (n *Nodes) releasePending(ctx context.Context, node string) {
	unlock := n.lock(node)
	defer unlock()
	n.mu.Lock()
	_, served := n.claims[node]
	if served || !n.pending[node] {
		delete(n.pending, node)
		n.mu.Unlock()
		return
	}
	n.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, n.opts.RenewInterval)
	err := n.releaseLease(cctx, node, nil)
	cancel()
	if err != nil {
		n.log.Warn("replicas: could not release a node's lease; retrying at the next renewal", "node", node, "err", err)
		return
	}
	n.mu.Lock()
	delete(n.pending, node)
	n.mu.Unlock()
}

// writeBeat creates or renews this replica's heartbeat.
func (n *Nodes) writeBeat(ctx context.Context) error {
	n.mu.Lock()
	last := n.beat
	n.mu.Unlock()
	name := HeartbeatName(n.opts.Identity)
	for range 3 {
		now := n.opts.Now()
		var l *coordinationv1.Lease
		if last != nil {
			l, last = last.DeepCopy(), nil
		} else {
			var err error
			l, err = n.beats.Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				l = nil
			} else if err != nil {
				return err
			}
		}
		id := n.opts.Identity
		secs := int32(n.opts.LeaseDuration / time.Second)
		t := metav1.NewMicroTime(now)
		var out *coordinationv1.Lease
		var err error
		if l == nil {
			l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: n.opts.Namespace,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "wapper-cloud", HeartbeatLabel: "true"}}}
			l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime, l.Spec.AcquireTime = &id, &secs, &t, &t
			out, err = n.beats.Create(ctx, l, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				continue
			}
		} else {
			l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &id, &secs, &t
			out, err = n.beats.Update(ctx, l, metav1.UpdateOptions{})
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				continue
			}
		}
		if err != nil {
			return err
		}
		n.mu.Lock()
		first := n.lastBeat.IsZero()
		n.beat, n.lastBeat = out, now
		n.mu.Unlock()
		if first {
			n.log.Info("replicas: heartbeat lease written", "lease", name)
			close(n.ready)
		}
		return nil
	}
	return fmt.Errorf("the heartbeat lease %s keeps changing under this replica", name)
}

// Drain readies the replica's stop, once no host may say hello here any
// more and before its sessions are closed: it claims no node any more, and
// releases none one by one (no write per node as the sessions close); Run
// deletes the heartbeat when its context ends, which frees every node at
// once.
func (n *Nodes) Drain() {
	n.mu.Lock()
	n.stopping = true
	n.mu.Unlock()
}

// stop gives every node up as the replica stops: deleting the heartbeat
// frees them all at once (their Leases name a replica with no heartbeat).
func (n *Nodes) stop() {
	n.mu.Lock()
	n.stopping = true
	nodes := len(n.claims)
	n.claims = map[string]*claim{}
	written := n.beat != nil
	n.mu.Unlock()
	if !written {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.opts.RenewInterval)
	defer cancel()
	err := n.beats.Delete(ctx, HeartbeatName(n.opts.Identity), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		n.log.Warn("replicas: could not delete this replica's heartbeat lease at shutdown; its nodes are free once it runs out", "err", err, "in", n.opts.LeaseDuration)
		return
	}
	n.log.Info("replicas: heartbeat lease deleted: this replica's nodes are free", "nodes", nodes)
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
