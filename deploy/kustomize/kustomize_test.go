package kustomize_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"wapper.dev/wapper/deploy/kustomize"
	"wapper.dev/wapper/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite deploy/cloud/wapper-cloud.yaml from deploy/kustomize/cloud")

// renderedHeader starts deploy/cloud/wapper-cloud.yaml.
const renderedHeader = `# wapper-cloud in a cluster: the MapperPlugin CRD, namespaces, RBAC,
# Deployment, Service, PodDisruptionBudget and NetworkPolicy.
#
# GENERATED from deploy/kustomize/cloud (kustomize build) by
# ` + "`make deploy-manifests`" + `; edit the base, not this file (docs/deploy.md).
#
#   kubectl apply -f deploy/crds/    # only without KubeEdge: its Device CRDs
#   kubectl apply -f deploy/cloud/
#
# Set the image first (wapper-cloud:latest is a placeholder). Give each
# edge node a token: wapper-cloud token NODE (or create the Secret
# wapper-node-NODE, label wapper.dev/node=NODE, key "token").
`

// TestRenderedManifest: deploy/cloud/wapper-cloud.yaml is the cloud base
// rendered, so that kubectl apply -f and -k install the same.
func TestRenderedManifest(t *testing.T) {
	b, err := kustomize.Build(kustomize.Cloud)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte(renderedHeader+"---\n"), b...)
	path := filepath.Join(testenv.Root(), "deploy", "cloud", "wapper-cloud.yaml")
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("deploy/cloud/wapper-cloud.yaml is not deploy/kustomize/cloud rendered: run `make deploy-manifests`")
	}
}

// TestCRDCopies: the bases' CRD files are deploy/crds' own, byte for byte,
// and each of those is in one base.
func TestCRDCopies(t *testing.T) {
	src := filepath.Join(testenv.Root(), "deploy", "crds")
	files, err := filepath.Glob(filepath.Join(src, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs in %s: %v", src, err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		base := kustomize.KubeEdgeCRDs
		if strings.HasPrefix(name, "mappers.wapper.dev_") {
			base = kustomize.Cloud
		}
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(kustomize.Dir(), base, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("deploy/kustomize/%s/%s is not a copy of deploy/crds/%s (run `make deploy-manifests`): %v", base, name, name, err)
		}
		// group_plural.yaml holds the CRD plural.group.
		group, plural, _ := strings.Cut(strings.TrimSuffix(name, ".yaml"), "_")
		if !slices.ContainsFunc(render(t, base), func(u *unstructured.Unstructured) bool {
			return u.GetKind() == "CustomResourceDefinition" && u.GetName() == plural+"."+group
		}) {
			t.Errorf("base %s does not render the CRD %s.%s", base, plural, group)
		}
	}
}

func render(t *testing.T, base string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := kustomize.Objects(base)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func kinds(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	return out
}

// TestBases: each base renders what docs/deploy.md says.
func TestBases(t *testing.T) {
	for base, want := range map[string][]string{
		kustomize.Cloud: {
			"Namespace/wapper-system", "Namespace/wapper-plugin-secrets",
			"CustomResourceDefinition/mapperplugins.mappers.wapper.dev",
			"ServiceAccount/wapper-cloud", "ClusterRole/wapper-cloud", "ClusterRole/wapper-fleet-viewer", "ClusterRoleBinding/wapper-cloud",
			"Role/wapper-cloud", "RoleBinding/wapper-cloud", "Role/wapper-cloud-plugin-secrets", "RoleBinding/wapper-cloud-plugin-secrets",
			"Deployment/wapper-cloud", "Service/wapper-cloud", "PodDisruptionBudget/wapper-cloud", "NetworkPolicy/wapper-cloud",
		},
		kustomize.Host: {"Namespace/wapper-edge", "ServiceAccount/wapper-host", "ConfigMap/wapper-host-manifests", "DaemonSet/wapper-host"},
		kustomize.KubeEdgeCRDs: {
			"CustomResourceDefinition/devices.devices.kubeedge.io", "CustomResourceDefinition/devicemodels.devices.kubeedge.io",
			"CustomResourceDefinition/devicestatuses.devices.kubeedge.io",
		},
	} {
		got := kinds(render(t, base))
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s renders %v, want %v", base, got, want)
		}
	}
}

func podSpec(t *testing.T, objs []*unstructured.Unstructured, kind string) corev1.PodSpec {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() != kind {
			continue
		}
		switch kind {
		case "Deployment":
			var d appsv1.Deployment
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, &d, true); err != nil {
				t.Fatal(err)
			}
			return d.Spec.Template.Spec
		case "DaemonSet":
			var d appsv1.DaemonSet
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, &d, true); err != nil {
				t.Fatal(err)
			}
			return d.Spec.Template.Spec
		}
	}
	t.Fatalf("no %s", kind)
	return corev1.PodSpec{}
}

// TestHardening: what an admin checks first in a workload, for both.
// (e2e/deploy_test.go has the API server's Pod Security admission judge
// them too.)
func TestHardening(t *testing.T) {
	for _, c := range []struct {
		base, kind string
		nonroot    bool
	}{{kustomize.Cloud, "Deployment", true}, {kustomize.Host, "DaemonSet", false}} {
		spec := podSpec(t, render(t, c.base), c.kind)
		if spec.SecurityContext == nil || spec.SecurityContext.SeccompProfile == nil || spec.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: no RuntimeDefault seccomp profile", c.kind)
		}
		if len(spec.Containers) != 1 {
			t.Fatalf("%s: %d containers", c.kind, len(spec.Containers))
		}
		ctr := spec.Containers[0]
		sc := ctr.SecurityContext
		switch {
		case sc == nil:
			t.Fatalf("%s: no container securityContext", c.kind)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("%s: privilege escalation allowed", c.kind)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("%s: root filesystem writable", c.kind)
		case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
			t.Errorf("%s: capabilities %+v", c.kind, sc.Capabilities)
		case sc.Privileged != nil && *sc.Privileged:
			t.Errorf("%s: privileged", c.kind)
		}
		if c.nonroot && (spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot || spec.SecurityContext.RunAsUser == nil || *spec.SecurityContext.RunAsUser != 65532) {
			t.Errorf("%s: not run as the image's nonroot user 65532", c.kind)
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := ctr.Resources.Requests[r]; !ok {
				t.Errorf("%s: no %s request", c.kind, r)
			}
			if _, ok := ctr.Resources.Limits[r]; !ok {
				t.Errorf("%s: no %s limit", c.kind, r)
			}
		}
		if ctr.LivenessProbe == nil || ctr.ReadinessProbe == nil {
			t.Errorf("%s: probes missing", c.kind)
		}
	}
}

// TestOverlayExamples builds the overlays of docs/deploy.md.
func TestOverlayExamples(t *testing.T) {
	write := func(dir, name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// kustomize takes a base by relative path only.
	rel := func(from, base string) string {
		r, err := filepath.Rel(from, filepath.Join(kustomize.Dir(), base))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	prod := t.TempDir()
	write(prod, "kustomization.yaml", `resources:
- `+rel(prod, kustomize.Cloud)+`
images:
- name: wapper-cloud
  newName: registry.example.com/wapper/wapper-cloud
  digest: `+digest+`
patches:
- target: {kind: Deployment, name: wapper-cloud}
  patch: |
    - op: replace
      path: /spec/template/spec/containers/0/args/4
      value: --tls-hosts=wapper-cloud.wapper-system.svc,cloud.example.com
- target: {kind: Service, name: wapper-cloud}
  patch: |
    - {op: add, path: /spec/type, value: LoadBalancer}
`)
	objs := render(t, prod)
	spec := podSpec(t, objs, "Deployment")
	if img := spec.Containers[0].Image; img != "registry.example.com/wapper/wapper-cloud@"+digest {
		t.Errorf("image %s", img)
	}
	if !slices.Contains(spec.Containers[0].Args, "--tls-hosts=wapper-cloud.wapper-system.svc,cloud.example.com") ||
		slices.ContainsFunc(spec.Containers[0].Args, func(a string) bool { return strings.Contains(a, "svc.cluster.local") }) {
		t.Errorf("args %q", spec.Containers[0].Args)
	}
	for _, o := range objs {
		if o.GetKind() == "Service" {
			if typ, _, _ := unstructured.NestedString(o.Object, "spec", "type"); typ != "LoadBalancer" {
				t.Errorf("Service type %q", typ)
			}
		}
	}

	edge := t.TempDir()
	write(edge, "modbus.yaml", "apiVersion: mappers.wapper.dev/v1alpha1\nkind: MapperPlugin\nmetadata: {name: modbus}\n")
	write(edge, "kustomization.yaml", `resources:
- `+rel(edge, kustomize.Host)+`
images:
- name: wapper-host
  newName: registry.example.com/wapper/wapper-host
  digest: `+digest+`
configMapGenerator:
- name: wapper-host-manifests
  namespace: wapper-edge
  behavior: merge
  files: [modbus.yaml]
`)
	objs = render(t, edge)
	spec = podSpec(t, objs, "DaemonSet")
	if img := spec.Containers[0].Image; img != "registry.example.com/wapper/wapper-host@"+digest {
		t.Errorf("image %s", img)
	}
	var cm string
	for _, o := range objs {
		if o.GetKind() == "ConfigMap" {
			cm = o.GetName()
			if data, _, _ := unstructured.NestedStringMap(o.Object, "data"); !strings.Contains(data["modbus.yaml"], "name: modbus") {
				t.Errorf("ConfigMap %s data %v", cm, data)
			}
		}
	}
	var vol string
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil {
			vol = v.ConfigMap.Name
		}
	}
	if cm == "" || vol != cm {
		t.Errorf("ConfigMap %q, the DaemonSet mounts %q", cm, vol)
	}
}
