package console

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	devicesv1beta1 "github.com/kubeedge/api/apis/devices/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/cloud/controller"
	"wapper.dev/wapper/cloud/hub"
	"wapper.dev/wapper/cloud/status"
	"wapper.dev/wapper/linkproto"
)

// tokens authorizes "good", knows "weak" but forbids it, and refuses the
// rest.
type tokens struct{}

func (tokens) Authorize(_ context.Context, tok string) (string, error) {
	switch tok {
	case "good":
		return "alice", nil
	case "weak":
		return "bob", fmt.Errorf("%w: bob may not list mapperplugins", ErrForbidden)
	case "broken":
		return "", fmt.Errorf("token review: connection refused")
	}
	return "", fmt.Errorf("%w: unknown token", ErrUnauthenticated)
}

func device(name, node string) controller.BoundDevice {
	d := &devicesv1beta1.Device{ObjectMeta: metav1.ObjectMeta{Namespace: "plant", Name: name}}
	d.Spec.NodeName = node
	d.Spec.DeviceModelRef = &corev1.LocalObjectReference{Name: "thermo"}
	d.Spec.Protocol.ProtocolName = "virtual"
	d.Spec.Properties = []devicesv1beta1.DeviceProperty{{Name: "setpoint", Desired: devicesv1beta1.TwinProperty{Value: "21"}}}
	return controller.BoundDevice{Device: d, Plugin: "virtual"}
}

func fixture(t *testing.T) *Console {
	t.Helper()
	now := time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)
	plugin := &mappersv1alpha1.MapperPlugin{ObjectMeta: metav1.ObjectMeta{Name: "virtual"}}
	plugin.Spec.Protocols = []string{"virtual"}
	plugin.Spec.Module.File = "virtual.wasm"
	plugin.Status.Rollout = mappersv1alpha1.RolloutStatus{Phase: mappersv1alpha1.RolloutFailed, UpdatedNodes: 1, TotalNodes: 2,
		FailedNodes: []mappersv1alpha1.FailedNode{{Node: "node-b", Reason: "trapped"}}}
	plugin.Status.Nodes = []mappersv1alpha1.NodeStatus{
		{Node: "node-a", Phase: mappersv1alpha1.PhaseLoaded, Digest: "sha256:aa"},
		{Node: "node-c", Phase: mappersv1alpha1.PhaseFailed, Message: "trapped"},
	}
	unbound := device("orphan", "node-a")
	unbound.Plugin, unbound.Problem = "", "no MapperPlugin provides protocol x"
	return New(Options{
		Now:        func() time.Time { return now },
		Authorizer: tokens{},
		Links: func() []hub.Link {
			return []hub.Link{
				{Node: "node-a", Connected: true, Remote: "10.0.0.1:5555", Since: now.Add(-time.Hour), LastSeen: now, Known: true,
					Desired: 4, Outstanding: 1, InFlight: 1, OldestUnacked: now.Add(-2500 * time.Millisecond)},
				{Node: "node-b", Since: now.Add(-time.Minute), LastSeen: now.Add(-time.Minute)},
			}
		},
		Inventory: func() ([]controller.BoundDevice, []*mappersv1alpha1.MapperPlugin) {
			return []controller.BoundDevice{device("b1", "node-b"), device("a2", "node-a"), device("a1", "node-a"), unbound, device("d1", "node-d")},
				[]*mappersv1alpha1.MapperPlugin{plugin}
		},
		Reported: func(exists func(ns, name string) bool) map[string]status.DeviceState {
			out := map[string]status.DeviceState{}
			for _, r := range []status.DeviceState{
				{Node: "node-a", Report: linkproto.DeviceReport{Namespace: "plant", Name: "a1", State: "ok",
					Twins: []devicesv1beta1.Twin{{PropertyName: "setpoint", Reported: devicesv1beta1.TwinProperty{Value: "21"}}}}},
				{Node: "node-a", Report: linkproto.DeviceReport{Namespace: "plant", Name: "a2", State: "offline"}},
				// Reported by the node b1 ran on before it moved: stale.
				{Node: "node-a", Report: linkproto.DeviceReport{Namespace: "plant", Name: "b1", State: "ok"}},
				{Node: "node-a", Report: linkproto.DeviceReport{Namespace: "plant", Name: "gone", State: "ok"}},
			} {
				if exists(r.Report.Namespace, r.Report.Name) {
					out[r.Report.Namespace+"/"+r.Report.Name] = r
				}
			}
			return out
		},
	})
}

func TestSnapshot(t *testing.T) {
	f := fixture(t).Snapshot()
	var names []string
	for _, n := range f.Nodes {
		names = append(names, n.Name+":"+n.Link)
	}
	if got, want := strings.Join(names, " "), "node-a:connected node-b:disconnected node-c:unseen node-d:unseen"; got != want {
		t.Fatalf("nodes %s, want %s", got, want)
	}
	a := f.Nodes[0]
	if a.InSync || a.Outstanding != 1 || a.InFlight != 1 || a.SyncLagSeconds != 2.5 || a.Devices != 3 || a.Online != 1 || a.Remote != "10.0.0.1:5555" {
		t.Fatalf("node-a: %+v", a)
	}
	if len(a.Plugins) != 1 || a.Plugins[0].Name != "virtual" || a.Plugins[0].Digest != "sha256:aa" {
		t.Fatalf("node-a plugins: %+v", a.Plugins)
	}
	if b := f.Nodes[1]; b.Devices != 1 || b.Online != 0 || b.InSync || b.SyncLagSeconds != 0 {
		t.Fatalf("node-b: %+v", b)
	}
	if c := f.Nodes[2]; len(c.Plugins) != 1 || c.Plugins[0].Phase != mappersv1alpha1.PhaseFailed || c.Devices != 0 {
		t.Fatalf("node-c: %+v", c)
	}
	var devs []string
	for _, d := range f.Devices {
		devs = append(devs, d.Name+":"+d.State)
	}
	if got, want := strings.Join(devs, " "), "a1:ok a2:offline b1: d1: orphan:"; got != want {
		t.Fatalf("devices %s, want %s (b1's report came from another node)", got, want)
	}
	if d := f.Devices[0]; d.Node != "node-a" || d.Model != "thermo" || d.Protocol != "virtual" || d.Plugin != "virtual" ||
		len(d.Twins) != 1 || d.Twins[0].Reported.Value != "21" || d.Desired["setpoint"] != "21" {
		t.Fatalf("a1: %+v", d)
	}
	if d := f.Devices[4]; d.Plugin != "" || !strings.Contains(d.Problem, "protocol x") {
		t.Fatalf("orphan: %+v", d)
	}
	if p := f.Plugins[0]; p.Devices != 4 || p.Rollout.Phase != mappersv1alpha1.RolloutFailed || len(p.Nodes) != 2 {
		t.Fatalf("plugin: %+v", p)
	}
}

func TestServe(t *testing.T) {
	mux := http.NewServeMux()
	fixture(t).Mount(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(path, token string) (int, string, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b), res.Header
	}
	// The pages need no token.
	for path, want := range map[string]string{"/": "console/fleet.js", "/console/fleet.js": "console/api/fleet", "/console/console.css": ".badge", "/console/token.js": "wapperToken"} {
		if code, body, h := get(path, ""); code != 200 || !strings.Contains(body, want) || h.Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s: %d, %q in body: %v", path, code, want, strings.Contains(body, want))
		}
	}
	for _, path := range []string{"/console/index.html", "/console/nope.js", "/console/api/nope"} {
		if code, _, _ := get(path, ""); code != 404 {
			t.Errorf("GET %s: %d, want 404", path, code)
		}
	}
	// The fleet does, and says why it refuses one.
	for tok, want := range map[string]int{"": 401, "wrong": 401, "weak": 403, "broken": 503} {
		code, body, _ := get("/console/api/fleet", tok)
		var e struct{ Error string }
		if code != want || json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
			t.Errorf("fleet with token %q: %d %s, want %d and a JSON error", tok, code, body, want)
		}
	}
	code, body, _ := get("/console/api/fleet", "good")
	var f Fleet
	if code != 200 || json.Unmarshal([]byte(body), &f) != nil || len(f.Nodes) != 4 || len(f.Devices) != 5 {
		t.Fatalf("fleet: %d %s", code, body)
	}
}
