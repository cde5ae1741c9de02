package main

// Tests of the built binary (bin/wapper-host, `go build -o bin/
// ./host/cmd/wapper-host`): how it stops, and how it refuses a damaged
// state database.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"wapper.dev/wapper/host/store"
	"wapper.dev/wapper/internal/hostproc"
	"wapper.dev/wapper/internal/testenv"
)

// shutdownHost is a running bin/wapper-host.
type shutdownHost struct {
	*hostproc.Proc
	http string
}

// startShutdownHost starts bin/wapper-host with JSON logs and the given
// arguments after --state-dir; it does not wait for anything.
func startShutdownHost(t *testing.T, state string, args ...string) *shutdownHost {
	t.Helper()
	bin := testenv.Artifact(t, "wapper-host")
	return &shutdownHost{Proc: hostproc.Start(t, bin, append([]string{"--state-dir", state, "--log-format", "json", "--mqtt-listen", ""}, args...)...)}
}

// waitExit waits for the process to exit, at most within.
func (h *shutdownHost) waitExit(t *testing.T, within time.Duration, after string) {
	t.Helper()
	select {
	case <-h.Done():
	case <-time.After(within):
		t.Fatalf("wapper-host still running %s after %s", within, after)
	}
}

// exitCode is the exit status, or -1 when killed by a signal.
func (h *shutdownHost) exitCode() int {
	var ee *exec.ExitError
	if errors.As(h.Err(), &ee) {
		return ee.ExitCode()
	}
	if h.Err() != nil {
		return -1
	}
	return 0
}

func eventually(t *testing.T, what string, within time.Duration, h *shutdownHost, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	var err error
	for time.Now().Before(deadline) {
		select {
		case <-h.Done():
			t.Fatalf("wapper-host exited (%v) while waiting for %s", h.Err(), what)
		default:
		}
		if err = fn(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s: %v", what, err)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// stuckManifests writes a folder with the faulty test plugin and a device
// whose read sleeps ten minutes in WASI, under a call deadline of five
// (the longest a MapperPlugin may ask for): a plugin call that nothing
// ends during the test.
func stuckManifests(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	yaml := `apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: faulty}
spec:
  protocols: [faulty]
  module: {file: faulty.wasm}
  limits: {instances: 1, callTimeout: 5m}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: faulty, namespace: default}
spec:
  protocol: faulty
  properties:
    - {name: n, type: INT, accessMode: ReadOnly}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: stuck, namespace: default}
spec:
  deviceModelRef: {name: faulty}
  properties:
    - name: n
      collectCycle: 50
      visitors: {protocolName: faulty, configData: {fault: sleep, ms: 600000}}
`
	if err := os.WriteFile(filepath.Join(dir, "stuck.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startStuck starts wapper-host on stuckManifests and waits until the
// stuck read is in progress: the plugin's read counters (single or batched,
// wapper_read or wapper_read_many) count calls as they start, and nothing
// else reads.
func startStuck(t *testing.T, args ...string) *shutdownHost {
	t.Helper()
	pluginDir := filepath.Dir(testenv.TestPlugin(t, "faulty"))
	httpAddr := freePort(t)
	h := startShutdownHost(t, t.TempDir(), append([]string{"--manifests", stuckManifests(t), "--plugin-dir", pluginDir,
		"--http-listen", httpAddr}, args...)...)
	eventually(t, "the stuck read to begin", 60*time.Second, h, func() error {
		resp, err := http.Get("http://" + httpAddr + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "wapper_plugin_calls_total{") && (strings.Contains(line, `export="wapper_read"`) || strings.Contains(line, `export="wapper_read_many"`)) &&
				strings.Contains(line, `plugin="faulty"`) && !strings.HasSuffix(line, " 0") {
				return nil
			}
		}
		return errors.New("no wapper_read call yet")
	})
	return h
}

// TestSIGTERMWithStuckPlugin: SIGTERM ends wapper-host within its
// --shutdown-timeout although a plugin call is stuck where no deadline
// reaches it, and the log names the device left behind.
func TestSIGTERMWithStuckPlugin(t *testing.T) {
	h := startStuck(t, "--shutdown-timeout", "2s")
	if err := h.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	h.waitExit(t, 30*time.Second, "SIGTERM with --shutdown-timeout 2s")
	if len(h.Logged("stopping; send the signal again to exit at once")) != 1 {
		t.Fatalf("no stopping record")
	}
	left := h.Logged("devices did not stop in time: their loops are still in plugin calls")
	forced := h.Logged("shutdown did not finish within --shutdown-timeout; exiting without waiting further (see the warnings above for what was left)")
	t.Logf("exit status %d; devices left behind logged: %v; forced exit logged: %v", h.exitCode(), len(left) == 1, len(forced) == 1)
	switch {
	case len(left) == 1:
		if devs := fmt.Sprint(left[0]["devices"]); !strings.Contains(devs, "default/stuck") {
			t.Fatalf("devices left behind: %s, want default/stuck", devs)
		}
		if len(forced) == 0 && h.exitCode() != 0 {
			t.Fatalf("exit status %d after a bounded shutdown", h.exitCode())
		}
	case len(forced) == 1:
		// Another close was stuck too: the timeout ended the process.
		if h.exitCode() != 1 {
			t.Fatalf("exit status %d after the shutdown timeout, want 1", h.exitCode())
		}
	default:
		t.Fatalf("neither the device left behind nor the forced exit was logged")
	}
}

// TestSecondSignalExitsAtOnce: while a shutdown waits (here for a stuck
// plugin call, with a long --shutdown-timeout), a second signal ends
// wapper-host at once with status 1.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	h := startStuck(t, "--shutdown-timeout", "10m")
	if err := h.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the shutdown to begin", 30*time.Second, h, func() error {
		if len(h.Logged("stopping; send the signal again to exit at once")) == 0 {
			return errors.New("not stopping yet")
		}
		return nil
	})
	if err := h.Cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	h.waitExit(t, 30*time.Second, "a second signal")
	if h.exitCode() != 1 || len(h.Logged("second signal: exiting without finishing the shutdown")) != 1 {
		t.Fatalf("exit status %d, want 1 with the second signal logged", h.exitCode())
	}
}

// damagedState writes a state database with a Device and its twins, as a
// host that ran leaves it, and overwrites the leaf page of the twins
// bucket that holds the device's first twin.
func damagedState(t *testing.T) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	model := `{"apiVersion":"devices.kubeedge.io/v1beta1","kind":"DeviceModel","metadata":{"name":"m","namespace":"default"},"spec":{"protocol":"virtual","properties":[{"name":"p","type":"INT","accessMode":"ReadWrite"}]}}`
	var objs []store.Object
	objs = append(objs, store.Object{Source: "manifests", Kind: "DeviceModel", Key: "default/m", JSON: []byte(model)})
	var reported []store.Reported
	now := time.Unix(1700000000, 0)
	for i := range 150 {
		name := fmt.Sprintf("d%03d", i)
		dev := fmt.Sprintf(`{"apiVersion":"devices.kubeedge.io/v1beta1","kind":"Device","metadata":{"name":%q,"namespace":"default"},"spec":{"deviceModelRef":{"name":"m"},"properties":[{"name":"p"}]}}`, name)
		objs = append(objs, store.Object{Source: "manifests", Kind: "Device", Key: "default/" + name, JSON: []byte(dev)})
		reported = append(reported, store.Reported{Device: "default/" + name, Property: "p", Value: fmt.Sprint(i), Time: now})
	}
	if err := st.ReplaceObjects("manifests", objs); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveReported(reported); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := st.SetDesired(fmt.Sprintf("default/d%03d", i), "p", "7", "rest", false, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "state.db")
	// Find the leaf page of the reported values of default/d000 with
	// bbolt's page layout: the bucket's root, then first children.
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	ps := db.Info().PageSize
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var leaf uint64
	err = db.View(func(tx *bolt.Tx) error {
		id := uint64(tx.Bucket([]byte("store")).Bucket([]byte("reported")).Root())
		for {
			info, err := tx.Page(int(id))
			if err != nil {
				return err
			}
			switch info.Type {
			case "branch":
				id = binary.NativeEndian.Uint64(raw[int(id)*ps+16+8:])
			case "leaf":
				leaf = id
				return nil
			default:
				return fmt.Errorf("page %d is %s", id, info.Type)
			}
		}
	})
	db.Close()
	if err != nil || leaf == 0 {
		t.Fatalf("no leaf page of the reported bucket: %v", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(bytes.Repeat([]byte{0x5a}, ps), int64(leaf)*int64(ps)); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

// TestDamagedStateExits: on a state database with a damaged data page,
// wapper-host exits at once with status 1 and an error that names the
// file and says to restore it or move it aside; the file stays as it was.
func TestDamagedStateExits(t *testing.T) {
	dir, path := damagedState(t)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := startShutdownHost(t, dir, "--http-listen", freePort(t))
	h.waitExit(t, 30*time.Second, "start on a damaged state database")
	out := h.Logs()
	if h.exitCode() != 1 {
		t.Fatalf("exit status %d, want 1", h.exitCode())
	}
	for _, want := range []string{"wapper-host: state database is damaged: " + path, "from a backup", "move it aside"} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q", want)
		}
	}
	after, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("state.db changed by a refused start (%v)", err)
	}
}
