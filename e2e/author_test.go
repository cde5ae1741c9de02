package e2e

// What a new plugin author does, outside this repo: `wapper plugin new` for
// Go and for Rust, build offline, `wapper plugin test`, `wapper plugin run`
// against a simulated instrument, `wapper push` to the embedded registry and
// to Debian's docker-registry, and a wapper-host that loads the plugin by
// digest from each and reads the instrument.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wapper.dev/wapper/internal/authortest"
	"wapper.dev/wapper/internal/regtest"
	"wapper.dev/wapper/internal/testenv"
)

// wapperCLI runs bin/wapper and returns its output; a failure fails the test.
func wapperCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(testenv.Artifact(t, "wapper"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("wapper %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestAuthorFlow(t *testing.T) {
	testenv.Slow(t, "scaffolds, builds and publishes plugins in Go and Rust")
	embedded, _ := startRegistry(t, t.TempDir())
	docker := regtest.DockerRegistry(t)
	for _, lang := range []string{"go", "rust"} {
		t.Run(lang, func(t *testing.T) {
			inst := authortest.Instrument(t)
			grant := "tcp://" + inst
			// A folder outside the repo, as an author's would be.
			dir := filepath.Join(t.TempDir(), "thermo")
			wapperCLI(t, "plugin", "new", lang, "thermo", "--dir", dir, "--addr", inst)
			mk := exec.Command(testenv.Bin(t, "make"), "test", "build")
			mk.Dir, mk.Env = dir, authortest.OfflineEnv(t, lang)
			if out, err := mk.CombinedOutput(); err != nil {
				t.Fatalf("make test build in the new %s project: %v\n%s", lang, err, out)
			}
			wasm := filepath.Join(dir, "thermo.wasm")
			devYAML := filepath.Join(dir, "manifests", "device.yaml")

			wapperCLI(t, "plugin", "inspect", wasm)
			wapperCLI(t, "plugin", "test", wasm, "--device", devYAML, "--grant", grant)
			if out := wapperCLI(t, "plugin", "run", wasm, "--device", devYAML, "--grant", grant, "--read", "temperature", "--write", "setpoint=23.5"); !strings.Contains(out, "thermo-1 temperature 21.5") || !strings.Contains(out, "thermo-1 setpoint 23.5") {
				t.Fatalf("plugin run printed:\n%s", out)
			}

			dev, err := os.ReadFile(devYAML)
			if err != nil {
				t.Fatal(err)
			}
			for _, reg := range []struct {
				name, addr string
				creds      []string
			}{
				{"embedded", embedded, []string{"-u", "pusher", "-p", "secret"}},
				{"docker-registry", docker, nil},
			} {
				ref := reg.addr + "/authors/thermo-" + lang + ":v1"
				args := append([]string{"push", wasm, ref, "--plain-http", "-q", "--protocol", "thermo", "--grant", grant}, reg.creds...)
				pinned := strings.TrimSpace(wapperCLI(t, args...))
				_, digest, ok := strings.Cut(pinned, "@")
				if !ok || !strings.HasPrefix(digest, "sha256:") {
					t.Fatalf("push to %s printed %q, want REF@sha256:...", reg.name, pinned)
				}
				// The same module and settings give the same digest.
				if again := strings.TrimSpace(wapperCLI(t, args...)); again != pinned {
					t.Fatalf("a second push to %s gave %s, the first %s", reg.name, again, pinned)
				}

				// A host loads it by digest and reads the instrument.
				plugin := fmt.Sprintf(`apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: thermo}
spec:
  protocols: [thermo]
  module: {image: %q, digest: %q}
  grants:
    network: [%q]
`, ref, digest, grant)
				manifests := t.TempDir()
				saWrite(t, filepath.Join(manifests, "plugin.yaml"), plugin)
				saWrite(t, filepath.Join(manifests, "device.yaml"), string(dev))
				h := saStart(t, t.TempDir(), "--manifests", manifests, "--registry-plain-http")
				saEventually(t, "thermo-1 read through the plugin pulled from "+reg.name, 2*time.Minute, func() error {
					d, err := h.device("default/thermo-1")
					if err != nil {
						return err
					}
					if got := d.twin("temperature").Reported; got != "21.5" {
						return fmt.Errorf("temperature %q (phase %s, reason %q)", got, d.Phase, d.Reason)
					}
					return nil
				})
				h.stop()
			}
		})
	}
}
