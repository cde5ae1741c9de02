// Package authortest sets the scene of a plugin author's flow for tests:
// the environment of an offline build of a generated plugin project, and
// a simulated instrument speaking the line protocol that the generated
// projects drive. Both `wapper plugin new` tests (registry/plugincli) and
// the end-to-end author flow (e2e) use it.
package authortest

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"wapper.dev/wapper/internal/testenv"
)

// OfflineEnv returns the environment of a build of a generated project in
// lang ("go" or "rust") with no network and an empty module or crate
// cache, so that the project must carry everything it needs. It handles a
// missing toolchain as testenv.Missing does.
func OfflineEnv(t testing.TB, lang string) []string {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "GOFLAGS", "GOPROXY", "GOMODCACHE", "GOWORK", "CARGO_HOME", "CARGO_TARGET_DIR", "RUSTC", "RUSTDOC", "CARGO":
		default:
			env = append(env, kv)
		}
	}
	tmp := t.TempDir()
	switch lang {
	case "go":
		env = append(env,
			"GO="+testenv.Bin(t, "go"),
			"GOPROXY=off", "GOSUMDB=off", "GONOSUMDB=*", "GOWORK=off", "GOTOOLCHAIN=local",
			// readonly: go.mod as written must be complete; an empty module
			// cache: nothing may come from a download made before.
			"GOFLAGS=-mod=readonly -modcacherw", "GOMODCACHE="+filepath.Join(tmp, "gomodcache"))
	case "rust":
		testenv.Bin(t, "/usr/bin/cargo")
		testenv.Bin(t, "/usr/bin/rustc")
		testenv.Bin(t, "rust-lld")
		if _, err := os.Stat("/usr/lib/rustlib/wasm32-wasi/lib"); err != nil {
			testenv.Missing(t, "Debian's Rust std for wasm32-wasi", "run `hack/rust-toolchain.sh install` (libstd-rust-dev-wasm32, lld-14)")
		}
		// An empty CARGO_HOME: no crates.io index or crate is there.
		env = append(env, "CARGO_HOME="+filepath.Join(tmp, "cargo-home"), "CARGO_NET_OFFLINE=true")
	default:
		t.Fatalf("authortest: no offline build environment for language %q", lang)
	}
	return env
}

// Instrument serves, on a free loopback port until the test ends, the
// line protocol of the generated projects' driver, SCPI style: "TEMP?"
// answers 21.5, "SETP?" the setpoint (20 at first), "SETP V" sets it and
// answers OK, anything else "ERR unknown command ...". It returns its
// address.
func Instrument(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ln.Close(); err != nil {
			t.Logf("authortest: close instrument listener: %v", err)
		}
	})
	var mu sync.Mutex
	setpoint := "20"
	answer := func(cmd string) string {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case cmd == "TEMP?":
			return "21.5"
		case cmd == "SETP?":
			return setpoint
		case strings.HasPrefix(cmd, "SETP "):
			setpoint = strings.TrimPrefix(cmd, "SETP ")
			return "OK"
		}
		return "ERR unknown command " + cmd
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := c.Write([]byte(answer(strings.TrimSpace(sc.Text())) + "\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}
