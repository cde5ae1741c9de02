package e2e

// wapper-cloud's fleet console in a real browser: a real kube-apiserver,
// bin/wapper-cloud, one bin/wapper-host, Debian's chromium driven headless
// by playwright-core (hack/console/fleet-test.mjs).

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"wapper.dev/wapper/internal/testenv"
)

// fleetRun is what hack/console/fleet-test.mjs prints.
type fleetRun struct {
	Error       string            `json:"error"`
	Errors      []string          `json:"errors"`
	Screenshots map[string]string `json:"screenshots"`
	AskedToken  bool              `json:"askedToken"`
	TokenWhy    string            `json:"tokenWhy"`
	WeakWhy     string            `json:"weakWhy"`
	Nodes       map[string]string `json:"nodes"`
	FilterMatch []string          `json:"filterMatch"`
	NodeFacts   string            `json:"nodeFacts"`
	NodePlugins string            `json:"nodePlugins"`
	DeviceRow   string            `json:"deviceRow"`
	Readings    []string          `json:"readings"`
	Devices     map[string]string `json:"devices"`
	Plugins     map[string]string `json:"plugins"`
}

// fleetViewer creates the ServiceAccount viewer, bound to the
// wapper-fleet-viewer ClusterRole of deploy/cloud/wapper-cloud.yaml, and
// the ServiceAccount nobody with no role, and returns a token of each.
func fleetViewer(t *testing.T, kc kubernetes.Interface, ns string) (viewer, nobody string) {
	t.Helper()
	ctx := context.Background()
	b, err := os.ReadFile(filepath.Join(testenv.Root(), "deploy/cloud/wapper-cloud.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role *rbacv1.ClusterRole
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var r rbacv1.ClusterRole
		if yaml.Unmarshal([]byte(doc), &r) == nil && r.Kind == "ClusterRole" && r.Name == "wapper-fleet-viewer" {
			role = &r
		}
	}
	if role == nil {
		t.Fatal("deploy/cloud/wapper-cloud.yaml has no ClusterRole wapper-fleet-viewer")
	}
	if _, err := kc.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token := func(sa string) string {
		if _, err := kc.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		tr, err := kc.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	viewer, nobody = token("viewer"), token("nobody")
	if _, err := kc.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "fleet-viewer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "viewer", Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return viewer, nobody
}

// TestCloudConsoleBrowser: the fleet console of a real wapper-cloud, with
// node-a's host connected and node-b's Devices but no host. The fleet API
// refuses a missing token (401) and a user without the viewer role (403),
// each with its reason; in chromium the page asks for the token, shows
// node-a connected and in sync with its device online and node-b unseen,
// filters the nodes, shows node-a's page with its plugin's digest and
// readings that change as the page refreshes, every device, and the
// plugin with its devices and nodes. Once node-a's host is killed, the
// fleet shows node-a disconnected.
func TestCloudConsoleBrowser(t *testing.T) {
	node, modules, browser := testenv.Bin(t, "node"), playwright(t), chromium(t)
	out := consoleOutput(t, "fleet")
	c := newCloudEnv(t)
	c.start()
	kc := kubernetes.NewForConfigOrDie(c.env.Config())
	viewer, nobody := fleetViewer(t, kc, c.ns)
	a := saStart(t, t.TempDir(), "--cloud", c.url, "--node", "node-a", "--token-file", c.token("node-a"), "--ca-file", c.ca)
	c.apply(cloudPlugins + "\n---\n" + cloudDevice("a1", "node-a", "20", "thermo") + "\n---\n" + cloudDevice("b1", "node-b", "20", "thermo"))
	running(t, a, c.ns, "a1")
	reportedInCluster(t, c, "a1", "setpoint", "20")

	// The API, as a script would use it.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 30 * time.Second}
	fleet := func(token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, c.url+"/console/api/fleet", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	for _, tc := range []struct {
		token, why string
		code       int
	}{
		{"", "bearer token", 401},
		{"not-a-token", "unauthenticated", 401},
		{nobody, "system:serviceaccount:" + c.ns + ":nobody may not list mapperplugins.mappers.wapper.dev", 403},
	} {
		if code, body := fleet(tc.token); code != tc.code || !strings.Contains(body, tc.why) {
			t.Errorf("fleet with token %.12q: %d %s, want %d with %q", tc.token, code, body, tc.code, tc.why)
		}
	}
	if code, body := fleet(viewer); code != 200 || !strings.Contains(body, `"name":"node-a","link":"connected"`) {
		t.Fatalf("fleet as the viewer: %d %s", code, body)
	}
	// The plugin's entry for node-a reaches MapperPlugin status on its
	// own write, after the device's: wait for it, as the pages show it.
	saEventually(t, "node-a's plugin entry in the fleet", 2*time.Minute, func() error {
		code, body := fleet(viewer)
		var f struct {
			Nodes []struct {
				Name    string
				Plugins []struct{ Name, Phase string }
			}
		}
		if err := json.Unmarshal([]byte(body), &f); code != 200 || err != nil {
			return fmt.Errorf("%d %s", code, body)
		}
		for _, n := range f.Nodes {
			for _, p := range n.Plugins {
				if n.Name == "node-a" && p.Name == "virtual" && p.Phase == "Loaded" {
					return nil
				}
			}
		}
		return fmt.Errorf("nodes: %+v", f.Nodes)
	})
	c.logMu.Lock()
	logged := c.log.String()
	c.logMu.Unlock()
	if got := strings.Count(logged, "fleet console at https://"); got != 1 {
		t.Errorf("wapper-cloud logged the console's address %d times, want once", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(testenv.Root(), "hack/console/fleet-test.mjs"),
		"--url", c.url+"/", "--out", out, "--chromium", browser, "--token", viewer, "--weak", nobody,
		"--node", "node-a", "--device", c.ns+"/a1")
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	cmd.Stderr = testenv.LogWriter(t)
	start := time.Now()
	stdout, err := cmd.Output()
	t.Logf("browser run took %s", time.Since(start).Round(time.Millisecond))
	var r fleetRun
	if jerr := json.Unmarshal(stdout, &r); jerr != nil {
		t.Fatalf("fleet-test.mjs: %v, output not JSON (%v): %s", err, jerr, stdout)
	}
	for _, name := range slices.Sorted(maps.Keys(r.Screenshots)) {
		if st, serr := os.Stat(r.Screenshots[name]); serr != nil || st.Size() == 0 {
			t.Errorf("screenshot %s: %v", name, serr)
		} else {
			t.Logf("screenshot %s: %s", name, r.Screenshots[name])
		}
	}
	if err != nil || r.Error != "" {
		t.Fatalf("fleet-test.mjs: %v: %s", err, r.Error)
	}
	for _, e := range r.Errors {
		// Chromium logs the refused reads before the token is given.
		if !strings.Contains(e, "status of 401") && !strings.Contains(e, "status of 403") {
			t.Errorf("browser: %s", e)
		}
	}
	if !r.AskedToken || !strings.Contains(r.TokenWhy, "bearer token") || !strings.Contains(r.WeakWhy, "nobody may not list") {
		t.Errorf("token form: asked %v, why %q, for the user without the role %q", r.AskedToken, r.TokenWhy, r.WeakWhy)
	}
	for n, want := range map[string][]string{"node-a": {"connected", "in-sync", "1 / 1", "virtual", "loaded"}, "node-b": {"unseen", "0 / 1"}} {
		for _, w := range want {
			if !strings.Contains(r.Nodes[n], w) {
				t.Errorf("nodes row of %s %q lacks %q", n, r.Nodes[n], w)
			}
		}
	}
	if !slices.Equal(r.FilterMatch, []string{"node-a"}) {
		t.Errorf("filter by node-a shows %v", r.FilterMatch)
	}
	if !strings.Contains(r.NodeFacts, "connected") || !strings.Contains(r.NodeFacts, "in sync") || !strings.Contains(r.NodePlugins, "virtual loaded") {
		t.Errorf("node page: facts %q, plugins %q", r.NodeFacts, r.NodePlugins)
	}
	for _, w := range []string{c.ns + "/a1", "ok", "virtual", "temperature", "setpoint 20"} {
		if !strings.Contains(r.DeviceRow, w) {
			t.Errorf("node page device row %q lacks %q", r.DeviceRow, w)
		}
	}
	if len(r.Readings) != 2 {
		t.Errorf("readings on the node page never changed: %v", r.Readings)
	}
	if d := r.Devices[c.ns+"/b1"]; !strings.Contains(d, "node-b") || !strings.Contains(d, "no report") {
		t.Errorf("devices page row of b1 %q, want node-b with no report", d)
	}
	if p := r.Plugins["virtual"]; !strings.Contains(p, "virtual.wasm") || !strings.Contains(p, "node-a loaded") {
		t.Errorf("plugins page row %q, want its module and node-a loaded", p)
	}

	// A host that dies shows as disconnected, since when, with its devices
	// counted still.
	a.kill9()
	saEventually(t, "node-a disconnected in the fleet", 2*time.Minute, func() error {
		code, body := fleet(viewer)
		var f struct {
			Nodes []struct {
				Name, Link string
				Since      time.Time
				Devices    int
			}
		}
		if err := json.Unmarshal([]byte(body), &f); code != 200 || err != nil {
			return fmt.Errorf("%d %s", code, body)
		}
		for _, n := range f.Nodes {
			if n.Name == "node-a" && n.Link == "disconnected" && !n.Since.IsZero() && n.Devices == 1 {
				return nil
			}
		}
		return fmt.Errorf("nodes: %+v", f.Nodes)
	})
}
