package k8stest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	devicesv1beta1 "github.com/kubeedge/api/apis/devices/v1beta1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	v1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/internal/k8stest"
)

func TestMain(m *testing.M) { os.Exit(k8stest.Run(m)) }

var (
	devicesGVR       = devicesv1beta1.SchemeGroupVersion.WithResource("devices")
	deviceModelsGVR  = devicesv1beta1.SchemeGroupVersion.WithResource("devicemodels")
	deviceStatusGVR  = devicesv1beta1.SchemeGroupVersion.WithResource("devicestatuses")
	mapperPluginsGVR = v1alpha1.GroupVersionResource
)

func dyn(t *testing.T, cfg *rest.Config) *dynamic.DynamicClient {
	t.Helper()
	c, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readYAML decodes every document of a testdata file.
func readYAML(t *testing.T, name string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

func resourceFor(t *testing.T, u *unstructured.Unstructured) schema.GroupVersionResource {
	t.Helper()
	switch u.GetKind() {
	case "Device":
		return devicesGVR
	case "DeviceModel":
		return deviceModelsGVR
	case "DeviceStatus":
		return deviceStatusGVR
	case v1alpha1.Kind:
		return mapperPluginsGVR
	}
	t.Fatalf("no resource for kind %s", u.GetKind())
	return schema.GroupVersionResource{}
}

func fromUnstructured(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	b, err := u.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, into); err != nil {
		t.Fatalf("decode %s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

func TestDiscoveryServesTheCRDs(t *testing.T) {
	env := k8stest.Shared(t)
	dc, err := discovery.NewDiscoveryClientForConfig(env.Config())
	if err != nil {
		t.Fatal(err)
	}
	want := map[schema.GroupVersionResource]bool{ // resource -> namespaced
		mapperPluginsGVR: false, devicesGVR: true, deviceModelsGVR: true, deviceStatusGVR: true,
	}
	for gvr, namespaced := range want {
		// Discovery may serve a new CRD's group a moment after the CRD
		// is Established.
		var list *metav1.APIResourceList
		err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			var err error
			list, err = dc.ServerResourcesForGroupVersion(gvr.GroupVersion().String())
			return err == nil, nil
		})
		if err != nil {
			t.Fatalf("discovery %s: not served: %v", gvr.GroupVersion(), err)
		}
		found := false
		for _, r := range list.APIResources {
			if r.Name == gvr.Resource {
				found = true
				if r.Namespaced != namespaced {
					t.Errorf("%s namespaced = %v, want %v", gvr.Resource, r.Namespaced, namespaced)
				}
			}
		}
		if !found {
			t.Errorf("%s not served", gvr)
		}
	}
}

// TestKubeEdgeYAMLRoundTrip applies KubeEdge's own v1beta1 YAML unchanged
// and reads it back into KubeEdge's Go types.
func TestKubeEdgeYAMLRoundTrip(t *testing.T) {
	env := k8stest.Shared(t)
	ns := env.Namespace(t)
	c := dyn(t, env.Config())
	ctx := context.Background()
	for _, u := range readYAML(t, "kubeedge-modbus.yaml") {
		if _, err := c.Resource(resourceFor(t, u)).Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}

	u, err := c.Resource(deviceModelsGVR).Namespace(ns).Get(ctx, "beta1-model", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var model devicesv1beta1.DeviceModel
	fromUnstructured(t, u, &model)
	if model.Spec.Protocol != "modbus" || len(model.Spec.Properties) != 1 ||
		model.Spec.Properties[0].Type != devicesv1beta1.INT || model.Spec.Properties[0].AccessMode != devicesv1beta1.ReadWrite {
		t.Errorf("model read back wrong: %+v", model.Spec)
	}

	u, err = c.Resource(devicesGVR).Namespace(ns).Get(ctx, "beta1-device", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var dev devicesv1beta1.Device
	fromUnstructured(t, u, &dev)
	if dev.Spec.NodeName != "worker-node1" || dev.Spec.DeviceModelRef.Name != "beta1-model" {
		t.Errorf("device spec: %+v", dev.Spec)
	}
	if got := dev.Spec.Protocol.ConfigData.Data; dev.Spec.Protocol.ProtocolName != "modbus" || got["ip"] != "172.17.0.3" || got["port"] != float64(1502) {
		t.Errorf("protocol config data lost: %+v", dev.Spec.Protocol)
	}
	p := dev.Spec.Properties[0]
	if p.CollectCycle != 2000 || p.Desired.Value != "30" || !p.ReportToCloud {
		t.Errorf("property: %+v", p)
	}
	if p.Visitors.ConfigData.Data["register"] != "HoldingRegister" || p.Visitors.ConfigData.Data["isSwap"] != true {
		t.Errorf("visitor config data lost: %+v", p.Visitors.ConfigData)
	}
	if p.PushMethod == nil || p.PushMethod.MQTT == nil || p.PushMethod.MQTT.Topic != "temp" ||
		p.PushMethod.DBMethod == nil || p.PushMethod.DBMethod.Influxdb2 == nil {
		t.Errorf("push method lost: %+v", p.PushMethod)
	}

	// KubeEdge 1.23 keeps twins in DeviceStatus; the CRD, like KubeEdge's,
	// has no status subresource, so status is written with the object.
	u, err = c.Resource(deviceStatusGVR).Namespace(ns).Get(ctx, "beta1-device", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var st devicesv1beta1.DeviceStatus
	fromUnstructured(t, u, &st)
	if len(st.Status.Twins) != 1 || st.Status.Twins[0].Reported.Value != "29" || st.Status.Twins[0].ObservedDesired.Value != "30" || st.Status.State != "ok" {
		t.Errorf("device status: %+v", st.Status)
	}
	u.Object["status"].(map[string]any)["state"] = "offline"
	if _, err := c.Resource(deviceStatusGVR).Namespace(ns).Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update DeviceStatus: %v", err)
	}
	u, _ = c.Resource(deviceStatusGVR).Namespace(ns).Get(ctx, "beta1-device", metav1.GetOptions{})
	if s, _, _ := unstructured.NestedString(u.Object, "status", "state"); s != "offline" {
		t.Errorf("DeviceStatus update lost: state = %q", s)
	}
}

func TestMapperPluginRoundTrip(t *testing.T) {
	env := k8stest.Shared(t)
	c := dyn(t, env.Config()).Resource(mapperPluginsGVR)
	ctx := context.Background()
	u := readYAML(t, "mapperplugin.yaml")[0]
	u.SetName("virtual-roundtrip")
	u.Object["spec"].(map[string]any)["config"] = map[string]any{"seed": int64(7), "nested": map[string]any{"unit": "C"}}
	if _, err := c.Create(ctx, u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create: %v", err)
	}
	got, err := c.Get(ctx, "virtual-roundtrip", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var p v1alpha1.MapperPlugin
	fromUnstructured(t, got, &p)
	p.Default()
	if errs := p.Validate(); len(errs) != 0 {
		t.Fatalf("read-back plugin invalid: %v", errs.ToAggregate())
	}
	if p.Spec.Limits.CallTimeout.Duration != 2*time.Second || p.Spec.Grants.Serial[0] != "/dev/ttyUSB*" || p.Spec.Module.File != "virtual.wasm" {
		t.Errorf("spec read back wrong: %+v", p.Spec)
	}
	if string(p.Spec.Config.Raw) != `{"nested":{"unit":"C"},"seed":7}` {
		t.Errorf("config = %s (unknown fields must be preserved)", p.Spec.Config.Raw)
	}

	// Status goes through the status subresource.
	p.Status.Nodes = []v1alpha1.NodeStatus{{Node: "edge-1", Phase: v1alpha1.PhaseFailed, Message: "digest mismatch", LastTransitionTime: metav1.Now()}}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateStatus(ctx, &unstructured.Unstructured{Object: obj}, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update status: %v", err)
	}
	got, _ = c.Get(ctx, "virtual-roundtrip", metav1.GetOptions{})
	var back v1alpha1.MapperPlugin
	fromUnstructured(t, got, &back)
	if len(back.Status.Nodes) != 1 || back.Status.Nodes[0].Phase != v1alpha1.PhaseFailed || back.Status.Nodes[0].Message != "digest mismatch" {
		t.Errorf("status read back: %+v", back.Status)
	}
	// A bad phase is refused by the schema.
	obj["status"] = map[string]any{"nodes": []any{map[string]any{"node": "edge-1", "phase": "Exploded"}}}
	obj["metadata"].(map[string]any)["resourceVersion"] = got.GetResourceVersion()
	if _, err := c.UpdateStatus(ctx, &unstructured.Unstructured{Object: obj}, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) {
		t.Errorf("bad phase: want Invalid, got %v", err)
	}
}

func TestMapperPluginPrinterColumns(t *testing.T) {
	env := k8stest.Shared(t)
	c := dyn(t, env.Config()).Resource(mapperPluginsGVR)
	u := readYAML(t, "mapperplugin.yaml")[0]
	u.SetName("virtual-columns")
	if _, err := c.Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(env.Config())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, env.URL+"/apis/mappers.wapper.dev/v1alpha1/mapperplugins/virtual-columns", nil)
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var table metav1.Table
	if err := json.NewDecoder(resp.Body).Decode(&table); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, col := range table.ColumnDefinitions {
		names = append(names, col.Name)
	}
	if got := strings.Join(names, ","); got != "Name,Protocols,Image,File,Rollout,Updated,Nodes,Age" {
		t.Fatalf("columns = %s", got)
	}
	if len(table.Rows) != 1 || table.Rows[0].Cells[1] != `["virtual"]` || table.Rows[0].Cells[3] != "virtual.wasm" {
		t.Errorf("row = %v", table.Rows)
	}
}

// TestMapperPluginSchemaRejects checks that the API server itself refuses
// what Validate refuses, with the field in the message.
func TestMapperPluginSchemaRejects(t *testing.T) {
	env := k8stest.Shared(t)
	c := dyn(t, env.Config()).Resource(mapperPluginsGVR)
	digest := "sha256:" + strings.Repeat("a", 64)
	cases := []struct {
		name  string
		spec  map[string]any
		field string
	}{
		{"image without digest", map[string]any{"protocols": []any{"m"}, "module": map[string]any{"image": "r/m:1"}}, "digest is required with image"},
		{"file and image", map[string]any{"protocols": []any{"m"}, "module": map[string]any{"file": "m.wasm", "image": "r/m:1", "digest": digest}}, "exactly one of file and image"},
		{"neither", map[string]any{"protocols": []any{"m"}, "module": map[string]any{}}, "exactly one of file and image"},
		{"bad digest", map[string]any{"protocols": []any{"m"}, "module": map[string]any{"file": "m.wasm", "digest": "sha256:XYZ"}}, "spec.module.digest"},
		{"no protocols", map[string]any{"protocols": []any{}, "module": map[string]any{"file": "m.wasm"}}, "spec.protocols"},
		{"bad protocol", map[string]any{"protocols": []any{"a b"}, "module": map[string]any{"file": "m.wasm"}}, "spec.protocols[0]"},
		{"memory too big", map[string]any{"protocols": []any{"m"}, "module": map[string]any{"file": "m.wasm"}, "limits": map[string]any{"memoryMiB": int64(2048)}}, "spec.limits.memoryMiB"},
		{"memory zero", map[string]any{"protocols": []any{"m"}, "module": map[string]any{"file": "m.wasm"}, "limits": map[string]any{"memoryMiB": int64(0)}}, "spec.limits.memoryMiB"},
		{"instances too many", map[string]any{"protocols": []any{"m"}, "module": map[string]any{"file": "m.wasm"}, "limits": map[string]any{"instances": int64(65)}}, "spec.limits.instances"},
		{"timeout too long", map[string]any{"protocols": []any{"m"}, "module": map[string]any{"file": "m.wasm"}, "limits": map[string]any{"callTimeout": "10m"}}, "callTimeout must be above 0s and at most 5m"},
		{"timeout zero", map[string]any{"protocols": []any{"m"}, "module": map[string]any{"file": "m.wasm"}, "limits": map[string]any{"callTimeout": "0s"}}, "callTimeout must be above 0s and at most 5m"},
		{"config not object", map[string]any{"protocols": []any{"m"}, "module": map[string]any{"file": "m.wasm"}, "config": []any{int64(1)}}, "spec.config"},
		{"absolute file", map[string]any{"protocols": []any{"m"}, "module": map[string]any{"file": "/etc/m.wasm"}}, "relative to the host's --plugin-dir"},
		{"escaping file", map[string]any{"protocols": []any{"m"}, "module": map[string]any{"file": "a/../../m.wasm"}}, "relative to the host's --plugin-dir"},
		{"bad network grant", map[string]any{"protocols": []any{"m"}, "module": map[string]any{"file": "m.wasm"}, "grants": map[string]any{"network": []any{"127.0.0.1:502"}}}, "spec.grants.network[0]"},
		{"relative serial grant", map[string]any{"protocols": []any{"m"}, "module": map[string]any{"file": "m.wasm"}, "grants": map[string]any{"serial": []any{"ttyUSB0"}}}, "spec.grants.serial[0]"},
		{"rollout zero wave", map[string]any{"protocols": []any{"m"}, "module": map[string]any{"file": "m.wasm"}, "rollout": map[string]any{"maxUnavailable": int64(0)}}, "maxUnavailable is a count of at least 1"},
		{"rollout bad percentage", map[string]any{"protocols": []any{"m"}, "module": map[string]any{"file": "m.wasm"}, "rollout": map[string]any{"maxUnavailable": "150%"}}, "maxUnavailable is a count of at least 1"},
		{"rollout zero deadline", map[string]any{"protocols": []any{"m"}, "module": map[string]any{"file": "m.wasm"}, "rollout": map[string]any{"progressDeadlineSeconds": int64(0)}}, "spec.rollout.progressDeadlineSeconds"},
		{"rollout negative deadline", map[string]any{"protocols": []any{"m"}, "module": map[string]any{"file": "m.wasm"}, "rollout": map[string]any{"progressDeadlineSeconds": int64(-1)}}, "spec.rollout.progressDeadlineSeconds"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": v1alpha1.SchemeGroupVersion.String(), "kind": v1alpha1.Kind,
				"metadata": map[string]any{"name": "bad-" + string(rune('a'+i))},
				"spec":     tc.spec,
			}}
			_, err := c.Create(context.Background(), u, metav1.CreateOptions{})
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want Invalid, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error does not name %q: %v", tc.field, err)
			}
		})
	}
}

func TestKubeconfigFileWorks(t *testing.T) {
	env := k8stest.Shared(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dyn(t, cfg).Resource(mapperPluginsGVR).List(context.Background(), metav1.ListOptions{}); err != nil {
		t.Fatalf("list through the kubeconfig file: %v", err)
	}
}

// TestOwnClusterWithUsers starts a second, private cluster: a declared user
// authenticates but RBAC refuses it, and Stop removes everything.
func TestOwnClusterWithUsers(t *testing.T) {
	k8stest.Shared(t) // skips or fails here first when the binaries are missing
	env, err := k8stest.Start(context.Background(), k8stest.Options{Users: []k8stest.User{{Name: "edge-1", Groups: []string{"wapper:nodes"}}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := env.Dir
	_, err = dyn(t, env.ConfigFor("edge-1")).Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).List(context.Background(), metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("user without RBAC: want Forbidden, got %v", err)
	}
	if !strings.Contains(err.Error(), `"edge-1"`) {
		t.Errorf("error does not name the user: %v", err)
	}
	if err := env.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("run folder %s not removed: %v", dir, err)
	}
	if err := env.Stop(); err != nil {
		t.Errorf("second stop: %v", err)
	}
}

// TestTypedPluginAccepted writes a MapperPlugin built in Go, undefaulted,
// as wapper-cloud or a test would, and the image form with its digest.
func TestTypedPluginAccepted(t *testing.T) {
	env := k8stest.Shared(t)
	c := dyn(t, env.Config()).Resource(mapperPluginsGVR)
	p := &v1alpha1.MapperPlugin{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: v1alpha1.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: "modbus-typed"},
		Spec: v1alpha1.MapperPluginSpec{
			Protocols: []string{"modbus", "modbus-rtu"},
			Module:    v1alpha1.Module{Image: "localhost:5000/mappers/modbus:v1", Digest: "sha256:" + strings.Repeat("0", 64)},
			Limits:    v1alpha1.Limits{Instances: 4},
		},
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(context.Background(), &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create typed plugin: %v", err)
	}
}
