package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"

	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/internal/testenv"
)

// rolloutModules writes a plugin folder with three modules: v1 (the
// virtual plugin), v2 (the same code with a custom section added, so
// another digest) and bad (a module without the ABI marker, which every
// host refuses to load). It returns the folder and the digests.
func rolloutModules(t *testing.T) (dir string, v1, v2, bad string) {
	t.Helper()
	virtual, err := os.ReadFile(testenv.Plugin(t, "virtual"))
	if err != nil {
		t.Fatal(err)
	}
	nomarker, err := os.ReadFile(testenv.TestPlugin(t, "nomarker"))
	if err != nil {
		t.Fatal(err)
	}
	v2wasm := withCustomSection(virtual, "wapper-e2e-version", []byte("2"))
	dir = t.TempDir()
	for name, b := range map[string][]byte{"v1.wasm": virtual, "v2.wasm": v2wasm, "bad.wasm": nomarker} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, digest.FromBytes(virtual).String(), digest.FromBytes(v2wasm).String(), digest.FromBytes(nomarker).String()
}

// withCustomSection appends a WebAssembly custom section (id 0), which
// changes a module's bytes and nothing of what it does.
func withCustomSection(wasm []byte, name string, payload []byte) []byte {
	uleb := func(n int) []byte {
		var out []byte
		for {
			b := byte(n & 0x7f)
			n >>= 7
			if n == 0 {
				return append(out, b)
			}
			out = append(out, b|0x80)
		}
	}
	body := append(append(uleb(len(name)), name...), payload...)
	out := append(slices.Clone(wasm), 0)
	out = append(out, uleb(len(body))...)
	return append(out, body...)
}

func rolloutPlugin(file, dig string) string {
	return `apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: virtual}
spec:
  protocols: [virtual]
  module: {file: ` + file + `, digest: "` + dig + `"}
  rollout: {maxUnavailable: 1}`
}

// pluginStatus reads MapperPlugin virtual's status.
func (c *cloudEnv) pluginStatus(dyn dynamic.Interface) (mappersv1alpha1.MapperPluginStatus, error) {
	u, err := dyn.Resource(mappersv1alpha1.GroupVersionResource).Get(context.Background(), "virtual", metav1.GetOptions{})
	if err != nil {
		return mappersv1alpha1.MapperPluginStatus{}, err
	}
	var p mappersv1alpha1.MapperPlugin
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
		return mappersv1alpha1.MapperPluginStatus{}, err
	}
	return p.Status, nil
}

// nodeOn returns nil when node reports phase with digest in st.
func nodeOn(st mappersv1alpha1.MapperPluginStatus, node string, phase mappersv1alpha1.PluginPhase, dig string) error {
	for _, n := range st.Nodes {
		if n.Node == node {
			if n.Phase != phase || n.Digest != dig {
				return fmt.Errorf("node %s: %s %s (rejected %q: %s), want %s %s", node, n.Phase, n.Digest, n.RejectedDigest, n.Message, phase, dig)
			}
			return nil
		}
	}
	return fmt.Errorf("node %s has not reported: %+v", node, st.Nodes)
}

// TestCloudRollout runs a real apiserver, bin/wapper-cloud and two
// bin/wapper-host processes through a staged rollout (issue 15): a new
// module in two waves, a module that fails to load stopping the rollout
// after its first wave, and a rollback.
func TestCloudRollout(t *testing.T) {
	c := newCloudEnv(t)
	c.start()
	dyn := dynamic.NewForConfigOrDie(c.env.Config())
	dir, v1, v2, bad := rolloutModules(t)
	tokA, tokB := c.token("node-a"), c.token("node-b")
	hostArgs := func(node, tok string) []string {
		return []string{"--cloud", c.url, "--node", node, "--token-file", tok, "--ca-file", c.ca, "--plugin-dir", dir}
	}
	a := saStart(t, t.TempDir(), hostArgs("node-a", tokA)...)
	b := saStart(t, t.TempDir(), hostArgs("node-b", tokB)...)

	c.apply(rolloutPlugin("v1.wasm", v1) + "\n---\n" + `apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: thermo}
spec:
  protocol: virtual
  properties:
  - {name: temperature, type: INT, accessMode: ReadOnly}
  - {name: setpoint, type: INT, accessMode: ReadWrite}
---
` + cloudDevice("a1", "node-a", "20", "thermo") + "\n---\n" + cloudDevice("b1", "node-b", "20", "thermo"))
	running(t, a, c.ns, "a1")
	running(t, b, c.ns, "b1")

	// until polls the plugin's status until check passes.
	until := func(what string, check func(mappersv1alpha1.MapperPluginStatus) error) mappersv1alpha1.MapperPluginStatus {
		t.Helper()
		var st mappersv1alpha1.MapperPluginStatus
		saEventually(t, what, 3*time.Minute, func() error {
			var err error
			if st, err = c.pluginStatus(dyn); err != nil {
				return err
			}
			return check(st)
		})
		return st
	}
	complete := func(target string) func(mappersv1alpha1.MapperPluginStatus) error {
		return func(st mappersv1alpha1.MapperPluginStatus) error {
			for _, n := range []string{"node-a", "node-b"} {
				if err := nodeOn(st, n, mappersv1alpha1.PhaseLoaded, target); err != nil {
					return err
				}
			}
			if r := st.Rollout; r.Phase != mappersv1alpha1.RolloutComplete || r.TargetDigest != target || r.UpdatedNodes != 2 || r.TotalNodes != 2 {
				return fmt.Errorf("rollout %+v", r)
			}
			return nil
		}
	}
	// The first module goes to both nodes at once: there is nothing to
	// roll out from.
	until("v1 on both nodes", complete(v1))

	t.Run("two waves", func(t *testing.T) {
		c.apply(rolloutPlugin("v2.wasm", v2))
		st := until("v2 on both nodes", complete(v2))
		if r := st.Rollout; r.CurrentWave != 2 || r.PreviousDigest != v1 || r.PreviousModule.File != "v1.wasm" {
			t.Fatalf("rollout after two waves of one node: %+v", r)
		}
		if got := c.metric(`wapper_cloud_rollout_waves_total{plugin="virtual"}`); got != 2 {
			t.Fatalf("the cloud counted %v waves, want 2", got)
		}
		running(t, a, c.ns, "a1")
		running(t, b, c.ns, "b1")
	})

	t.Run("failing module stops after the first wave", func(t *testing.T) {
		c.apply(rolloutPlugin("bad.wasm", bad))
		st := until("the rollout of the bad module failed", func(st mappersv1alpha1.MapperPluginStatus) error {
			if r := st.Rollout; r.Phase != mappersv1alpha1.RolloutFailed || len(r.FailedNodes) != 1 {
				return fmt.Errorf("rollout %+v", r)
			}
			return nil
		})
		r := st.Rollout
		if r.TargetDigest != bad || r.CurrentWave != 1 || !slices.Equal(r.CurrentWaveNodes, []string{"node-a"}) || r.FailedNodes[0].Node != "node-a" || r.FailedNodes[0].Reason == "" {
			t.Fatalf("failed rollout %+v", r)
		}
		// node-b, outside the first wave, is still sent v2 and runs it;
		// it reports that again after the failure.
		if err := nodeOn(st, "node-b", mappersv1alpha1.PhaseLoaded, v2); err != nil {
			t.Fatal(err)
		}
		running(t, b, c.ns, "b1")
		if got := c.metric(`wapper_cloud_rollout_failures_total{plugin="virtual"}`); got != 1 {
			t.Fatalf("the cloud counted %v failed rollouts, want 1", got)
		}
		// A restarted cloud finds the rollout where it stood: failed, with
		// node-b kept on v2.
		c.kill9()
		c.start()
		st = until("the failed rollout after a cloud restart", func(st mappersv1alpha1.MapperPluginStatus) error {
			if r := st.Rollout; r.Phase != mappersv1alpha1.RolloutFailed || r.CurrentWave != 1 {
				return fmt.Errorf("rollout %+v", r)
			}
			return nodeOn(st, "node-b", mappersv1alpha1.PhaseLoaded, v2)
		})
		running(t, b, c.ns, "b1")
	})

	t.Run("rollback", func(t *testing.T) {
		c.apply(rolloutPlugin("v2.wasm", v2))
		st := until("v2 back on both nodes", complete(v2))
		if r := st.Rollout; len(r.FailedNodes) != 0 || r.PreviousDigest != bad || r.PreviousModule != (mappersv1alpha1.Module{}) {
			t.Fatalf("rollout after the rollback: %+v", r)
		}
		if got := c.metric(`wapper_cloud_rollout_rollbacks_total{plugin="virtual"}`); got != 1 {
			t.Fatalf("the cloud counted %v rollbacks, want 1", got)
		}
		running(t, a, c.ns, "a1")
		running(t, b, c.ns, "b1")
	})
}
