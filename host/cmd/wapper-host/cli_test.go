package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wapper.dev/wapper/internal/cli"
)

// runCLI runs wapper-host's command line in the test process. Only
// command lines that fail before run starts anything, or ask for help,
// may be given.
func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	cmd := command()
	cmd.SetOut(&out)
	code = cli.Run(context.Background(), cmd, args, &errb)
	return code, out.String(), errb.String()
}

// TestHelpExitsZero: --help and -h print the help, with every daemon
// convention's flags, and exit 0.
func TestHelpExitsZero(t *testing.T) {
	if n := len(command().Commands()); n != 0 {
		t.Fatalf("wapper-host has %d subcommands; test their --help too", n)
	}
	for _, h := range []string{"--help", "-h"} {
		code, out, errs := runCLI(h)
		if code != cli.ExitOK || errs != "" {
			t.Fatalf("%s: exit %d, stderr %q", h, code, errs)
		}
		for _, flag := range []string{"--log-level", "--log-format", "--memory-limit", "--cloud", "--shutdown-timeout", "auto (64MiB plus 80KiB per device"} {
			if !strings.Contains(out, flag) {
				t.Errorf("%s lacks %s", h, flag)
			}
		}
	}
}

// TestBadCommandLineExitsTwo: a bad flag, value or setting exits 2 with
// the reason, before anything starts (the state folder stays empty).
func TestBadCommandLineExitsTwo(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("t0k3n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "host.yaml")
	if err := os.WriteFile(cfg, []byte("colour: blue\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"extra"}, `unknown command "extra" for "wapper-host"`},
		{[]string{"--log-format", "xml"}, `invalid argument "xml" for "--log-format" flag: want text or json`},
		{[]string{"--log-level", "loud"}, "want debug, info, warn or error"},
		{[]string{"--memory-limit", "lots"}, `invalid argument "lots" for "--memory-limit" flag`},
		{[]string{"--shutdown-timeout", "0s"}, "--shutdown-timeout 0s: want a positive duration"},
		{[]string{"--config", cfg}, `unknown setting "colour"`},
		// The cloud link carries the node's token: never over plain HTTP
		// (it retried forever with a warning).
		{[]string{"--cloud", "http://cloud.example:8443", "--node", "n", "--token-file", tok}, `--cloud "http://cloud.example:8443": want an https:// (or wss://) URL`},
		{[]string{"--cloud", "cloud.example:8443", "--node", "n", "--token-file", tok}, "want an https://"},
		{[]string{"--cloud", "https://", "--node", "n", "--token-file", tok}, "no host"},
		{[]string{"--cloud", "https://cloud.example:8443"}, "--cloud needs --node and --token-file"},
		{[]string{"--node", "n"}, "--node and --token-file need --cloud"},
		{[]string{"--cloud", "https://cloud.example:8443", "--node", "n", "--token-file", tok, "--cloud-keepalive", "20s", "--cloud-timeout", "30s"}, "--cloud-timeout 30s is less than twice --cloud-keepalive 20s"},
		{[]string{"--cloud", "https://cloud.example:8443", "--node", "n", "--token-file", tok, "--cloud-max-backoff", "0s"}, "must be positive"},
	} {
		code, _, errs := runCLI(append([]string{"--state-dir", state}, tc.args...)...)
		if code != cli.ExitUsage || !strings.HasPrefix(errs, "wapper-host: ") || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 with %q", tc.args, code, errs, tc.want)
		}
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("a refused command line created the state folder (%v)", err)
	}
}

// TestCloudURLAccepted: https and wss URLs pass the check.
func TestCloudURLAccepted(t *testing.T) {
	for _, u := range []string{"https://cloud.example:8443", "wss://10.0.0.1:8443/base"} {
		if err := (cloudOptions{url: u, node: "n", tokenFile: "f", keepalive: time.Second, timeout: 3 * time.Second, maxBackoff: time.Second}).validate(); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}
