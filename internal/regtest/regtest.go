// Package regtest starts registries for tests: wapper's embedded one in
// process, the wapper binary as a separate process, and Debian's
// docker-registry as an independent peer. Registry, host and end-to-end
// tests share it.
package regtest

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/registry/auth"
	"wapper.dev/wapper/registry/client"
	"wapper.dev/wapper/registry/server"
	"wapper.dev/wapper/registry/store"
)

// User and Password are the credential every test registry accepts.
const (
	User     = "wapper"
	Password = "secret-for-tests"
)

// Registry is a running embedded registry.
type Registry struct {
	// Addr is host:port on loopback.
	Addr  string
	Store *store.Store
}

// Start runs the embedded registry in process on a loopback port, with a
// fresh store, until the test ends.
func Start(t testing.TB, anonymousRead bool) *Registry {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: server.New(server.Config{
		Store:         st,
		Auth:          auth.Static{User: User, Password: Password},
		AnonymousRead: anonymousRead,
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("regtest: close registry server: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("regtest: close registry store: %v", err)
		}
	})
	return &Registry{Addr: ln.Addr().String(), Store: st}
}

// ClientOptions returns client options for a loopback test registry.
func ClientOptions() client.Options {
	return client.Options{PlainHTTP: true, Username: User, Password: Password, DockerConfig: filepath.Join(os.TempDir(), "wapper-no-such-docker-config.json")}
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// WapperBin builds the wapper command once per test binary and returns its
// path.
func WapperBin(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "wapper-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "wapper")
		cmd := exec.Command("go", "build", "-o", buildPath, "./registry/cmd/wapper")
		cmd.Dir = testenv.Root()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build wapper: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// Proc is a registry running as a separate process.
type Proc struct {
	Addr string
	Cmd  *exec.Cmd
}

// Kill sends SIGKILL and waits for the process.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Kill()
	_ = p.Cmd.Wait()
}

// Serve runs `wapper registry serve --root root` on a free loopback port
// (or on addr when given) and waits until it listens. The process is
// killed when the test ends.
func Serve(t testing.TB, root, addr string, extra ...string) *Proc {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	args := append([]string{"registry", "serve", "--root", root, "--listen", addr, "--user", User}, extra...)
	cmd := exec.Command(WapperBin(t), args...)
	cmd.Env = append(os.Environ(), "WAPPER_REGISTRY_PASSWORD="+Password)
	cmd.Stderr = testWriter{t}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Proc{Cmd: cmd}
	t.Cleanup(p.Kill)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("wapper registry serve exited before listening: %v", err)
	}
	p.Addr = strings.TrimSpace(strings.TrimPrefix(line, "listening on "))
	return p
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// DockerRegistry starts Debian's docker-registry (2.8) on a free loopback
// port with a temporary config and storage, without authentication.
func DockerRegistry(t testing.TB) string {
	t.Helper()
	bin := testenv.Bin(t, "docker-registry")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = testWriter{t}, testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// Wait for the port by polling /v2/; the minute only bounds a broken
	// setup, it is no threshold of what the tests check.
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			if err := resp.Body.Close(); err != nil {
				t.Logf("regtest: close /v2/ response: %v", err)
			}
			return addr
		}
	}
	t.Fatalf("docker-registry did not answer on %s within a minute", addr)
	return ""
}

// DeadAddr returns a loopback address where nothing listens: a port that
// was free a moment ago.
func DeadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
