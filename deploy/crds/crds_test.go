package crds_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"wapper.dev/wapper/deploy/crds"
	"wapper.dev/wapper/internal/testenv"
)

func TestAllDecodes(t *testing.T) {
	all, err := crds.All()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{crds.DeviceModels, crds.Devices, crds.DeviceStatuses, crds.MapperPlugins}
	if len(all) != len(want) {
		t.Fatalf("got %d CRDs, want %d", len(all), len(want))
	}
	for i, c := range all {
		if c.Name != want[i] {
			t.Errorf("CRD %d = %s, want %s", i, c.Name, want[i])
		}
	}
	mp, err := crds.Get(crds.MapperPlugins)
	if err != nil {
		t.Fatal(err)
	}
	if mp.Spec.Scope != "Cluster" || mp.Spec.Versions[0].Subresources == nil || mp.Spec.Versions[0].Subresources.Status == nil {
		t.Errorf("MapperPlugin must be cluster-scoped with a status subresource: %+v", mp.Spec)
	}
	// KubeEdge writes Device status with plain patches; a status
	// subresource would drop them.
	for _, name := range []string{crds.Devices, crds.DeviceModels, crds.DeviceStatuses} {
		c, _ := crds.Get(name)
		if c.Spec.Scope != "Namespaced" || c.Spec.Versions[0].Name != "v1beta1" || c.Spec.Versions[0].Subresources != nil {
			t.Errorf("%s: want namespaced v1beta1 without subresources, like KubeEdge's", name)
		}
	}
	if _, err := crds.Get("nope"); err == nil {
		t.Error("Get of an unknown CRD succeeded")
	}
}

// TestUpToDate regenerates the CRDs with hack/k8s/gen-crds.sh (controller-gen
// from the Go module proxy) and compares them with the committed files.
func TestUpToDate(t *testing.T) {
	testenv.Slow(t, "runs controller-gen from the Go module proxy")
	goBin := testenv.Bin(t, "go")
	out := t.TempDir()
	cmd := exec.Command(filepath.Join(testenv.Root(), "hack", "k8s", "gen-crds.sh"), out)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(goBin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gen-crds.sh: %v\n%s", err, b)
	}
	gen, _ := filepath.Glob(filepath.Join(out, "*.yaml"))
	committed, _ := filepath.Glob("*.yaml")
	if len(gen) != len(committed) {
		t.Fatalf("gen-crds.sh made %d files, %d are committed; run hack/k8s/gen-crds.sh", len(gen), len(committed))
	}
	for _, g := range gen {
		want, _ := os.ReadFile(g)
		have, err := os.ReadFile(filepath.Base(g))
		if err != nil || !bytes.Equal(want, have) {
			t.Errorf("deploy/crds/%s is stale; run hack/k8s/gen-crds.sh", filepath.Base(g))
		}
	}
}
