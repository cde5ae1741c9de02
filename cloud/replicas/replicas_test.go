package replicas

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// TestDecide: a node's Lease is this replica's, free, another's whose
// heartbeat ran out or is gone, or another's, alive.
func TestDecide(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	beat := func(renewed time.Time) *record {
		return &record{holder: "b", renewed: renewed, duration: 15 * time.Second}
	}
	for _, c := range []struct {
		name   string
		holder string
		beat   *record
		legacy record
		want   verdict
	}{
		{"mine", "a", nil, record{}, mine},
		{"released", "", beat(now), record{}, free},
		{"another's, alive", "b", beat(now.Add(-14 * time.Second)), record{}, held},
		{"another's, heartbeat run out", "b", beat(now.Add(-15 * time.Second)), record{}, expired},
		{"another's, no heartbeat (stopped)", "b", nil, record{}, expired},
		{"another's, heartbeat renewed in the future (clock skew)", "b", beat(now.Add(time.Second)), record{}, held},
		{"an earlier wapper-cloud's, renewed", "b", nil, record{holder: "b", renewed: now.Add(-time.Second), duration: 15 * time.Second}, held},
		{"an earlier wapper-cloud's, run out", "b", nil, record{holder: "b", renewed: now.Add(-time.Minute), duration: 15 * time.Second}, expired},
	} {
		if got := decide(c.holder, "a", c.beat, c.legacy, now); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

// TestLeaseName: names are valid object names, distinct for long nodes.
func TestLeaseName(t *testing.T) {
	long1, long2 := strings.Repeat("n", 250)+"1", strings.Repeat("n", 250)+"2"
	if LeaseName("node-a") != "wapper-node-node-a" {
		t.Fatalf("LeaseName(node-a) = %s", LeaseName("node-a"))
	}
	if LeaseName(long1) == LeaseName(long2) {
		t.Fatal("two long node names share a lease")
	}
	for _, n := range []string{"node-a", "edge.example.com", long1} {
		if errs := validation.IsDNS1123Subdomain(LeaseName(n)); len(errs) > 0 {
			t.Errorf("LeaseName(%q): %v", n, errs)
		}
		if errs := validation.IsDNS1123Subdomain(HeartbeatName(n)); len(errs) > 0 {
			t.Errorf("HeartbeatName(%q): %v", n, errs)
		}
	}
	if HeartbeatName("a") == HeartbeatName("b") || !strings.HasPrefix(HeartbeatName("a"), "wapper-replica-") {
		t.Errorf("HeartbeatName: %s, %s", HeartbeatName("a"), HeartbeatName("b"))
	}
}

// clock is a settable clock for tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// withConflicts makes kc's Leases carry resource versions and refuse an
// update of a stale one, as the API server does.
func withConflicts(kc *fake.Clientset) *fake.Clientset {
	var mu sync.Mutex
	rv := 0
	next := func() string {
		rv++
		return strconv.Itoa(rv)
	}
	kc.PrependReactor("create", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		a.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease).ResourceVersion = next()
		return false, nil, nil
	})
	kc.PrependReactor("update", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		l := a.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease)
		cur, err := kc.Tracker().Get(a.GetResource(), a.GetNamespace(), l.Name)
		if err != nil {
			return false, nil, nil
		}
		if cur.(*coordinationv1.Lease).ResourceVersion != l.ResourceVersion {
			return true, nil, apierrors.NewConflict(a.GetResource().GroupResource(), l.Name, errors.New("the object has been modified"))
		}
		l.ResourceVersion = next()
		return false, nil, nil
	})
	return kc
}

// newReplica returns replica id, its heartbeat written.
func newReplica(t *testing.T, kc *fake.Clientset, id string, clk *clock, lost func(string)) (*Nodes, *Metrics) {
	t.Helper()
	m := NewMetrics(prometheus.NewRegistry())
	n, err := NewNodes(Options{Kube: kc, Namespace: "ns", Identity: id, Now: clk.Now, OnLost: lost, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	n.renew(context.Background())
	if n.lastBeat.IsZero() {
		t.Fatalf("replica %s wrote no heartbeat", id)
	}
	return n, m
}

// advance moves clk on by d, a renew interval at a time, the replicas
// alive renewing their heartbeats after each step.
func advance(clk *clock, d time.Duration, alive ...*Nodes) {
	for d > 0 {
		step := min(d, DefaultRenewInterval)
		clk.add(step)
		d -= step
		for _, n := range alive {
			n.renew(context.Background())
		}
	}
}

func holderOf(t *testing.T, kc *fake.Clientset, node string) string {
	t.Helper()
	l, err := kc.CoordinationV1().Leases("ns").Get(context.Background(), LeaseName(node), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// TestNodes: a node goes to the first replica that claims it; the other
// is refused until it is released, or until the holder's heartbeat runs
// out, when the other takes it over and the first, coming back, gives
// every node up; a replica that stops frees its nodes at once.
func TestNodes(t *testing.T) {
	ctx := context.Background()
	kc := withConflicts(fake.NewClientset())
	clk := &clock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	var lostMu sync.Mutex
	var lost []string
	a, am := newReplica(t, kc, "a", clk, func(n string) { lostMu.Lock(); lost = append(lost, n); lostMu.Unlock() })
	b, bm := newReplica(t, kc, "b", clk, nil)

	relA, err := a.Claim(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Claim(ctx, "n1")
	var held *HeldError
	if !errors.As(err, &held) || held.Holder != "a" || held.RetryAfter() != DefaultLeaseDuration {
		t.Fatalf("b's claim of a's node: %v", err)
	}
	// A second session of the same node on a keeps the claim when the
	// first ends.
	relA2, err := a.Claim(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	relA()
	relA() // twice is once
	if got := a.Owned(); len(got) != 1 {
		t.Fatalf("a owns %v after one of two sessions ended", got)
	}
	if _, err := b.Claim(ctx, "n1"); err == nil {
		t.Fatal("b took n1 while a still serves it")
	}
	relA2()
	if got := a.Owned(); len(got) != 0 {
		t.Fatalf("a owns %v after its sessions ended", got)
	}
	if h := holderOf(t, kc, "n1"); h != "" {
		t.Fatalf("n1's lease names %s after its release", h)
	}
	// Released: b takes it at once, with no takeover.
	relB, err := b.Claim(ctx, "n1")
	if err != nil {
		t.Fatalf("b's claim of a released node: %v", err)
	}
	relB()

	// a serves n2 and stops renewing its heartbeat (a dead replica): b
	// is refused until the heartbeat runs out, then takes over.
	if _, err := a.Claim(ctx, "n2"); err != nil {
		t.Fatal(err)
	}
	advance(clk, DefaultLeaseDuration-time.Second, b)
	if _, err := b.Claim(ctx, "n2"); !errors.As(err, &held) || held.RetryAfter() != time.Second {
		t.Fatalf("b's claim a second before a's heartbeat runs out: %v", err)
	}
	advance(clk, time.Second, b)
	if _, err := b.Claim(ctx, "n2"); err != nil {
		t.Fatalf("b's claim of a node whose replica's heartbeat ran out: %v", err)
	}
	if got := testutil.ToFloat64(bm.takeovers); got != 1 {
		t.Fatalf("b counted %v takeovers", got)
	}
	l, err := kc.CoordinationV1().Leases("ns").Get(ctx, LeaseName("n2"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *l.Spec.HolderIdentity != "b" || *l.Spec.LeaseTransitions != 1 || l.Labels[NodeLabel] != "n2" || l.Spec.RenewTime != nil {
		t.Fatalf("lease after the takeover: %+v %v", l.Spec, l.Labels)
	}
	// a comes back to life: it gives every node up (n2) before renewing.
	a.renew(ctx)
	if len(lost) != 1 || lost[0] != "n2" || len(a.Owned()) != 0 || testutil.ToFloat64(am.lost) != 1 {
		t.Fatalf("a after coming back: lost %v, owns %v", lost, a.Owned())
	}
	if h := holderOf(t, kc, "n2"); h != "b" {
		t.Fatalf("n2's lease names %s after a came back", h)
	}
	// b keeps n2, and serves n3 and n4.
	advance(clk, DefaultRenewInterval, a, b)
	for _, node := range []string{"n3", "n4"} {
		if _, err := b.Claim(ctx, node); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.Owned(); len(got) != 3 {
		t.Fatalf("b owns %v", got)
	}
	// b stops: drained, its sessions end with no write per node; it
	// deletes its heartbeat, and a may take all its nodes at once.
	relB3, err := b.Claim(ctx, "n3")
	if err != nil {
		t.Fatal(err)
	}
	b.Drain()
	kc.ClearActions()
	relB3()
	b.renew(ctx) // a renewal racing the stop loses nothing
	if acts := kc.Actions(); len(acts) != 1 || acts[0].GetVerb() != "update" || testutil.ToFloat64(bm.lost) != 0 {
		t.Fatalf("a drained replica's release and renewal: %v; lost %v", acts, lost)
	}
	b.stop()
	if _, err := kc.CoordinationV1().Leases("ns").Get(ctx, HeartbeatName("b"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("b's heartbeat after b stopped: %v", err)
	}
	if _, err := b.Claim(ctx, "n5"); err == nil {
		t.Fatal("a stopped replica claimed a node")
	}
	clk.add(beatCacheFor) // a's last look at b's heartbeat is stale
	for _, node := range []string{"n2", "n3", "n4"} {
		if _, err := a.Claim(ctx, node); err != nil {
			t.Fatalf("a's claim of %s right after b stopped: %v", node, err)
		}
	}
}

// TestRenewalsWriteOnlyTheHeartbeat: renewals cost one write per renew
// interval, however many nodes the replica serves; node Leases are
// written at claims and releases only.
func TestRenewalsWriteOnlyTheHeartbeat(t *testing.T) {
	ctx := context.Background()
	kc := withConflicts(fake.NewClientset())
	clk := &clock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	a, _ := newReplica(t, kc, "a", clk, nil)
	const nodes, intervals = 50, 10
	for i := range nodes {
		if _, err := a.Claim(ctx, "n"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	kc.ClearActions()
	advance(clk, intervals*DefaultRenewInterval, a) // within sweepEvery: no sweep
	writes, nodeActions := 0, 0
	for _, act := range kc.Actions() {
		switch act.GetVerb() {
		case "create", "update", "patch", "delete":
			writes++
		}
		var name string
		switch act := act.(type) {
		case k8stesting.UpdateAction:
			name = act.GetObject().(*coordinationv1.Lease).Name
		case k8stesting.GetAction:
			name = act.GetName()
		}
		if strings.HasPrefix(name, leasePrefix) {
			nodeActions++
		}
	}
	if writes != intervals || nodeActions != 0 || len(a.Owned()) != nodes {
		t.Fatalf("%d renew intervals with %d nodes: %d writes, %d node lease requests (%d requests in all), %d nodes owned",
			intervals, nodes, writes, nodeActions, len(kc.Actions()), len(a.Owned()))
	}
}

// TestTakeoverConflict: two replicas taking over the node of a dead one
// at once: the one whose update conflicts is refused, and told who won.
func TestTakeoverConflict(t *testing.T) {
	ctx := context.Background()
	kc := withConflicts(fake.NewClientset())
	clk := &clock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	a, _ := newReplica(t, kc, "a", clk, nil)
	b, bm := newReplica(t, kc, "b", clk, nil)
	c, _ := newReplica(t, kc, "c", clk, nil)
	if _, err := a.Claim(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	advance(clk, DefaultLeaseDuration, b, c) // a is dead
	var once sync.Once
	kc.PrependReactor("update", "leases", func(act k8stesting.Action) (bool, runtime.Object, error) {
		l := act.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease)
		if l.Name != LeaseName("n1") {
			return false, nil, nil
		}
		won := false
		once.Do(func() { // c wins the race, just before b's update
			cur, err := kc.Tracker().Get(act.GetResource(), "ns", l.Name)
			if err != nil {
				t.Error(err)
				return
			}
			cl := cur.(*coordinationv1.Lease).DeepCopy()
			id := "c"
			cl.Spec.HolderIdentity, cl.ResourceVersion = &id, "c-won"
			if err := kc.Tracker().Update(act.GetResource(), cl, "ns"); err != nil {
				t.Error(err)
			}
			won = true
		})
		if won {
			return true, nil, apierrors.NewConflict(act.GetResource().GroupResource(), l.Name, errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	_, err := b.Claim(ctx, "n1")
	var held *HeldError
	if !errors.As(err, &held) || held.Holder != "c" || held.RetryAfter() < time.Second {
		t.Fatalf("b's takeover that lost the race: %v", err)
	}
	if len(b.Owned()) != 0 || testutil.ToFloat64(bm.takeovers) != 0 || holderOf(t, kc, "n1") != "c" {
		t.Fatalf("b owns %v, counted %v takeovers; n1's lease names %s", b.Owned(), testutil.ToFloat64(bm.takeovers), holderOf(t, kc, "n1"))
	}
	_ = c
}

// TestOptions: the renew interval must be shorter than the lease.
func TestOptions(t *testing.T) {
	for _, o := range []Options{
		{LeaseDuration: 1500 * time.Millisecond},
		{LeaseDuration: 5 * time.Second, RenewInterval: 5 * time.Second},
		{RenewInterval: -time.Second},
	} {
		if _, err := o.withDefaults(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	if _, err := NewLeader(Options{Kube: fake.NewClientset(), Namespace: "ns", LeaseDuration: 15 * time.Second, RenewInterval: 14 * time.Second}); err == nil {
		t.Error("a leader renewing every 14s of 15s accepted")
	}
	if _, err := NewLeader(Options{Kube: fake.NewClientset(), Namespace: "ns"}); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

// TestCutOff: a replica that cannot reach the API server gives its nodes
// up a renew interval before its heartbeat runs out, so that no other
// replica takes one over while it still serves it, and claims no more
// nodes until its heartbeat is renewed.
func TestCutOff(t *testing.T) {
	ctx := context.Background()
	kc := withConflicts(fake.NewClientset())
	clk := &clock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	var lost []string
	a, am := newReplica(t, kc, "a", clk, func(n string) { lost = append(lost, n) })
	b, _ := newReplica(t, kc, "b", clk, nil)
	for _, node := range []string{"n1", "n2"} {
		if _, err := a.Claim(ctx, node); err != nil {
			t.Fatal(err)
		}
	}
	var cut atomic.Bool
	kc.PrependReactor("*", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if cut.Load() {
			return true, nil, errors.New("connection refused")
		}
		return false, nil, nil
	})
	cut.Store(true)
	clk.add(DefaultRenewInterval)
	a.renew(ctx)
	if len(lost) != 0 {
		t.Fatalf("lost %v a renew interval after the last renewal", lost)
	}
	clk.add(DefaultLeaseDuration - 2*DefaultRenewInterval)
	a.renew(ctx)
	if len(lost) != 2 || len(a.Owned()) != 0 || testutil.ToFloat64(am.lost) != 2 {
		t.Fatalf("after %s unrenewed: lost %v, owns %v", DefaultLeaseDuration-DefaultRenewInterval, lost, a.Owned())
	}
	cut.Store(false)
	if _, err := a.Claim(ctx, "n3"); err == nil {
		t.Fatal("a claimed a node with its heartbeat not renewed")
	}
	// Another replica may take them only once a's heartbeat runs out.
	b.renew(ctx)
	var held *HeldError
	if _, err := b.Claim(ctx, "n1"); !errors.As(err, &held) || held.RetryAfter() != DefaultRenewInterval {
		t.Fatalf("b's claim while a's heartbeat still runs: %v", err)
	}
	advance(clk, DefaultRenewInterval, b)
	if _, err := b.Claim(ctx, "n1"); err != nil {
		t.Fatalf("b's claim once a's heartbeat ran out: %v", err)
	}
	// a reaches the API server again: it renews its heartbeat, and
	// releases n2, whose lease still names it, which it no longer
	// serves.
	a.renew(ctx)
	if h := holderOf(t, kc, "n2"); h != "" {
		t.Fatalf("n2's lease names %s after a came back", h)
	}
	if h := holderOf(t, kc, "n1"); h != "b" {
		t.Fatalf("n1's lease names %s after a came back", h)
	}
	if _, err := a.Claim(ctx, "n3"); err != nil {
		t.Fatalf("a's claim after it came back: %v", err)
	}
}

// TestSweep: a replica deletes the heartbeats of replicas dead for more
// than a lease duration, not those of live ones, nor its own.
func TestSweep(t *testing.T) {
	ctx := context.Background()
	kc := withConflicts(fake.NewClientset())
	clk := &clock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	a, _ := newReplica(t, kc, "a", clk, nil)
	newReplica(t, kc, "dead", clk, nil)
	c, _ := newReplica(t, kc, "c", clk, nil)
	advance(clk, sweepEvery, a, c)
	for id, want := range map[string]bool{"a": true, "c": true, "dead": false} {
		_, err := kc.CoordinationV1().Leases("ns").Get(ctx, HeartbeatName(id), metav1.GetOptions{})
		if got := err == nil; got != want || (err != nil && !apierrors.IsNotFound(err)) {
			t.Errorf("heartbeat of %s: %v", id, err)
		}
	}
}

// TestClaimCosts: a claim of a new node is a read and a write, its
// release one write; a replica without a heartbeat claims nothing.
func TestClaimCosts(t *testing.T) {
	ctx := context.Background()
	kc := withConflicts(fake.NewClientset())
	clk := &clock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	m := NewMetrics(prometheus.NewRegistry())
	idle, err := NewNodes(Options{Kube: kc, Namespace: "ns", Identity: "idle", Now: clk.Now, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	var held *HeldError
	if _, err := idle.Claim(short, "n1"); err == nil || errors.As(err, &held) {
		t.Fatalf("a claim before the first heartbeat: %v", err)
	}
	a, _ := newReplica(t, kc, "a", clk, nil)
	kc.ClearActions()
	rel, err := a.Claim(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	verbs := func() []string {
		var v []string
		for _, act := range kc.Actions() {
			v = append(v, act.GetVerb())
		}
		kc.ClearActions()
		return v
	}
	if got := verbs(); !slices.Equal(got, []string{"get", "create"}) {
		t.Fatalf("a claim of a new node: %v", got)
	}
	rel()
	if got := verbs(); !slices.Equal(got, []string{"update"}) {
		t.Fatalf("its release: %v", got)
	}
	if _, err := a.Claim(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	if got := verbs(); !slices.Equal(got, []string{"get", "update"}) {
		t.Fatalf("a claim of a released node: %v", got)
	}
}
