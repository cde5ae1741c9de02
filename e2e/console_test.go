package e2e

// The device console in a real browser: bin/wapper-host on
// examples/standalone, Debian's chromium driven headless by playwright-core
// (hack/console/console-test.mjs, installed by
// hack/console/ensure-playwright.sh into ~/.cache/wapper).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"wapper.dev/wapper/internal/testenv"
)

// consoleRun is what hack/console/console-test.mjs prints.
type consoleRun struct {
	Error       string            `json:"error"`
	AskedToken  bool              `json:"askedToken"`
	TokenWhy    string            `json:"tokenWhy"`
	Errors      []string          `json:"errors"`
	Screenshots map[string]string `json:"screenshots"`
	Devices     []string          `json:"devices"`
	ListRow     string            `json:"listRow"`
	FilterMatch []string          `json:"filterMatch"`
	FilterNone  []string          `json:"filterNone"`
	PlotPoints  []int             `json:"plotPoints"`
	Live        string            `json:"live"`
	BadWrite    string            `json:"badWrite"`
	Write       string            `json:"write"`
	Reported    string            `json:"reported"`
	Plugins     []string          `json:"plugins"`
}

// playwright returns the node_modules folder holding playwright-core, or
// handles it as missing.
func playwright(t testing.TB) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(testenv.Root(), "hack/console/ensure-playwright.sh"), "--no-install").Output()
	if err != nil {
		testenv.Missing(t, "playwright-core (npm)", "run hack/console/ensure-playwright.sh (make test runs it)")
	}
	return filepath.Join(strings.TrimSpace(string(out)), "node_modules")
}

// chromium returns Debian's chromium ($CHROMIUM if set), or handles it as
// missing.
func chromium(t testing.TB) string {
	t.Helper()
	p := os.Getenv("CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if _, err := os.Stat(p); err != nil {
		testenv.Missing(t, "chromium", "run `make deps` (hack/deps.sh installs Debian's chromium)")
	}
	return p
}

// consoleOutput is where a test's screenshots go: $WAPPER_TEST_OUTPUT/NAME,
// or bin/test-output/NAME (kept after the test, unlike t.TempDir).
func consoleOutput(t testing.TB, name string) string {
	t.Helper()
	base := os.Getenv("WAPPER_TEST_OUTPUT")
	if base == "" {
		base = filepath.Join(testenv.Root(), "bin", "test-output")
	}
	dir := filepath.Join(base, name)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestConsoleBrowser: the console of a real wapper-host in chromium. The
// list shows the thermostat and filters it; its page plots the
// temperature as it is read; a desired setpoint the device cannot take
// shows the API's reason, and 23.5 shows "applied" and becomes the
// reported value (checked over REST too). The host logs the console's
// address. Run twice: on an open host, and on one that wants the token
// for reads too (--http-auth-reads), where the page asks for it and sends
// it on every request, the event stream included.
func TestConsoleBrowser(t *testing.T) {
	env := consoleEnv{node: testenv.Bin(t, "node"), modules: playwright(t), chromium: chromium(t), out: consoleOutput(t, "console")}
	t.Run("open", func(t *testing.T) { env.run(t, "open", "") })
	t.Run("token", func(t *testing.T) { env.run(t, "token", "console-test-token") })
}

type consoleEnv struct{ node, modules, chromium, out string }

// consoleDevice reads a device over REST with the token, if any.
func consoleDevice(h *saHost, token, key string) (saDevice, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+h.http+"/api/v1/device/"+key, nil)
	if err != nil {
		return saDevice{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return saDevice{}, err
	}
	defer resp.Body.Close()
	var body struct {
		Device saDevice `json:"device"`
		Error  string   `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return saDevice{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return saDevice{}, fmt.Errorf("status %d: %s", resp.StatusCode, body.Error)
	}
	return body.Device, nil
}

func (env consoleEnv) run(t *testing.T, name, token string) {
	args := []string{"--manifests", saManifests(t, nil)}
	if token != "" {
		file := filepath.Join(t.TempDir(), "http-token")
		if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--http-token-file", file, "--http-auth-reads")
	}
	h := saStart(t, t.TempDir(), args...)
	if got := h.Logged("console at http://" + h.http + "/"); len(got) != 1 || got[0]["level"] != "INFO" {
		t.Errorf("wapper-host logged %v for the console's address, want one INFO line \"console at http://%s/\"", got, h.http)
	}
	saEventually(t, "the thermostat read", 60*time.Second, func() error {
		d, err := consoleDevice(h, token, "default/thermostat")
		if err == nil && (d.Phase != "Running" || d.twin("temperature").Reported == "") {
			err = errors.New("not read yet: " + d.Phase)
		}
		return err
	})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, env.node, filepath.Join(testenv.Root(), "hack/console/console-test.mjs"),
		"--url", "http://"+h.http+"/", "--out", filepath.Join(env.out, name), "--chromium", env.chromium, "--token", token)
	cmd.Env = append(os.Environ(), "NODE_PATH="+env.modules)
	cmd.Stderr = testenv.LogWriter(t)
	start := time.Now()
	stdout, err := cmd.Output()
	t.Logf("browser run took %s", time.Since(start).Round(time.Millisecond))
	var r consoleRun
	if jerr := json.Unmarshal(stdout, &r); jerr != nil {
		t.Fatalf("console-test.mjs: %v, output not JSON (%v): %s", err, jerr, stdout)
	}
	for _, name := range slices.Sorted(maps.Keys(r.Screenshots)) {
		p := r.Screenshots[name]
		if st, serr := os.Stat(p); serr != nil || st.Size() == 0 {
			t.Errorf("screenshot %s: %v", name, serr)
		} else {
			t.Logf("screenshot %s: %s", name, p)
		}
	}
	if err != nil || r.Error != "" {
		t.Fatalf("console-test.mjs: %v: %s", err, r.Error)
	}
	for _, e := range r.Errors {
		// Chromium logs the refused write (400) and, before the token
		// is given, the refused reads (401).
		if !strings.Contains(e, "status of 400") && !(token != "" && strings.Contains(e, "status of 401")) {
			t.Errorf("browser: %s", e)
		}
	}

	if r.AskedToken != (token != "") || (token != "" && !strings.Contains(r.TokenWhy, "Authorization: Bearer")) {
		t.Errorf("token form shown: %v (%q), want %v with the API's reason", r.AskedToken, r.TokenWhy, token != "")
	}
	if !slices.Contains(r.Devices, "default/thermostat") {
		t.Errorf("device list %v, want default/thermostat", r.Devices)
	}
	for _, want := range []string{"default/thermostat", "Running", "virtual", "temperature", "setpoint"} {
		if !strings.Contains(r.ListRow, want) {
			t.Errorf("list row %q lacks %q", r.ListRow, want)
		}
	}
	if !slices.Equal(r.FilterMatch, []string{"default/thermostat"}) || len(r.FilterNone) != 0 {
		t.Errorf("filter: %v for its name, %v for no match", r.FilterMatch, r.FilterNone)
	}
	if len(r.PlotPoints) != 2 || r.PlotPoints[1] <= r.PlotPoints[0] {
		t.Errorf("temperature plot points %v, want growing over 3 s", r.PlotPoints)
	}
	if r.Live != "live" {
		t.Errorf("event stream indicator %q, want live", r.Live)
	}
	if !strings.HasPrefix(r.BadWrite, "failed: ") || !strings.Contains(r.BadWrite, `"warm" is not a valid DOUBLE`) {
		t.Errorf("refused write shows %q, want the API's reason", r.BadWrite)
	}
	if r.Write != "applied" || r.Reported != "23.5" {
		t.Errorf("setpoint 23.5: outcome %q, reported %q", r.Write, r.Reported)
	}
	// The plugin's row: its state, its limits (examples/standalone's) and
	// its call latency, as the thermostat has been read by then.
	if len(r.Plugins) != 1 || !strings.Contains(r.Plugins[0], "virtual") || !strings.Contains(r.Plugins[0], "loaded") ||
		!strings.Contains(r.Plugins[0], "64 MiB, 2 instances, 2s per call") || !strings.Contains(r.Plugins[0], " mean, ") {
		t.Errorf("plugins page rows %q, want virtual loaded with its limits and call latency", r.Plugins)
	}

	// The write went through the REST API to the device.
	d, err := consoleDevice(h, token, "default/thermostat")
	if err != nil {
		t.Fatal(err)
	}
	if tw := d.twin("setpoint"); tw.Desired != "23.5" || tw.Reported != "23.5" || tw.AppliedSeq != tw.DesiredSeq || tw.DesiredSeq == 0 {
		t.Errorf("setpoint twin over REST: %+v", tw)
	}
}
