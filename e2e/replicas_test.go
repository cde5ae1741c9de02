package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"wapper.dev/wapper/cloud/replicas"
	"wapper.dev/wapper/host/cloudlink"
	"wapper.dev/wapper/internal/hostproc"
	"wapper.dev/wapper/internal/testenv"
)

// Lease timing of the replicas in TestCloudReplicas: short, so that a
// failover takes seconds, yet tolerant of an API server slowed by a busy
// machine (a replica gives its nodes up after 6 s without renewing its
// heartbeat).
const (
	replicaLease = 8 * time.Second
	replicaRenew = 2 * time.Second
)

// cloudReplica is one bin/wapper-cloud process among several.
type cloudReplica struct {
	*hostproc.Proc
	id, addr, url, ca string
}

// startReplica runs bin/wapper-cloud as replica id on its own port, with
// c's cluster and namespace, and waits until it is ready.
func (c *cloudEnv) startReplica(id string) *cloudReplica {
	t := c.t
	t.Helper()
	r := &cloudReplica{id: id, addr: saPort(t), ca: filepath.Join(t.TempDir(), "ca.crt")}
	r.url = "https://" + r.addr
	r.Proc = hostproc.Start(t, testenv.Artifact(t, "wapper-cloud"), "--kubeconfig", c.env.Kubeconfig, "--namespace", c.ns,
		"--listen", r.addr, "--ca-out", r.ca, "--module-cache", filepath.Join(t.TempDir(), "modules"), "--status-flush", "100ms",
		"--log-format", "json", "--log-level", "debug",
		"--identity", id, "--lease-duration", replicaLease.String(), "--lease-renew", replicaRenew.String())
	saEventually(t, "wapper-cloud "+id+" ready", 2*time.Minute, func() error {
		select {
		case <-r.Done():
			t.Fatalf("wapper-cloud %s exited:\n%s", id, r.Logs())
		default:
		}
		_, err := r.get("/readyz")
		return err
	})
	return r
}

// get fetches path from the replica.
func (r *cloudReplica) get(path string) (string, error) {
	cfg, err := cloudlink.LoadCA(r.ca)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 5 * time.Second}).Get(r.url + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", path, resp.Status)
	}
	return string(b), nil
}

// metric reads one sample from the replica's /metrics (0 when absent).
func (r *cloudReplica) metric(t *testing.T, series string) float64 {
	t.Helper()
	b, err := r.get("/metrics")
	if err != nil {
		t.Fatalf("replica %s: %v", r.id, err)
	}
	return sample(b, series)
}

func (r *cloudReplica) kill9() {
	_ = r.Cmd.Process.Signal(syscall.SIGKILL)
	<-r.Done()
}

// holders returns the replica each node's Lease names ("" when none).
func holders(ctx context.Context, kc kubernetes.Interface, ns string, nodes []string) (map[string]string, error) {
	out := map[string]string{}
	for _, n := range nodes {
		l, err := kc.CoordinationV1().Leases(ns).Get(ctx, replicas.LeaseName(n), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			out[n] = ""
			continue
		}
		if err != nil {
			return nil, err
		}
		if l.Spec.HolderIdentity != nil {
			out[n] = *l.Spec.HolderIdentity
		}
	}
	return out, nil
}

// TestCloudReplicas runs three wapper-cloud replicas and four hosts that
// know all three (--cloud with three URLs) against a real apiserver: each
// replica keeps a heartbeat Lease, each node is served by exactly one
// replica (its Lease, the replicas' metrics), one replica leads and alone records rollouts; kill -9 of the
// replica serving the most nodes moves its nodes to the others, with a
// desired change made during the move applied and the hosts' reports
// reaching DeviceStatus again, each moved node taken over once.
func TestCloudReplicas(t *testing.T) {
	ctx := context.Background()
	c := newCloudEnv(t)
	kc := kubernetes.NewForConfigOrDie(c.env.Config())
	reps := []*cloudReplica{c.startReplica("r1")}
	// The TLS Secret exists now: the others share its certificate.
	reps = append(reps, c.startReplica("r2"), c.startReplica("r3"))
	c.ca = reps[0].ca
	var urls []string
	for _, r := range reps {
		urls = append(urls, r.url)
	}

	nodes := []string{"node-1", "node-2", "node-3", "node-4"}
	devs := map[string][]string{}
	doc := cloudPlugins
	for i, n := range nodes {
		for j := range 2 {
			d := fmt.Sprintf("d%d-%d", i+1, j+1)
			devs[n] = append(devs[n], d)
			doc += "\n---\n" + cloudDevice(d, n, "20", "thermo")
		}
	}
	c.apply(doc)
	hosts := map[string]*saHost{}
	for _, n := range nodes {
		hosts[n] = saStart(t, t.TempDir(), "--cloud", strings.Join(urls, ","), "--node", n, "--token-file", c.token(n), "--ca-file", c.ca)
	}
	for _, n := range nodes {
		running(t, hosts[n], c.ns, devs[n]...)
	}
	for _, n := range nodes {
		for _, d := range devs[n] {
			reportedInCluster(t, c, d, "setpoint", "20")
		}
	}

	// Each node has one replica: the Lease's holder, which alone has
	// its session; the replicas' counts agree with the Leases.
	served := func(live []*cloudReplica) (map[string]string, error) {
		h, err := holders(ctx, kc, c.ns, nodes)
		if err != nil {
			return nil, err
		}
		total := 0
		for _, r := range live {
			owned := r.metric(t, "wapper_cloud_owned_nodes")
			sessions := r.metric(t, "wapper_cloud_hub_sessions")
			want := 0
			for _, id := range h {
				if id == r.id {
					want++
				}
			}
			if owned != float64(want) || sessions != float64(want) {
				return h, fmt.Errorf("replica %s: %v owned nodes, %v sessions; the Leases give it %d (%v)", r.id, owned, sessions, want, h)
			}
			total += want
		}
		if total != len(nodes) {
			return h, fmt.Errorf("the live replicas serve %d of %d nodes: %v", total, len(nodes), h)
		}
		return h, nil
	}
	var owner map[string]string
	saEventually(t, "each node served by exactly one replica", time.Minute, func() (err error) {
		owner, err = served(reps)
		return err
	})
	t.Logf("nodes by replica: %v", owner)
	// Each replica keeps one heartbeat Lease; the node Leases are not
	// renewed (they record the holder only).
	beats, err := kc.CoordinationV1().Leases(c.ns).List(ctx, metav1.ListOptions{LabelSelector: replicas.HeartbeatLabel + "=true"})
	if err != nil {
		t.Fatal(err)
	}
	var beating []string
	for _, l := range beats.Items {
		if l.Spec.HolderIdentity != nil && l.Name == replicas.HeartbeatName(*l.Spec.HolderIdentity) {
			beating = append(beating, *l.Spec.HolderIdentity)
		}
	}
	slices.Sort(beating)
	if !slices.Equal(beating, []string{"r1", "r2", "r3"}) {
		t.Errorf("heartbeat Leases of %v, want r1, r2 and r3", beating)
	}
	for _, n := range nodes {
		l, err := kc.CoordinationV1().Leases(c.ns).Get(ctx, replicas.LeaseName(n), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if l.Spec.RenewTime != nil {
			t.Errorf("%s's Lease has a renewTime (%v): node Leases are not renewed", n, l.Spec.RenewTime)
		}
	}

	// One leader; only it writes status.rollout and logs rollout steps.
	leader := func(live []*cloudReplica) (*cloudReplica, error) {
		var ls []*cloudReplica
		for _, r := range live {
			if r.metric(t, "wapper_cloud_leader") == 1 {
				ls = append(ls, r)
			}
		}
		if len(ls) != 1 {
			return nil, fmt.Errorf("%d leaders", len(ls))
		}
		return ls[0], nil
	}
	var lead *cloudReplica
	saEventually(t, "one leader", time.Minute, func() (err error) {
		lead, err = leader(reps)
		return err
	})
	saEventually(t, "the leader records the plugin's rollout", time.Minute, func() error {
		if len(lead.Logged("rollout: complete")) == 0 {
			return fmt.Errorf("no rollout step logged by the leader %s", lead.id)
		}
		return nil
	})
	for _, r := range reps {
		if r != lead && (len(r.Logged("rollout: complete")) > 0 || len(r.Logged("rollout: new module; rolling out in waves")) > 0) {
			t.Errorf("replica %s, not the leader, recorded rollout steps", r.id)
		}
	}

	// kill -9 the replica serving the most nodes.
	victim := reps[0]
	count := func(r *cloudReplica) int {
		n := 0
		for _, id := range owner {
			if id == r.id {
				n++
			}
		}
		return n
	}
	for _, r := range reps {
		if count(r) > count(victim) {
			victim = r
		}
	}
	var moved []string
	for _, n := range nodes {
		if owner[n] == victim.id {
			moved = append(moved, n)
		}
	}
	var live []*cloudReplica
	for _, r := range reps {
		if r != victim {
			live = append(live, r)
		}
	}
	seen := map[string]int{}
	for _, n := range moved {
		saEventually(t, devs[n][0]+"'s temperature in the cluster", time.Minute, func() error {
			v, err := c.twin(devs[n][0], "temperature")
			seen[n], _ = strconv.Atoi(v)
			return err
		})
	}
	t.Logf("killing replica %s (leader: %v), which serves %v", victim.id, victim == lead, moved)
	killed := time.Now()
	victim.kill9()
	// Desired values change while the nodes move.
	doc = ""
	for _, n := range moved {
		for _, d := range devs[n] {
			doc += "---\n" + cloudDevice(d, n, "55", "thermo") + "\n"
		}
	}
	c.apply(doc)

	saEventually(t, "the dead replica's nodes served by the others", 2*time.Minute, func() (err error) {
		owner, err = served(live)
		return err
	})
	movedIn := time.Since(killed)
	for _, n := range moved {
		for _, d := range devs[n] {
			reportedOnHost(t, hosts[n], c.ns+"/"+d, "setpoint", "55")
			reportedInCluster(t, c, d, "setpoint", "55")
		}
	}
	convergedIn := time.Since(killed)
	// ... and applied once: the new replica resumed from the host's
	// inventory.
	for _, n := range moved {
		for _, d := range devs[n] {
			for _, msg := range []string{"desired value set", "desired value applied"} {
				count := 0
				for _, rec := range hosts[n].Logged(msg) {
					if rec["device"] == c.ns+"/"+d && rec["value"] == "55" {
						count++
					}
				}
				if count != 1 {
					t.Errorf("%s: %q logged %d times for the value set during the move", d, msg, count)
				}
			}
		}
	}
	t.Logf("failover: nodes %v served again %s after kill -9 (lease %s), the desired change made meanwhile reported back %s after it; now %v",
		moved, movedIn.Round(100*time.Millisecond), replicaLease, convergedIn.Round(100*time.Millisecond), owner)

	// The moved nodes' reports reach DeviceStatus again.
	for _, n := range moved {
		saEventually(t, n+"'s readings in the cluster after the move", 2*time.Minute, func() error {
			v, err := c.twin(devs[n][0], "temperature")
			if err != nil {
				return err
			}
			if got, _ := strconv.Atoi(v); got <= seen[n] {
				return fmt.Errorf("%s temperature %s, was %d before the move", devs[n][0], v, seen[n])
			}
			return nil
		})
	}
	// The other nodes stayed where they were, nothing moved twice, and
	// no replica lost a node it served.
	var takeovers float64
	for _, r := range live {
		takeovers += r.metric(t, "wapper_cloud_node_lease_takeovers_total")
		if lost := r.metric(t, "wapper_cloud_node_leases_lost_total"); lost != 0 {
			t.Errorf("replica %s lost %v nodes", r.id, lost)
		}
	}
	if takeovers != float64(len(moved)) {
		t.Errorf("%v lease takeovers for %d moved nodes", takeovers, len(moved))
	}
	// Still one node per replica, a while later, and one leader.
	time.Sleep(2 * replicaLease)
	if _, err := served(live); err != nil {
		t.Error(err)
	}
	saEventually(t, "one leader among the live replicas", time.Minute, func() (err error) {
		lead, err = leader(live)
		return err
	})
	for _, n := range nodes {
		if !slices.Contains(moved, n) {
			reportedInCluster(t, c, devs[n][0], "setpoint", "20")
		}
	}

	// kill -9 the leader too: the last replica leads, records the
	// rollout, and serves every node.
	last := live[0]
	if last == lead {
		last = live[1]
	}
	t.Logf("killing the leader %s; %s remains", lead.id, last.id)
	killed = time.Now()
	lead.kill9()
	saEventually(t, "the last replica leads", time.Minute, func() error {
		if last.metric(t, "wapper_cloud_leader") != 1 {
			return fmt.Errorf("%s does not lead", last.id)
		}
		return nil
	})
	ledIn := time.Since(killed)
	saEventually(t, "the last replica serves every node", 2*time.Minute, func() (err error) {
		owner, err = served([]*cloudReplica{last})
		return err
	})
	t.Logf("leader failover: %s leads %s after kill -9, serves every node %s after it",
		last.id, ledIn.Round(100*time.Millisecond), time.Since(killed).Round(100*time.Millisecond))
	saEventually(t, "the new leader records the plugin's rollout", time.Minute, func() error {
		if len(last.Logged("rollout: complete")) == 0 {
			return fmt.Errorf("no rollout step logged by the new leader %s", last.id)
		}
		return nil
	})
	for _, n := range nodes {
		reportedInCluster(t, c, devs[n][1], "setpoint", map[bool]string{true: "55", false: "20"}[slices.Contains(moved, n)])
	}
}
