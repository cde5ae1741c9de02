package authortest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestInstrument: the instrument answers the generated driver's commands
// and keeps the setpoint across connections.
func TestInstrument(t *testing.T) {
	addr := Instrument(t)
	ask := func(cmds ...string) []string {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := bufio.NewReader(c)
		var out []string
		for _, cmd := range cmds {
			if _, err := fmt.Fprintln(c, cmd); err != nil {
				t.Fatal(err)
			}
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, strings.TrimSpace(line))
		}
		return out
	}
	if got, want := ask("TEMP?", "SETP?", "SETP 23.5", "SETP?", "HELLO"), []string{"21.5", "20", "OK", "23.5", "ERR unknown command HELLO"}; !slices.Equal(got, want) {
		t.Errorf("answers %q, want %q", got, want)
	}
	if got := ask("SETP?"); got[0] != "23.5" {
		t.Errorf("setpoint on a new connection %q, want 23.5", got[0])
	}
}

// TestOfflineEnvGo: the Go environment turns the proxy and workspace off
// and uses an empty module cache of its own, whatever the caller's.
func TestOfflineEnvGo(t *testing.T) {
	t.Setenv("GOPROXY", "https://proxy.golang.org")
	t.Setenv("GOFLAGS", "-race")
	env := OfflineEnv(t, "go")
	count := func(prefix string) (n int, last string) {
		for _, kv := range env {
			if strings.HasPrefix(kv, prefix) {
				n, last = n+1, kv
			}
		}
		return n, last
	}
	for _, want := range []string{"GOPROXY=off", "GOWORK=off", "GOFLAGS=-mod=readonly -modcacherw"} {
		k, _, _ := strings.Cut(want, "=")
		if n, last := count(k + "="); n != 1 || last != want {
			t.Errorf("%d %s settings, last %q; want only %q", n, k, last, want)
		}
	}
	if n, cache := count("GOMODCACHE="); n != 1 || !strings.HasPrefix(cache, "GOMODCACHE="+os.TempDir()) {
		t.Errorf("%d module caches, last %q; want one in %s", n, cache, os.TempDir())
	}
}
