package e2e

// A plugin published with `wapper push` to the embedded registry, referenced
// by image and digest from a MapperPlugin, pulled by a real wapper-host and
// run; then the bad cases: a wrong digest, and the registry going away with
// and without a cached module.

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"wapper.dev/wapper/internal/testenv"
)

// startRegistry runs `wapper registry serve` with anonymous reads and one
// pushing user, and returns its address and a stop function.
func startRegistry(t *testing.T, root string) (string, func()) {
	t.Helper()
	cmd := exec.Command(testenv.Artifact(t, "wapper"), "registry", "serve", "--root", root,
		"--listen", "127.0.0.1:0", "--user", "pusher", "--anonymous-read")
	cmd.Env = append(os.Environ(), "WAPPER_REGISTRY_PASSWORD=secret")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				addr <- a
			}
		}
	}()
	select {
	case a := <-addr:
		return a, stop
	case <-time.After(30 * time.Second):
		t.Fatal("registry did not report its address")
		return "", nil
	}
}

func registryPluginManifests(image, digest string) string {
	return fmt.Sprintf(`apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: virtual}
spec:
  protocols: [virtual]
  module: {image: %q, digest: %q}
`, image, digest) + "---\n" + saVirtualDevice("pulled", "pulled-model", 100)
}

func TestHostRunsPluginFromRegistry(t *testing.T) {
	wapper := testenv.Artifact(t, "wapper")
	addr, stopRegistry := startRegistry(t, t.TempDir())
	ref := addr + "/plugins/virtual:v1"
	push := exec.Command(wapper, "push", testenv.Plugin(t, "virtual"), ref, "--plain-http", "-q",
		"-u", "pusher", "-p", "secret", "--protocol", "virtual")
	out, err := push.CombinedOutput()
	if err != nil {
		t.Fatalf("wapper push: %v\n%s", err, out)
	}
	pinned := strings.TrimSpace(string(out))
	_, digest, ok := strings.Cut(pinned, "@")
	if !ok || !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("push printed %q, want REF@sha256:...", out)
	}

	write := func(dir, body string) string {
		saWrite(t, filepath.Join(dir, "plugin.yaml"), body)
		return dir
	}
	running := func(h *saHost) {
		saEventually(t, "the pulled plugin's device reports", 60*time.Second, func() error {
			d, err := h.device("default/pulled")
			if err != nil {
				return err
			}
			if d.twin("count").Reported == "" {
				return fmt.Errorf("no reading yet (state %s)", d.State)
			}
			return nil
		})
	}

	// Pulled by digest, checked, cached, run.
	state := t.TempDir()
	h := saStart(t, state, "--manifests", write(t.TempDir(), registryPluginManifests(ref, digest)), "--registry-plain-http")
	running(h)
	h.stop()

	// A digest that does not match is refused and never run.
	wrong := "sha256:" + strings.Repeat("0", 64)
	bad := saStart(t, t.TempDir(), "--manifests", write(t.TempDir(), registryPluginManifests(ref, wrong)), "--registry-plain-http")
	saEventually(t, "the device is refused with a digest error", 60*time.Second, func() error {
		d, err := bad.device("default/pulled")
		if err != nil {
			return err
		}
		if !strings.Contains(strings.ToLower(d.Reason+d.State), "digest") {
			return fmt.Errorf("state %q reason %q", d.State, d.Reason)
		}
		return nil
	})
	bad.stop()

	// The registry goes away: the cached module still loads.
	stopRegistry()
	h = saStart(t, state, "--manifests", write(t.TempDir(), registryPluginManifests(ref, digest)), "--registry-plain-http")
	running(h)
	h.stop()

	// Unreachable and not cached: a clear error, and the host keeps serving.
	cold := saStart(t, t.TempDir(), "--manifests", write(t.TempDir(), registryPluginManifests(ref, digest)), "--registry-plain-http")
	saEventually(t, "the device reports the unreachable registry", 60*time.Second, func() error {
		d, err := cold.device("default/pulled")
		if err != nil {
			return err
		}
		if !strings.Contains(d.Reason, "unreachable") && !strings.Contains(d.Reason, "not cached") {
			return fmt.Errorf("state %q reason %q", d.State, d.Reason)
		}
		return nil
	})
	if _, err := cold.get("/api/v1/ping", nil); err != nil {
		t.Fatalf("host stopped serving: %v", err)
	}
}
