package cli_test

import (
	"encoding/json"
	"strings"
	"testing"

	"wapper.dev/wapper/internal/regtest"
	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/registry/cli"
)

// push runs `wapper push` of the virtual plugin to ref and returns the
// digest it printed.
func push(t *testing.T, ref string, flags ...string) (string, error) {
	t.Helper()
	out, err := run(t, regtest.Password+"\n", append(append([]string{"push", testenv.Plugin(t, "virtual"), ref}, flags...), creds()...)...)
	if err != nil {
		return "", err
	}
	_, digest, ok := strings.Cut(strings.TrimSpace(out), "@")
	if !ok {
		t.Fatalf("push printed %q", out)
	}
	return digest, nil
}

// TestPushIsReproducible: the same module and flags give the same manifest
// digest on every push; --created sets a time, and only then is one
// recorded.
func TestPushIsReproducible(t *testing.T) {
	r := regtest.Start(t, false)
	flags := []string{"--protocol", "virtual", "--grant", "tcp://127.0.0.1:502"}
	d1, err := push(t, r.Addr+"/plugins/virtual:a", flags...)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := push(t, r.Addr+"/other/virtual:b", flags...)
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 {
		t.Fatalf("two pushes of the same module and flags: %s and %s, want one digest", d1, d2)
	}
	out, err := run(t, regtest.Password+"\n", append([]string{"inspect", "--json", r.Addr + "/plugins/virtual:a"}, creds()...)...)
	if err != nil {
		t.Fatal(err)
	}
	var in cli.Inspection
	if err := json.Unmarshal([]byte(out), &in); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(in.Manifest), "created") {
		t.Errorf("manifest records a time without --created: %s", in.Manifest)
	}

	// --created (the module check skipped, to save its time: it does not
	// touch the time).
	unchecked := append(flags, "--no-check")
	d0, err := push(t, r.Addr+"/plugins/virtual:u", unchecked...)
	if err != nil {
		t.Fatal(err)
	}
	when := append(unchecked, "--created", "2026-11-23T13:51:36Z")
	d3, err := push(t, r.Addr+"/plugins/virtual:c", when...)
	if err != nil {
		t.Fatal(err)
	}
	d4, err := push(t, r.Addr+"/plugins/virtual:d", when...)
	if err != nil {
		t.Fatal(err)
	}
	if d3 == d0 || d3 != d4 {
		t.Fatalf("--created: digests %s, %s (without: %s); want one digest, another than without", d3, d4, d0)
	}
	out, err = run(t, regtest.Password+"\n", append([]string{"inspect", "--json", r.Addr + "/plugins/virtual:c"}, creds()...)...)
	if err != nil || !strings.Contains(out, "2026-11-23T13:51:36Z") {
		t.Errorf("inspect after --created: %v\n%s", err, out)
	}
	if _, err := push(t, r.Addr+"/plugins/virtual:e", append(flags, "--created", "yesterday")...); err == nil || !strings.Contains(err.Error(), "RFC 3339") {
		t.Errorf("--created yesterday: %v, want a refusal asking for RFC 3339", err)
	}
}

// TestPushRefusesBadGrantsAndNoProtocol: grants are checked with the
// host's parser, and a plugin needs a protocol; nothing is uploaded.
func TestPushRefusesBadGrantsAndNoProtocol(t *testing.T) {
	r := regtest.Start(t, false)
	for _, c := range []struct {
		flags []string
		want  []string
	}{
		{[]string{"--protocol", "virtual", "--grant", "tcp:127.0.0.1:502"}, []string{`"tcp:127.0.0.1:502"`, "SCHEME://HOST:PORT"}},
		{[]string{"--protocol", "virtual", "--grant", "127.0.0.1:502"}, []string{`"127.0.0.1:502"`, "SCHEME://HOST:PORT"}},
		{[]string{"--protocol", "virtual", "--grant", "tcp://plc:70000"}, []string{`"tcp://plc:70000"`, "1-65535"}},
		{[]string{"--protocol", "virtual", "--grant", "ftp://plc:21"}, []string{`"ftp://plc:21"`, "tcp, udp or tls"}},
		{[]string{"--protocol", "virtual", "--grant", "/dev/../dev/ttyUSB0"}, []string{"not clean"}},
		{[]string{"--protocol", "virtual", "--grant", "GPIO 17"}, []string{`"GPIO 17"`, "not allowed"}},
		{[]string{"--grant", "tcp://127.0.0.1:502"}, []string{"no protocol", "--protocol"}},
		{[]string{"--no-check", "--grant", "tcp://127.0.0.1:502"}, []string{"no protocol", "--protocol"}},
		{[]string{"--no-check", "--protocol", "has space"}, []string{"--protocol", "has space"}},
	} {
		_, err := push(t, r.Addr+"/p/bad:1", c.flags...)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("push %v: %v, want a refusal naming %q", c.flags, err, w)
				break
			}
		}
	}
	if tags, _ := r.Store.Tags("p/bad"); len(tags) != 0 {
		t.Fatalf("refused pushes uploaded: %v", tags)
	}
	// Every kind of good grant passes.
	if _, err := push(t, r.Addr+"/p/good:1", "--no-check", "--protocol", "virtual", "--grant", "udp://[::1]:1000-2000",
		"--grant", "tcp://*.plant.local:502", "--grant", "/dev/ttyUSB*", "--grant", "GPIO17", "--grant", "gpiochip0:4"); err != nil {
		t.Fatal(err)
	}
}
