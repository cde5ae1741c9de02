package rollout_test

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/cloud/rollout"
)

const (
	d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	d3 = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
)

var (
	m1 = mappersv1alpha1.Module{File: "v1.wasm", Digest: d1}
	m2 = mappersv1alpha1.Module{File: "v2.wasm", Digest: d2}
	m3 = mappersv1alpha1.Module{Image: "reg.example/plugins/virtual:v3", Digest: "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"}
)

// cluster plays the cloud and the hosts: Plan computes a plan from the
// status as the API server would return it (a JSON round trip), keeps its
// status, and each host then loads the module it is sent, reporting
// Loaded, or Failed for the digests in bad. The clock (in.Now) stands
// still unless a test moves it with tick; it is zero unless a test sets
// it with startClock.
type cluster struct {
	t       *testing.T
	in      rollout.Input
	digests map[mappersv1alpha1.Module]string // module → content digest
	bad     map[string]string                 // digest → failure message
	reports map[string]mappersv1alpha1.NodeStatus
	plan    rollout.Plan
}

func newCluster(t *testing.T, ro mappersv1alpha1.Rollout, nodes ...rollout.Node) *cluster {
	return &cluster{t: t, in: rollout.Input{Rollout: ro, Nodes: nodes}, bad: map[string]string{},
		digests: map[mappersv1alpha1.Module]string{m1: d1, m2: d2, m3: d3}, reports: map[string]mappersv1alpha1.NodeStatus{}}
}

func names(ns ...string) []rollout.Node {
	var out []rollout.Node
	for _, n := range ns {
		out = append(out, rollout.Node{Name: n})
	}
	return out
}

// startClock sets the clock to a fixed time.
func (c *cluster) startClock() {
	c.in.Now = metav1.NewTime(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
}

// tick moves the clock on by d.
func (c *cluster) tick(d time.Duration) { c.in.Now = metav1.NewTime(c.in.Now.Add(d)) }

// report stores a node's report as cloud/status does: lastTransitionTime
// is the clock's time, or the last one when phase, digest and rejected
// digest are those of the last report.
func (c *cluster) report(ns mappersv1alpha1.NodeStatus) {
	ns.LastTransitionTime = c.in.Now
	if old, ok := c.reports[ns.Node]; ok && old.Phase == ns.Phase && old.Digest == ns.Digest && old.RejectedDigest == ns.RejectedDigest {
		ns.LastTransitionTime = old.LastTransitionTime
	}
	c.reports[ns.Node] = ns
}

// setModule changes spec.module (and the generation).
func (c *cluster) setModule(m mappersv1alpha1.Module) {
	c.in.Module, c.in.TargetDigest = m, c.digests[m]
	c.in.Generation++
}

// plan plans once, from the status as read back from the API server.
func (c *cluster) planOnce() rollout.Plan {
	c.t.Helper()
	c.in.Reports = c.in.Reports[:0]
	for _, n := range slices.Sorted(maps.Keys(c.reports)) {
		c.in.Reports = append(c.in.Reports, c.reports[n])
	}
	p, err := rollout.Compute(c.in)
	if err != nil {
		c.t.Fatal(err)
	}
	c.in.Status = roundTrip(c.t, p.Status)
	c.plan = p
	return p
}

func roundTrip(t *testing.T, st mappersv1alpha1.RolloutStatus) mappersv1alpha1.RolloutStatus {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var out mappersv1alpha1.RolloutStatus
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// sent returns the module node is sent under the last plan.
func (c *cluster) sent(node string) mappersv1alpha1.Module {
	if c.plan.Previous(node) {
		return c.plan.Status.PreviousModule
	}
	return c.in.Module
}

// hostsLoad makes every node report the module it is sent.
func (c *cluster) hostsLoad() {
	for _, n := range c.in.Nodes {
		m := c.sent(n.Name)
		d := c.digests[m]
		if d == "" {
			d = m.Digest
		}
		rep := mappersv1alpha1.NodeStatus{Node: n.Name, Phase: mappersv1alpha1.PhaseLoaded, Digest: d}
		if msg, bad := c.bad[d]; bad {
			rep = mappersv1alpha1.NodeStatus{Node: n.Name, Phase: mappersv1alpha1.PhaseFailed, Digest: d, Message: msg}
		}
		c.report(rep)
	}
}

// onTarget returns the nodes sent the target module, sorted.
func (c *cluster) onTarget() []string {
	var out []string
	for _, n := range c.in.Nodes {
		if !c.plan.Previous(n.Name) {
			out = append(out, n.Name)
		}
	}
	slices.Sort(out)
	return out
}

// waves runs plan and load steps until the rollout stops changing, and
// returns the nodes of each wave started on the way.
func (c *cluster) waves() [][]string {
	var waves [][]string
	for range 50 {
		before := c.in.Status
		p := c.planOnce()
		if p.WaveStarted {
			waves = append(waves, p.Status.CurrentWaveNodes)
		}
		c.hostsLoad()
		if reflect.DeepEqual(before, c.in.Status) && !p.WaveStarted {
			return waves
		}
	}
	c.t.Fatalf("the rollout did not settle: %+v", c.in.Status)
	return nil
}

func (c *cluster) wantPhase(want mappersv1alpha1.RolloutPhase) {
	c.t.Helper()
	if got := c.in.Status.Phase; got != want {
		c.t.Fatalf("phase %s, want %s: %+v", got, want, c.in.Status)
	}
}

// deployed brings the cluster to m1 complete everywhere.
func (c *cluster) deployed() {
	c.t.Helper()
	c.setModule(m1)
	if w := c.waves(); len(w) != 0 {
		c.t.Fatalf("first sight of the plugin started waves %v", w)
	}
	c.wantPhase(mappersv1alpha1.RolloutComplete)
}

func intOrStr(s string) *intstr.IntOrString {
	v := intstr.Parse(s)
	return &v
}

func TestWaves(t *testing.T) {
	canary := &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "canary"}}
	cases := []struct {
		name  string
		ro    mappersv1alpha1.Rollout
		nodes []rollout.Node
		want  string // waves, "|" between waves
	}{
		{"default one node a wave", mappersv1alpha1.Rollout{}, names("c", "a", "b"), "a|b|c"},
		{"count", mappersv1alpha1.Rollout{MaxUnavailable: intOrStr("2")}, names("a", "b", "c", "d", "e"), "a b|c d|e"},
		{"percentage rounded up", mappersv1alpha1.Rollout{MaxUnavailable: intOrStr("25%")}, names("a", "b", "c", "d", "e"), "a b|c d|e"},
		{"percentage of all", mappersv1alpha1.Rollout{MaxUnavailable: intOrStr("100%")}, names("a", "b", "c"), "a b c"},
		{"canary first", mappersv1alpha1.Rollout{CanaryNodeSelector: canary},
			append(names("a", "b"), rollout.Node{Name: "c", Labels: map[string]string{"tier": "canary"}}, rollout.Node{Name: "d", Labels: map[string]string{"tier": "canary"}}),
			"c d|a|b"},
		{"canary by hostname", mappersv1alpha1.Rollout{CanaryNodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{rollout.HostnameLabel: "b"}}, MaxUnavailable: intOrStr("2")},
			names("a", "b", "c"), "b|a c"},
		{"canary matching none", mappersv1alpha1.Rollout{CanaryNodeSelector: canary}, names("a", "b"), "a|b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, tc.ro, tc.nodes...)
			c.deployed()
			c.setModule(m2)
			p := c.planOnce()
			if !p.Started || !p.WaveStarted {
				t.Fatalf("a new module did not start a rollout with a wave: %+v", p)
			}
			// Nodes outside the first wave are sent the previous module.
			for _, n := range tc.nodes {
				inWave := slices.Contains(p.Status.CurrentWaveNodes, n.Name)
				if got := c.sent(n.Name); inWave && got != m2 || !inWave && got != m1 {
					t.Errorf("node %s (in wave %v) is sent %+v", n.Name, inWave, got)
				}
			}
			first := [][]string{p.Status.CurrentWaveNodes}
			c.hostsLoad()
			var got []string
			for _, w := range append(first, c.waves()...) {
				got = append(got, strings.Join(w, " "))
			}
			if g := strings.Join(got, "|"); g != tc.want {
				t.Errorf("waves %q, want %q", g, tc.want)
			}
			c.wantPhase(mappersv1alpha1.RolloutComplete)
			st := c.in.Status
			if st.TargetDigest != d2 || st.PreviousDigest != d1 || int(st.UpdatedNodes) != len(tc.nodes) || int(st.TotalNodes) != len(tc.nodes) || st.MovedNodes != nil {
				t.Errorf("complete status %+v", st)
			}
		})
	}
}

func TestWaveWaitsForEveryNode(t *testing.T) {
	c := newCluster(t, mappersv1alpha1.Rollout{}, names("a", "b")...)
	c.deployed()
	c.setModule(m2)
	c.planOnce()
	// a is still loading: Pending, then still on the old module.
	c.reports["a"] = mappersv1alpha1.NodeStatus{Node: "a", Phase: mappersv1alpha1.PhasePending}
	if p := c.planOnce(); p.WaveStarted || c.in.Status.CurrentWave != 1 {
		t.Fatalf("a second wave started before a reported the target: %+v", c.in.Status)
	}
	c.reports["a"] = mappersv1alpha1.NodeStatus{Node: "a", Phase: mappersv1alpha1.PhaseLoaded, Digest: d1}
	if p := c.planOnce(); p.WaveStarted || !strings.Contains(c.in.Status.Message, "waiting for a") {
		t.Fatalf("wave 2 started while a runs the old module: %+v", c.in.Status)
	}
	if c.sent("a") != m2 || c.sent("b") != m1 {
		t.Fatalf("a is sent %+v, b %+v", c.sent("a"), c.sent("b"))
	}
	c.reports["a"] = mappersv1alpha1.NodeStatus{Node: "a", Phase: mappersv1alpha1.PhaseLoaded, Digest: d2}
	if p := c.planOnce(); !p.WaveStarted || !slices.Equal(p.Status.CurrentWaveNodes, []string{"b"}) || p.Status.UpdatedNodes != 1 {
		t.Fatalf("wave 2 did not start: %+v", p.Status)
	}
}

func TestFailurePausesAndRollbackRestores(t *testing.T) {
	for _, how := range []string{"failed to load", "rejected"} {
		t.Run(how, func(t *testing.T) {
			c := newCluster(t, mappersv1alpha1.Rollout{}, names("a", "b", "c")...)
			c.deployed()
			c.setModule(m2)
			c.planOnce()
			if how == "rejected" {
				// A hot upgrade that rolled back by itself: still Loaded
				// on the old module.
				c.reports["a"] = mappersv1alpha1.NodeStatus{Node: "a", Phase: mappersv1alpha1.PhaseLoaded, Digest: d1, RejectedDigest: d2, Message: "trapped on its first read"}
			} else {
				c.bad[d2] = "no wapper_abi marker"
				c.hostsLoad()
			}
			for range 3 {
				if p := c.planOnce(); p.WaveStarted {
					t.Fatalf("a wave started after a failure: %+v", p.Status)
				}
			}
			c.wantPhase(mappersv1alpha1.RolloutFailed)
			st := c.in.Status
			if len(st.FailedNodes) != 1 || st.FailedNodes[0].Node != "a" || st.FailedNodes[0].Reason == "" || !strings.Contains(st.Message, "roll back") {
				t.Fatalf("failed status %+v", st)
			}
			if c.sent("b") != m1 || c.sent("c") != m1 {
				t.Fatal("nodes outside the failed wave are not kept on the previous module")
			}
			// Pausing does not hide the failure.
			c.in.Rollout.Paused = true
			c.planOnce()
			c.wantPhase(mappersv1alpha1.RolloutFailed)
			c.in.Rollout.Paused = false

			// Roll back: spec.module back to the previous module, to
			// every node at once.
			c.setModule(m1)
			p := c.planOnce()
			if !p.RolledBack || p.Status.PreviousModule != (mappersv1alpha1.Module{}) || p.Status.PreviousDigest != d2 {
				t.Fatalf("no rollback: %+v", p.Status)
			}
			for _, n := range []string{"a", "b", "c"} {
				if c.sent(n) != m1 {
					t.Fatalf("node %s is sent %+v after the rollback", n, c.sent(n))
				}
			}
			c.hostsLoad()
			if w := c.waves(); len(w) != 0 {
				t.Fatalf("the rollback ran in waves %v", w)
			}
			c.wantPhase(mappersv1alpha1.RolloutComplete)
			if c.in.Status.FailedNodes != nil || c.in.Status.UpdatedNodes != 3 {
				t.Fatalf("status after the rollback %+v", c.in.Status)
			}
		})
	}
}

func TestPauseAndResume(t *testing.T) {
	c := newCluster(t, mappersv1alpha1.Rollout{Paused: true}, names("a", "b")...)
	c.deployed()
	c.setModule(m2)
	p := c.planOnce()
	if p.WaveStarted || p.Status.Phase != mappersv1alpha1.RolloutPaused || c.sent("a") != m1 || c.sent("b") != m1 {
		t.Fatalf("a paused rollout started a wave: %+v", p.Status)
	}
	c.in.Rollout.Paused = false
	if p := c.planOnce(); !p.WaveStarted || p.Status.Phase != mappersv1alpha1.RolloutProgressing {
		t.Fatalf("resume started no wave: %+v", p.Status)
	}
	c.hostsLoad()
	c.in.Rollout.Paused = true
	c.planOnce()
	c.hostsLoad()
	c.planOnce()
	c.wantPhase(mappersv1alpha1.RolloutPaused)
	if c.in.Status.UpdatedNodes != 1 || c.sent("a") != m2 || c.sent("b") != m1 {
		t.Fatalf("paused after wave 1: %+v", c.in.Status)
	}
	c.in.Rollout.Paused = false
	c.waves()
	c.wantPhase(mappersv1alpha1.RolloutComplete)
}

// TestRestartMidRollout plans with no memory but the status, as a
// restarted cloud does: the nodes already moved, including a wave node
// that has not reported yet and one that restarted and reports Pending,
// keep the new module; the others the previous one.
func TestRestartMidRollout(t *testing.T) {
	c := newCluster(t, mappersv1alpha1.Rollout{}, names("a", "b", "c")...)
	c.deployed()
	c.setModule(m2)
	c.planOnce()
	c.hostsLoad()
	c.planOnce() // wave 2: b
	// A new cloud: only the stored status and the reports.
	restarted := rollout.Input{Generation: c.in.Generation, Module: m2, TargetDigest: d2, Status: c.in.Status, Nodes: names("c", "b", "a"),
		Reports: []mappersv1alpha1.NodeStatus{{Node: "a", Phase: mappersv1alpha1.PhasePending}, {Node: "b", Phase: mappersv1alpha1.PhaseLoaded, Digest: d1}, {Node: "c", Phase: mappersv1alpha1.PhaseLoaded, Digest: d1}}}
	p, err := rollout.Compute(restarted)
	if err != nil {
		t.Fatal(err)
	}
	if p.WaveStarted || p.Status.CurrentWave != 2 || p.Previous("a") || p.Previous("b") || !p.Previous("c") || !p.Previous("new-node") {
		t.Fatalf("after a restart: %+v", p.Status)
	}
	// Planning again from its own output changes nothing.
	restarted.Status = roundTrip(t, p.Status)
	q, err := rollout.Compute(restarted)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(roundTrip(t, q.Status), restarted.Status) || q.WaveStarted {
		t.Fatalf("not a fixed point:\n%+v\n%+v", q.Status, restarted.Status)
	}
}

func TestNewModuleMidRolloutStartsFromLastComplete(t *testing.T) {
	c := newCluster(t, mappersv1alpha1.Rollout{}, names("a", "b", "c")...)
	c.deployed()
	c.setModule(m2)
	c.planOnce()
	c.hostsLoad()
	c.setModule(m3) // an image: its digest is the module's, d3
	p := c.planOnce()
	if !p.Started || p.Status.PreviousModule != m1 || p.Status.PreviousDigest != d1 || p.Status.TargetDigest != d3 {
		t.Fatalf("replacing rollout: %+v", p.Status)
	}
	if got := c.onTarget(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("nodes on the new target %v, want the first wave only", got)
	}
	c.hostsLoad()
	c.waves()
	c.wantPhase(mappersv1alpha1.RolloutComplete)
}

func TestUnknownDigestGoesAtOnce(t *testing.T) {
	c := newCluster(t, mappersv1alpha1.Rollout{}, names("a", "b")...)
	c.deployed()
	c.setModule(mappersv1alpha1.Module{File: "other.wasm"})
	p := c.planOnce()
	if p.WaveStarted || p.Previous("a") || p.Previous("b") || p.Status.PreviousModule != (mappersv1alpha1.Module{}) {
		t.Fatalf("a module without digest was staged: %+v", p.Status)
	}
	c.hostsLoad()
	c.waves()
	c.wantPhase(mappersv1alpha1.RolloutComplete)
}

func TestCompleteStaysComplete(t *testing.T) {
	c := newCluster(t, mappersv1alpha1.Rollout{}, names("a")...)
	c.deployed()
	// A node restarts (Pending), another joins: both get the module.
	c.in.Nodes = names("a", "b")
	c.reports["a"] = mappersv1alpha1.NodeStatus{Node: "a", Phase: mappersv1alpha1.PhasePending}
	p := c.planOnce()
	if p.Status.Phase != mappersv1alpha1.RolloutComplete || p.Previous("a") || p.Previous("b") || p.Status.UpdatedNodes != 0 || p.Status.TotalNodes != 2 {
		t.Fatalf("complete rollout after a restart and a new node: %+v", p.Status)
	}
}

func TestInvalidMaxUnavailable(t *testing.T) {
	c := newCluster(t, mappersv1alpha1.Rollout{MaxUnavailable: intOrStr("lots")}, names("a", "b")...)
	c.deployed()
	c.setModule(m2)
	if _, err := rollout.Compute(c.in); err == nil {
		t.Fatal("an invalid maxUnavailable planned a wave")
	}
}

// TestImageRollback: an image's pin (here its manifest's digest) is not
// the content digest the hosts report; rolling back to the image is
// still recognised by content.
func TestImageRollback(t *testing.T) {
	c := newCluster(t, mappersv1alpha1.Rollout{}, names("a", "b")...)
	c.setModule(m3)
	c.waves()
	c.wantPhase(mappersv1alpha1.RolloutComplete)
	c.setModule(m2)
	c.bad[d2] = "refused"
	c.planOnce()
	c.hostsLoad()
	c.planOnce()
	c.wantPhase(mappersv1alpha1.RolloutFailed)
	if st := c.in.Status; st.PreviousDigest != d3 || st.PreviousModule != m3 || c.sent("b") != m3 {
		t.Fatalf("rollout from an image: %+v", st)
	}
	c.setModule(m3)
	if p := c.planOnce(); !p.RolledBack || p.Previous("a") || p.Previous("b") {
		t.Fatalf("going back to the image is no rollback: %+v", p.Status)
	}
	c.hostsLoad()
	c.waves()
	c.wantPhase(mappersv1alpha1.RolloutComplete)
}

// TestStaleFailureOfARetriedModule: a node failed the target in an
// earlier rollout of the same module and has reported nothing since (its
// host was cut off through the rollback). When the module is rolled out
// again, that report predates the node's wave and does not fail the new
// rollout; what the node reports after its wave started does.
func TestStaleFailureOfARetriedModule(t *testing.T) {
	rejected := mappersv1alpha1.NodeStatus{Node: "a", Phase: mappersv1alpha1.PhaseLoaded, Digest: d1, RejectedDigest: d2, Message: "trapped on its first read"}
	failed := mappersv1alpha1.NodeStatus{Node: "a", Phase: mappersv1alpha1.PhaseFailed, Digest: d2, Message: "no wapper_abi marker"}
	loaded := mappersv1alpha1.NodeStatus{Node: "a", Phase: mappersv1alpha1.PhaseLoaded, Digest: d2}
	pending := mappersv1alpha1.NodeStatus{Node: "a", Phase: mappersv1alpha1.PhasePending}
	cases := []struct {
		name  string
		stale mappersv1alpha1.NodeStatus   // a's report of the first rollout of d2
		then  []mappersv1alpha1.NodeStatus // a's reports after its new wave started
		want  mappersv1alpha1.RolloutPhase
	}{
		{"rejected, then loads", rejected, []mappersv1alpha1.NodeStatus{loaded}, mappersv1alpha1.RolloutComplete},
		{"failed, then loads", failed, []mappersv1alpha1.NodeStatus{pending, loaded}, mappersv1alpha1.RolloutComplete},
		{"rejected, then rejects again", rejected, []mappersv1alpha1.NodeStatus{{Node: "a", Phase: mappersv1alpha1.PhaseLoaded, Digest: d1}, rejected}, mappersv1alpha1.RolloutFailed},
		{"failed, then fails again", failed, []mappersv1alpha1.NodeStatus{pending, failed}, mappersv1alpha1.RolloutFailed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, mappersv1alpha1.Rollout{}, names("a", "b")...)
			c.startClock()
			c.deployed()
			c.tick(time.Minute)
			c.setModule(m2)
			c.planOnce() // wave 1: a
			c.tick(time.Minute)
			c.report(tc.stale)
			c.planOnce()
			c.wantPhase(mappersv1alpha1.RolloutFailed)

			// Roll back; a's host hears nothing of it, b runs m1.
			c.tick(time.Minute)
			c.setModule(m1)
			c.planOnce()
			c.report(mappersv1alpha1.NodeStatus{Node: "b", Phase: mappersv1alpha1.PhaseLoaded, Digest: d1})
			c.planOnce()

			// The same module again: a, in the first wave again, still
			// shows its old report.
			c.tick(time.Minute)
			c.setModule(m2)
			p := c.planOnce()
			if !p.Started || !slices.Equal(p.Status.CurrentWaveNodes, []string{"a"}) {
				t.Fatalf("no new rollout with a in its first wave: %+v", p.Status)
			}
			for range 2 {
				c.planOnce()
				c.wantPhase(mappersv1alpha1.RolloutProgressing)
				if st := c.in.Status; st.FailedNodes != nil || !strings.Contains(st.Message, "waiting for a") {
					t.Fatalf("a's report from the last rollout counts: %+v", st)
				}
			}

			for _, rep := range tc.then {
				c.tick(time.Second)
				c.report(rep)
				c.planOnce()
			}
			if tc.want == mappersv1alpha1.RolloutComplete {
				c.hostsLoad()
				c.waves()
			}
			c.wantPhase(tc.want)
			if st := c.in.Status; tc.want == mappersv1alpha1.RolloutFailed && (len(st.FailedNodes) != 1 || st.FailedNodes[0].Node != "a" || st.FailedNodes[0].Reason != tc.stale.Message) {
				t.Fatalf("failed status %+v", st)
			}
		})
	}
}

// TestProgressDeadline: a node of the current wave that has not reported
// the target loaded within the deadline fails the rollout, paused or not;
// reporting it loaded later lets the rollout go on.
func TestProgressDeadline(t *testing.T) {
	cases := []struct {
		name     string
		deadline int32 // spec.rollout.progressDeadlineSeconds
		report   *mappersv1alpha1.NodeStatus
		paused   bool
		last     string // in the reason
	}{
		{"default, no report", 0, nil, false, "last report: none"},
		{"pending", 30, &mappersv1alpha1.NodeStatus{Node: "a", Phase: mappersv1alpha1.PhasePending}, false, "last report: Pending since 2026-03-01T12:01:05Z"},
		{"still the old module", 30, &mappersv1alpha1.NodeStatus{Node: "a", Phase: mappersv1alpha1.PhaseLoaded, Digest: d1}, false, "last report: Loaded " + d1 + " since 2026-03-01T12:00:00Z"},
		{"paused", 30, &mappersv1alpha1.NodeStatus{Node: "a", Phase: mappersv1alpha1.PhasePending}, true, "last report: Pending"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, mappersv1alpha1.Rollout{ProgressDeadlineSeconds: tc.deadline}, names("a", "b")...)
			c.startClock()
			if tc.report == nil {
				c.in.Nodes = names("b") // a joins later, with m2 under way
			}
			c.deployed()
			c.in.Nodes = names("a", "b")
			c.tick(time.Minute)
			c.setModule(m2)
			p := c.planOnce() // wave 1: a
			deadline := time.Duration(max(tc.deadline, 0)) * time.Second
			if deadline == 0 {
				deadline = 10 * time.Minute
			}
			start := c.in.Now.Time
			if !p.WaveStarted || !slices.Equal(p.Status.CurrentWaveNodes, []string{"a"}) || !p.Status.CurrentWaveStartTime.Equal(&c.in.Now) || !p.Deadline.Equal(start.Add(deadline)) {
				t.Fatalf("wave 1: deadline %v, %+v", p.Deadline, p.Status)
			}
			c.tick(5 * time.Second)
			if tc.report != nil {
				c.report(*tc.report)
			}
			c.in.Rollout.Paused = tc.paused
			c.tick(deadline - 5*time.Second - time.Second)
			if p := c.planOnce(); p.Status.FailedNodes != nil || !p.Deadline.Equal(start.Add(deadline)) {
				t.Fatalf("failed before the deadline: deadline %v, %+v", p.Deadline, p.Status)
			}

			c.tick(time.Second)
			p = c.planOnce()
			c.wantPhase(mappersv1alpha1.RolloutFailed)
			st := c.in.Status
			want := "did not report " + d2 + " loaded within " + deadline.String() + " of its wave's start (" + tc.last
			if len(st.FailedNodes) != 1 || st.FailedNodes[0].Node != "a" || !strings.HasPrefix(st.FailedNodes[0].Reason, want) || !strings.Contains(st.Message, want) || !p.Deadline.IsZero() {
				t.Fatalf("past the deadline: want a reason %q; deadline %v, %+v", want, p.Deadline, st)
			}
			c.tick(time.Hour)
			if p := c.planOnce(); p.WaveStarted || c.sent("b") != m1 || p.Status.Phase != mappersv1alpha1.RolloutFailed {
				t.Fatalf("a wave started after the deadline passed: %+v", p.Status)
			}

			// a reports m2 loaded at last: the rollout goes on, with a
			// new deadline for the next wave.
			c.in.Rollout.Paused = false
			c.report(mappersv1alpha1.NodeStatus{Node: "a", Phase: mappersv1alpha1.PhaseLoaded, Digest: d2})
			p = c.planOnce()
			if !p.WaveStarted || !slices.Equal(p.Status.CurrentWaveNodes, []string{"b"}) || p.Status.FailedNodes != nil || !p.Deadline.Equal(c.in.Now.Add(deadline)) {
				t.Fatalf("wave 2 did not start once a loaded m2: deadline %v, %+v", p.Deadline, p.Status)
			}
			c.hostsLoad()
			c.waves()
			c.wantPhase(mappersv1alpha1.RolloutComplete)
			if p := c.planOnce(); !p.Deadline.IsZero() {
				t.Fatalf("a complete rollout has a deadline %v", p.Deadline)
			}
		})
	}
}

// TestProgressDeadlineRollback: a rollout failed by its deadline is rolled
// back by setting spec.module back, as for any failure.
func TestProgressDeadlineRollback(t *testing.T) {
	c := newCluster(t, mappersv1alpha1.Rollout{ProgressDeadlineSeconds: 60}, names("a", "b")...)
	c.startClock()
	c.deployed()
	c.setModule(m2)
	c.planOnce()
	c.tick(time.Minute)
	c.planOnce()
	c.wantPhase(mappersv1alpha1.RolloutFailed)
	c.setModule(m1)
	if p := c.planOnce(); !p.RolledBack || p.Previous("a") || !p.Deadline.IsZero() {
		t.Fatalf("no rollback: %+v", p.Status)
	}
	c.waves()
	c.wantPhase(mappersv1alpha1.RolloutComplete)
}

// TestWaveWithoutStartTime: a wave recorded by a cloud that kept no start
// time gets one, and its deadline runs from then.
func TestWaveWithoutStartTime(t *testing.T) {
	c := newCluster(t, mappersv1alpha1.Rollout{}, names("a", "b")...)
	c.deployed()
	c.setModule(m2)
	c.planOnce()
	if !c.in.Status.CurrentWaveStartTime.IsZero() || !c.plan.Deadline.IsZero() {
		t.Fatalf("times recorded without a clock: %+v", c.in.Status)
	}
	c.startClock()
	p := c.planOnce()
	if p.WaveStarted || !p.Status.CurrentWaveStartTime.Equal(&c.in.Now) || !p.Deadline.Equal(c.in.Now.Add(10*time.Minute)) {
		t.Fatalf("no start time given to the wave under way: deadline %v, %+v", p.Deadline, p.Status)
	}
	c.tick(10 * time.Minute)
	c.planOnce()
	c.wantPhase(mappersv1alpha1.RolloutFailed)
}
