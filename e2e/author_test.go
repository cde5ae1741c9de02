package e2e

// What a new plugin author does, outside this repo: `wapper plugin new` for
// Go and for Rust, build offline, `wapper plugin test`, `wapper plugin run`
// against a simulated instrument, `wapper push` to the embedded registry and
// to Debian's docker-registry, and a wapper-host that loads the plugin by
// digest from each and reads the instrument.

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"wapper.dev/wapper/internal/testenv"
)

// startInstrument serves a line-based TCP instrument, SCPI style: "TEMP?"
// answers 21.5, "SETP?" the setpoint, "SETP V" sets it and answers OK.
func startInstrument(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(freePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var mu sync.Mutex
	setpoint := "20"
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					cmd := strings.TrimSpace(sc.Text())
					mu.Lock()
					var answer string
					switch {
					case cmd == "TEMP?":
						answer = "21.5"
					case cmd == "SETP?":
						answer = setpoint
					case strings.HasPrefix(cmd, "SETP "):
						setpoint, answer = strings.TrimPrefix(cmd, "SETP "), "OK"
					default:
						answer = "ERR unknown command"
					}
					mu.Unlock()
					fmt.Fprintln(c, answer)
				}
			}()
		}
	}()
	return l.Addr().String()
}

// startDockerRegistry runs Debian's docker-registry, an independent OCI
// registry, with anonymous pushes, and returns its address.
func startDockerRegistry(t *testing.T) string {
	t.Helper()
	bin := testenv.Bin(t, "docker-registry")
	addr := saPort(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	saEventually(t, "docker-registry answers /v2/", time.Minute, func() error {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return addr
}

// authorEnv is the environment of an author's build with no network and
// no module or crate cache: the generated project must carry everything.
func authorEnv(t *testing.T, lang string) []string {
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "GOFLAGS", "GOPROXY", "GOMODCACHE", "GOWORK", "CARGO_HOME", "CARGO_TARGET_DIR", "RUSTC", "RUSTDOC", "CARGO":
		default:
			env = append(env, kv)
		}
	}
	tmp := t.TempDir()
	if lang == "go" {
		return append(env, "GO="+testenv.Bin(t, "go"), "GOPROXY=off", "GOSUMDB=off", "GOWORK=off", "GOTOOLCHAIN=local",
			"GOFLAGS=-mod=readonly -modcacherw", "GOMODCACHE="+filepath.Join(tmp, "gomodcache"))
	}
	testenv.Bin(t, "/usr/bin/cargo")
	testenv.Bin(t, "rust-lld")
	return append(env, "CARGO_HOME="+filepath.Join(tmp, "cargo-home"), "CARGO_NET_OFFLINE=true")
}

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
	docker := startDockerRegistry(t)
	for _, lang := range []string{"go", "rust"} {
		t.Run(lang, func(t *testing.T) {
			inst := startInstrument(t)
			grant := "tcp://" + inst
			// A folder outside the repo, as an author's would be.
			dir := filepath.Join(t.TempDir(), "thermo")
			wapperCLI(t, "plugin", "new", lang, "thermo", "--dir", dir, "--addr", inst)
			mk := exec.Command(testenv.Bin(t, "make"), "test", "build")
			mk.Dir, mk.Env = dir, authorEnv(t, lang)
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
