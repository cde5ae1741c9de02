package replicas

import (
	"context"
	"errors"
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

// TestDecide: a lease is this replica's, free, run out, or another's.
func TestDecide(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		r    record
		want verdict
	}{
		{"mine", record{holder: "a", renewed: now.Add(-time.Hour), duration: time.Second}, mine},
		{"released", record{holder: "", renewed: now, duration: time.Minute}, free},
		{"another's, fresh", record{holder: "b", renewed: now.Add(-14 * time.Second), duration: 15 * time.Second}, held},
		{"another's, run out", record{holder: "b", renewed: now.Add(-15 * time.Second), duration: 15 * time.Second}, expired},
		{"another's, renewed in the future (clock skew)", record{holder: "b", renewed: now.Add(time.Second), duration: 15 * time.Second}, held},
	} {
		if got := decide(c.r, "a", now); got != c.want {
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

func newReplica(t *testing.T, kc *fake.Clientset, id string, clk *clock, lost func(string)) (*Nodes, *Metrics) {
	t.Helper()
	m := NewMetrics(prometheus.NewRegistry())
	n, err := NewNodes(Options{Kube: kc, Namespace: "ns", Identity: id, Now: clk.Now, OnLost: lost, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	return n, m
}

// TestNodes: a node goes to the first replica that claims it; the other
// is refused until it is released, or until its lease runs out, when the
// other takes it over and the first, renewing, finds it lost.
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
	// Released: b takes it at once, with no takeover.
	relB, err := b.Claim(ctx, "n1")
	if err != nil {
		t.Fatalf("b's claim of a released node: %v", err)
	}
	relB()

	// a serves n2 and stops renewing (a dead replica): b is refused
	// until the lease runs out, then takes over.
	if _, err := a.Claim(ctx, "n2"); err != nil {
		t.Fatal(err)
	}
	clk.add(DefaultLeaseDuration - time.Second)
	if _, err := b.Claim(ctx, "n2"); !errors.As(err, &held) || held.RetryAfter() != time.Second {
		t.Fatalf("b's claim a second before the lease runs out: %v", err)
	}
	clk.add(time.Second)
	if _, err := b.Claim(ctx, "n2"); err != nil {
		t.Fatalf("b's claim of a lease run out: %v", err)
	}
	if got := testutil.ToFloat64(bm.takeovers); got != 1 {
		t.Fatalf("b counted %v takeovers", got)
	}
	l, err := kc.CoordinationV1().Leases("ns").Get(ctx, LeaseName("n2"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *l.Spec.HolderIdentity != "b" || *l.Spec.LeaseTransitions != 1 || l.Labels[NodeLabel] != "n2" {
		t.Fatalf("lease after the takeover: %+v %v", l.Spec, l.Labels)
	}
	// a comes back to life and renews: it finds n2 lost and ends its
	// session.
	a.renew(ctx)
	if len(lost) != 1 || lost[0] != "n2" || len(a.Owned()) != 0 || testutil.ToFloat64(am.lost) != 1 {
		t.Fatalf("a after renewing a lease taken over: lost %v, owns %v", lost, a.Owned())
	}
	// b renews n2 and keeps it.
	clk.add(DefaultRenewInterval)
	b.renew(ctx)
	if got := b.Owned(); len(got) != 1 || got[0] != "n2" {
		t.Fatalf("b owns %v", got)
	}
	// b stops: it releases n2.
	b.releaseAll()
	l, err = kc.CoordinationV1().Leases("ns").Get(ctx, LeaseName("n2"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity != nil {
		t.Fatalf("n2's lease after b stopped is held by %s", *l.Spec.HolderIdentity)
	}
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
// up a renew interval before their Leases run out, so that no other
// replica takes one over while it still serves it.
func TestCutOff(t *testing.T) {
	ctx := context.Background()
	kc := withConflicts(fake.NewClientset())
	clk := &clock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	var lost []string
	a, _ := newReplica(t, kc, "a", clk, func(n string) { lost = append(lost, n) })
	if _, err := a.Claim(ctx, "n1"); err != nil {
		t.Fatal(err)
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
	if len(lost) != 1 || len(a.Owned()) != 0 {
		t.Fatalf("after %s unrenewed: lost %v, owns %v", DefaultLeaseDuration-DefaultRenewInterval, lost, a.Owned())
	}
	// Another replica may take it only later.
	cut.Store(false)
	b, _ := newReplica(t, kc, "b", clk, nil)
	var held *HeldError
	if _, err := b.Claim(ctx, "n1"); !errors.As(err, &held) {
		t.Fatalf("b's claim while a's lease still runs: %v", err)
	}
}
