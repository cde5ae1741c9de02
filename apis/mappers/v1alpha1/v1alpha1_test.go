package v1alpha1_test

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	v1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/internal/testenv"
)

const issueYAML = `
apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: virtual}
spec:
  protocols: [virtual]
  module:
    file: virtual.wasm
  grants:
    network: ["tcp://127.0.0.1:5502"]
    serial: ["/dev/ttyUSB*"]
    gpio: ["GPIO17"]
  limits: {memoryMiB: 64, callTimeout: 2s, instances: 2}
  config: {}
status:
  nodes: [{node: edge-1, phase: Loaded, digest: "sha256:0000000000000000000000000000000000000000000000000000000000000000", message: ok, lastTransitionTime: "2026-01-02T03:04:05Z"}]
`

func decode(t *testing.T, doc string) *v1alpha1.MapperPlugin {
	t.Helper()
	var p v1alpha1.MapperPlugin
	if err := yaml.UnmarshalStrict([]byte(doc), &p); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return &p
}

func TestIssueShapeDecodesAndValidates(t *testing.T) {
	p := decode(t, issueYAML)
	p.Default()
	if errs := p.Validate(); len(errs) != 0 {
		t.Fatalf("valid plugin rejected: %v", errs.ToAggregate())
	}
	if p.APIVersion != v1alpha1.SchemeGroupVersion.String() || p.Kind != v1alpha1.Kind {
		t.Errorf("type meta = %s %s", p.APIVersion, p.Kind)
	}
	if got := p.Spec.Limits.CallTimeout.Duration; got != 2*time.Second {
		t.Errorf("callTimeout = %v, want 2s", got)
	}
	if string(p.Spec.Config.Raw) != "{}" {
		t.Errorf("config raw = %q", p.Spec.Config.Raw)
	}
	n := p.Status.Nodes[0]
	if n.Node != "edge-1" || n.Phase != v1alpha1.PhaseLoaded || n.LastTransitionTime.Year() != 2026 {
		t.Errorf("status = %+v", n)
	}
	if p.Spec.Grants.GPIO[0] != "GPIO17" {
		t.Errorf("grants = %+v", p.Spec.Grants)
	}
}

func TestDefaults(t *testing.T) {
	p := decode(t, `{metadata: {name: x}, spec: {protocols: [modbus], module: {file: m.wasm}}}`)
	p.Default()
	l := p.Spec.Limits
	if l.MemoryMiB != 64 || l.CallTimeout.Duration != 5*time.Second || l.Instances != 2 {
		t.Fatalf("defaults = %+v", l)
	}
	if errs := p.Validate(); len(errs) != 0 {
		t.Fatalf("defaulted plugin rejected: %v", errs.ToAggregate())
	}
	if l.MemoryPages() != 64*16 || l.MemoryBytes() != 64<<20 {
		t.Errorf("pages %d bytes %d", l.MemoryPages(), l.MemoryBytes())
	}
	// Explicit values survive defaulting.
	p = decode(t, `{metadata: {name: x}, spec: {protocols: [m], module: {file: m.wasm}, limits: {memoryMiB: 8, callTimeout: 1m, instances: 9}}}`)
	p.Default()
	if l := p.Spec.Limits; l.MemoryMiB != 8 || l.CallTimeout.Duration != time.Minute || l.Instances != 9 {
		t.Fatalf("explicit limits changed: %+v", l)
	}
}

const goodDigest = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"

func TestValidationErrors(t *testing.T) {
	cases := []struct {
		name, doc string
		field     string // the field path of the one expected error
		reason    string // a substring of its detail
	}{
		{"image without digest", `{spec: {protocols: [m], module: {image: "reg.example:5000/mappers/modbus:1.0"}}}`, "spec.module.digest", "needs its digest"},
		{"bad digest", `{spec: {protocols: [m], module: {file: m.wasm, digest: "sha256:ABC"}}}`, "spec.module.digest", "64 lower-case hex"},
		{"md5 digest", `{spec: {protocols: [m], module: {file: m.wasm, digest: "md5:d41d8cd98f00b204e9800998ecf8427e"}}}`, "spec.module.digest", "sha256:"},
		{"file and image", `{spec: {protocols: [m], module: {file: m.wasm, image: "r/m:1", digest: "` + goodDigest + `"}}}`, "spec.module", "exactly one"},
		{"neither file nor image", `{spec: {protocols: [m], module: {}}}`, "spec.module", "set file"},
		{"absolute file", `{spec: {protocols: [m], module: {file: /etc/m.wasm}}}`, "spec.module.file", "relative"},
		{"escaping file", `{spec: {protocols: [m], module: {file: ../m.wasm}}}`, "spec.module.file", "inside"},
		{"bad image", `{spec: {protocols: [m], module: {image: "Bad Image", digest: "` + goodDigest + `"}}}`, "spec.module.image", "OCI reference"},
		{"image digest mismatch", `{spec: {protocols: [m], module: {image: "r/m@sha256:1111111111111111111111111111111111111111111111111111111111111111", digest: "` + goodDigest + `"}}}`, "spec.module.digest", "does not match"},
		{"empty protocols", `{spec: {protocols: [], module: {file: m.wasm}}}`, "spec.protocols", "at least one"},
		{"missing protocols", `{spec: {module: {file: m.wasm}}}`, "spec.protocols", "at least one"},
		{"bad protocol", `{spec: {protocols: ["mod bus"], module: {file: m.wasm}}}`, "spec.protocols[0]", "letters"},
		{"duplicate protocol", `{spec: {protocols: [m, m], module: {file: m.wasm}}}`, "spec.protocols[1]", "Duplicate"},
		{"network no scheme", `{spec: {protocols: [m], module: {file: m.wasm}, grants: {network: ["127.0.0.1:502"]}}}`, "spec.grants.network[0]", "SCHEME://HOST:PORT"},
		{"network bad scheme", `{spec: {protocols: [m], module: {file: m.wasm}, grants: {network: ["http://h:80"]}}}`, "spec.grants.network[0]", "tcp, udp or tls"},
		{"network bad port", `{spec: {protocols: [m], module: {file: m.wasm}, grants: {network: ["tcp://h:70000"]}}}`, "spec.grants.network[0]", "1-65535"},
		{"network reversed range", `{spec: {protocols: [m], module: {file: m.wasm}, grants: {network: ["tcp://h:9-1"]}}}`, "spec.grants.network[0]", "reversed"},
		{"network no port", `{spec: {protocols: [m], module: {file: m.wasm}, grants: {network: ["tcp://h"]}}}`, "spec.grants.network[0]", "PORT"},
		{"network bare ipv6", `{spec: {protocols: [m], module: {file: m.wasm}, grants: {network: ["tcp://::1:80"]}}}`, "spec.grants.network[0]", "brackets"},
		{"network bad host", `{spec: {protocols: [m], module: {file: m.wasm}, grants: {network: ["tcp://a b:80"]}}}`, "spec.grants.network[0]", "DNS name"},
		{"network host bits", `{spec: {protocols: [m], module: {file: m.wasm}, grants: {network: ["tcp://10.0.0.1/8:80"]}}}`, "spec.grants.network[0]", "not an IP"},
		{"serial relative", `{spec: {protocols: [m], module: {file: m.wasm}, grants: {serial: ["ttyUSB0"]}}}`, "spec.grants.serial[0]", "absolute"},
		{"serial bad glob", `{spec: {protocols: [m], module: {file: m.wasm}, grants: {serial: ["/dev/tty[USB"]}}}`, "spec.grants.serial[0]", "glob"},
		{"gpio bad char", `{spec: {protocols: [m], module: {file: m.wasm}, grants: {gpio: ["GPIO 17"]}}}`, "spec.grants.gpio[0]", "not allowed"},
		{"gpio bad glob", `{spec: {protocols: [m], module: {file: m.wasm}, grants: {gpio: ["GPIO[1"]}}}`, "spec.grants.gpio[0]", "glob"},
		{"memory too big", `{spec: {protocols: [m], module: {file: m.wasm}, limits: {memoryMiB: 1025}}}`, "spec.limits.memoryMiB", "between 1 and 1024"},
		{"memory negative", `{spec: {protocols: [m], module: {file: m.wasm}, limits: {memoryMiB: -1}}}`, "spec.limits.memoryMiB", "between 1 and 1024"},
		{"timeout too long", `{spec: {protocols: [m], module: {file: m.wasm}, limits: {callTimeout: 6m}}}`, "spec.limits.callTimeout", "at most 5m"},
		{"timeout negative", `{spec: {protocols: [m], module: {file: m.wasm}, limits: {callTimeout: -1s}}}`, "spec.limits.callTimeout", "above 0"},
		{"instances too many", `{spec: {protocols: [m], module: {file: m.wasm}, limits: {instances: 65}}}`, "spec.limits.instances", "between 1 and 64"},
		{"config not object", `{spec: {protocols: [m], module: {file: m.wasm}, config: [1, 2]}}`, "spec.config", "JSON object"},
		{"namespaced", `{metadata: {namespace: default}, spec: {protocols: [m], module: {file: m.wasm}}}`, "metadata.namespace", "cluster-scoped"},
		{"bad name", `{metadata: {name: Virtual_1}, spec: {protocols: [m], module: {file: m.wasm}}}`, "metadata.name", "lowercase"},
		{"rollout zero wave", `{spec: {protocols: [m], module: {file: m.wasm}, rollout: {maxUnavailable: 0}}}`, "spec.rollout.maxUnavailable", "at least 1"},
		{"rollout bare string", `{spec: {protocols: [m], module: {file: m.wasm}, rollout: {maxUnavailable: "2"}}}`, "spec.rollout.maxUnavailable", "percentage"},
		{"rollout over 100%", `{spec: {protocols: [m], module: {file: m.wasm}, rollout: {maxUnavailable: "101%"}}}`, "spec.rollout.maxUnavailable", "percentage"},
		{"rollout negative deadline", `{spec: {protocols: [m], module: {file: m.wasm}, rollout: {progressDeadlineSeconds: -5}}}`, "spec.rollout.progressDeadlineSeconds", "at least 1 second"},
		{"rollout bad selector", `{spec: {protocols: [m], module: {file: m.wasm}, rollout: {canaryNodeSelector: {matchExpressions: [{key: tier, operator: Near}]}}}}`, "spec.rollout.canaryNodeSelector.matchExpressions[0].operator", "not a valid"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := decode(t, c.doc)
			if p.Name == "" {
				p.Name = "p"
			}
			p.Default()
			errs := p.Validate()
			if len(errs) != 1 {
				t.Fatalf("want exactly one error at %s, got %d: %v", c.field, len(errs), errs.ToAggregate())
			}
			if errs[0].Field != c.field {
				t.Errorf("field = %q, want %q (%v)", errs[0].Field, c.field, errs[0])
			}
			if !strings.Contains(errs[0].Error(), c.reason) {
				t.Errorf("error %q does not say %q", errs[0].Error(), c.reason)
			}
		})
	}
}

func TestValidWithoutDefaultIsRejected(t *testing.T) {
	p := decode(t, `{metadata: {name: x}, spec: {protocols: [m], module: {file: m.wasm}}}`)
	if errs := p.Validate(); len(errs) != 3 {
		t.Fatalf("undefaulted limits: want 3 errors, got %v", errs.ToAggregate())
	}
}

func TestValidModules(t *testing.T) {
	for _, m := range []v1alpha1.Module{
		{File: "virtual.wasm"},
		{File: "sub/dir/m.wasm", Digest: goodDigest},
		{Image: "localhost:5000/mappers/modbus:v1.2.3", Digest: goodDigest},
		{Image: "mappers/modbus", Digest: goodDigest},
		{Image: "r.example/a/b_c/d-e@" + goodDigest, Digest: goodDigest},
		{Image: "[::1]:5000/m:latest", Digest: "sha512:" + strings.Repeat("ab", 64)},
	} {
		if errs := m.Validate(nil); len(errs) != 0 {
			t.Errorf("%+v rejected: %v", m, errs.ToAggregate())
		}
	}
}

func TestJSONRoundTripAndDeepCopy(t *testing.T) {
	p := decode(t, issueYAML)
	p.Spec.Config = &runtime.RawExtension{Raw: []byte(`{"slave":1,"nested":{"a":[1,2]}}`)}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back v1alpha1.MapperPlugin
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if string(back.Spec.Config.Raw) != string(p.Spec.Config.Raw) || back.Spec.Limits.CallTimeout != p.Spec.Limits.CallTimeout {
		t.Fatalf("round trip lost data:\n%s", b)
	}
	c := p.DeepCopy()
	c.Spec.Protocols[0] = "changed"
	c.Spec.Grants.Network[0] = "changed"
	c.Spec.Config.Raw[0] = 'X'
	c.Status.Nodes[0].Node = "changed"
	if p.Spec.Protocols[0] != "virtual" || p.Spec.Grants.Network[0] == "changed" || p.Spec.Config.Raw[0] != '{' || p.Status.Nodes[0].Node != "edge-1" {
		t.Fatal("DeepCopy shares memory with the original")
	}
	list := &v1alpha1.MapperPluginList{Items: []v1alpha1.MapperPlugin{*p}}
	lc := list.DeepCopyObject().(*v1alpha1.MapperPluginList)
	lc.Items[0].Spec.Protocols[0] = "changed"
	if list.Items[0].Spec.Protocols[0] != "virtual" {
		t.Fatal("list DeepCopy shares memory")
	}
}

func TestScheme(t *testing.T) {
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	obj, err := s.New(v1alpha1.GroupVersionKind)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := obj.(*v1alpha1.MapperPlugin); !ok {
		t.Fatalf("scheme made %T", obj)
	}
	if !s.Recognizes(v1alpha1.SchemeGroupVersion.WithKind("MapperPluginList")) {
		t.Fatal("list kind not registered")
	}
}

// TestNoClientGo guards DESIGN §3: the edge binary imports this package and
// must not link client-go.
func TestNoClientGo(t *testing.T) {
	goBin := testenv.Bin(t, "go")
	out, err := exec.Command(goBin, "list", "-deps", "wapper.dev/wapper/apis/mappers/v1alpha1").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for dep := range strings.FieldsSeq(string(out)) {
		if strings.HasPrefix(dep, "k8s.io/client-go") || strings.HasPrefix(dep, "k8s.io/api/") {
			t.Errorf("v1alpha1 depends on %s; the edge must not link client-go", dep)
		}
	}
}

// TestZeroFieldsAreOmitted guards the CRD's callTimeout rule: an undefaulted
// object written by a Go client must not send callTimeout "0s".
func TestZeroFieldsAreOmitted(t *testing.T) {
	p := &v1alpha1.MapperPlugin{Spec: v1alpha1.MapperPluginSpec{Protocols: []string{"m"}, Module: v1alpha1.Module{File: "m.wasm"}}}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"callTimeout", "limits", "grants", "status", "lastTransitionTime"} {
		if strings.Contains(string(b), s) {
			t.Errorf("zero %s is marshalled: %s", s, b)
		}
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := u["spec"].(map[string]any)["limits"]; ok {
		t.Errorf("unstructured conversion keeps zero limits: %v", u)
	}
	p.Spec.Limits.Instances = 3
	b, _ = json.Marshal(p)
	if strings.Contains(string(b), "callTimeout") || !strings.Contains(string(b), `"instances":3`) {
		t.Errorf("partial limits: %s", b)
	}
}

func TestRolloutDefaultsAndWaveSize(t *testing.T) {
	p := decode(t, `{metadata: {name: p}, spec: {protocols: [m], module: {file: m.wasm, digest: "`+goodDigest+`"}, rollout: {canaryNodeSelector: {matchLabels: {tier: canary}}, paused: true}}}`)
	p.Default()
	if errs := p.Validate(); len(errs) != 0 {
		t.Fatalf("valid rollout rejected: %v", errs.ToAggregate())
	}
	if mu := p.Spec.Rollout.MaxUnavailable; mu == nil || mu.String() != "1" {
		t.Fatalf("default maxUnavailable %v, want 1", mu)
	}
	if s := p.Spec.Rollout.ProgressDeadlineSeconds; s != 600 {
		t.Fatalf("default progressDeadlineSeconds %d, want 600", s)
	}
	for s, want := range map[int32]time.Duration{0: 10 * time.Minute, 1: time.Second, 90: 90 * time.Second} {
		if got := (v1alpha1.Rollout{ProgressDeadlineSeconds: s}).ProgressDeadline(); got != want {
			t.Errorf("ProgressDeadline() of %d seconds = %s, want %s", s, got, want)
		}
	}
	for _, c := range []struct {
		mu    string
		nodes int
		want  int
	}{
		{"1", 5, 1}, {"3", 2, 2}, {"25%", 5, 2}, {"25%", 4, 1}, {"1%", 3, 1}, {"100%", 7, 7}, {"50%", 0, 0},
	} {
		v := intstr.Parse(c.mu)
		r := v1alpha1.Rollout{MaxUnavailable: &v}
		got, err := r.WaveSize(c.nodes)
		if err != nil || got != c.want {
			t.Errorf("WaveSize(%s of %d) = %d, %v; want %d", c.mu, c.nodes, got, err, c.want)
		}
	}
}

// TestGrantsList: every kind of grant, one string each in the form
// `wapper plugin run --grant` takes; TLS settings are not grants.
func TestGrantsList(t *testing.T) {
	g := v1alpha1.Grants{
		Network: []string{"tcp://10.0.0.5:502", "tls://broker.local:8883"}, Serial: []string{"/dev/ttyUSB*"},
		GPIO: []string{"GPIO17"}, Listen: []string{"udp://0.0.0.0:162"}, Secrets: []string{"plc-*"},
		TLS: []v1alpha1.TLSGrant{{Endpoint: "tls://broker.local:8883", CASecret: "ca"}},
	}
	want := []string{"tcp://10.0.0.5:502", "tls://broker.local:8883", "/dev/ttyUSB*", "gpio:GPIO17", "listen:udp://0.0.0.0:162", "secret:plc-*"}
	if got := g.List(); !slices.Equal(got, want) {
		t.Errorf("List() = %q, want %q", got, want)
	}
	if got := (v1alpha1.Grants{}).List(); len(got) != 0 {
		t.Errorf("no grants: %q", got)
	}
}
