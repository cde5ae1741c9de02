package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"wapper.dev/wapper/internal/hostproc"
	"wapper.dev/wapper/internal/testenv"
)

// saHost is a running bin/wapper-host process.
type saHost struct {
	*hostproc.Proc
	t     testing.TB
	http  string
	mqtt  string
	state string
}

func saPort(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(freePort(t))
}

// saStart starts bin/wapper-host with JSON logs and waits for its REST API.
func saStart(t testing.TB, state string, args ...string) *saHost {
	t.Helper()
	bin := testenv.Artifact(t, "wapper-host")
	h := &saHost{t: t, http: saPort(t), state: state}
	full := []string{"--state-dir", state, "--http-listen", h.http, "--log-format", "json", "--log-level", "debug",
		"--plugin-dir", filepath.Dir(testenv.Plugin(t, "virtual"))}
	hasMQTT := false
	for _, a := range args {
		hasMQTT = hasMQTT || a == "--mqtt-broker" || a == "--mqtt-listen"
	}
	if !hasMQTT {
		h.mqtt = saPort(t)
		full = append(full, "--mqtt-listen", h.mqtt)
	}
	full = append(full, args...)
	h.Proc = hostproc.Start(t, bin, full...)
	t.Cleanup(h.stop) // before the Proc's cleanup, which then logs the output if the test failed
	saEventually(t, "wapper-host answers /api/v1/ping", 60*time.Second, func() error {
		select {
		case <-h.Done():
			t.Fatalf("wapper-host exited early:\n%s", h.Logs())
		default:
		}
		_, err := h.get("/api/v1/ping", nil)
		return err
	})
	return h
}

func (h *saHost) stop() {
	select {
	case <-h.Done():
		return
	default:
	}
	h.Cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-h.Done():
	case <-time.After(20 * time.Second):
		h.t.Errorf("wapper-host did not stop within 20s of SIGINT")
		h.Cmd.Process.Kill()
		<-h.Done()
	}
}

func (h *saHost) kill9() {
	h.Cmd.Process.Signal(syscall.SIGKILL)
	<-h.Done()
}

// do sends a request and decodes the JSON answer into out; a status other
// than 2xx is an error carrying the body.
func (h *saHost) do(method, path string, body string, out any) (int, error) {
	req, err := http.NewRequest(method, "http://"+h.http+path, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		var e struct {
			StatusCode int    `json:"statusCode"`
			Error      string `json:"error"`
		}
		if jerr := json.Unmarshal(b, &e); jerr != nil || e.Error == "" || e.StatusCode != resp.StatusCode {
			return resp.StatusCode, fmt.Errorf("status %d with a body that is not a JSON error: %s", resp.StatusCode, b)
		}
		return resp.StatusCode, fmt.Errorf("status %d: %s", resp.StatusCode, e.Error)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %s: %v", b, err)
		}
	}
	return resp.StatusCode, nil
}

func (h *saHost) get(path string, out any) (int, error) { return h.do("GET", path, "", out) }

type saTwin struct {
	Property     string    `json:"property"`
	Type         string    `json:"type"`
	Desired      string    `json:"desired"`
	DesiredSeq   uint64    `json:"desiredSeq"`
	AppliedSeq   uint64    `json:"appliedSeq"`
	Reported     string    `json:"reported"`
	ReportedTime time.Time `json:"reportedTime"`
	Error        string    `json:"error"`
}

type saDevice struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Source    string   `json:"source"`
	Plugin    string   `json:"plugin"`
	Phase     string   `json:"phase"`
	Reason    string   `json:"reason"`
	State     string   `json:"state"`
	Twins     []saTwin `json:"twins"`
}

func (d saDevice) twin(p string) saTwin {
	for _, t := range d.Twins {
		if t.Property == p {
			return t
		}
	}
	return saTwin{}
}

func (h *saHost) devices() map[string]saDevice {
	var resp struct {
		Devices []saDevice `json:"devices"`
	}
	if _, err := h.get("/api/v1/devices", &resp); err != nil {
		h.t.Fatalf("GET /api/v1/devices: %v", err)
	}
	out := map[string]saDevice{}
	for _, d := range resp.Devices {
		out[d.Namespace+"/"+d.Name] = d
	}
	return out
}

func (h *saHost) device(key string) (saDevice, error) {
	var resp struct {
		Device saDevice `json:"device"`
	}
	_, err := h.get("/api/v1/device/"+key, &resp)
	return resp.Device, err
}

func saEventually(t testing.TB, what string, within time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	var err error
	for time.Now().Before(deadline) {
		if err = fn(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s: %v", what, err)
}

// saManifests copies examples/standalone into a new folder and adds the
// given extra files.
func saManifests(t testing.TB, extra map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(testenv.Root(), "examples/standalone")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		saWrite(t, filepath.Join(dir, e.Name()), string(b))
	}
	for name, body := range extra {
		saWrite(t, filepath.Join(dir, name), body)
	}
	return dir
}

// saWrite writes a file atomically (rename), as editors and tools do.
func saWrite(t testing.TB, path, body string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// saVirtualDevice returns a Device (and its model) on the virtual plugin.
func saVirtualDevice(name, model string, collectMS int) string {
	return fmt.Sprintf(`apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: %[2]s, namespace: default}
spec:
  protocol: virtual
  properties:
    - {name: count, type: INT, accessMode: ReadOnly}
    - {name: level, type: INT, accessMode: ReadWrite}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: %[1]s, namespace: default}
spec:
  deviceModelRef: {name: %[2]s}
  properties:
    - name: count
      collectCycle: %[3]d
      reportCycle: %[3]d
      visitors: {protocolName: virtual, configData: {kind: counter}}
    - name: level
      collectCycle: %[3]d
      reportCycle: %[3]d
      visitors: {protocolName: virtual, configData: {kind: setpoint, initial: 0}}
`, name, model, collectMS)
}

func netListen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
