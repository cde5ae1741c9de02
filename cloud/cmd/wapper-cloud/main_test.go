package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"wapper.dev/wapper/cloud/server"
	"wapper.dev/wapper/internal/cli"
)

// errNotServed is what the stand-in server returns, so that a test sees
// that the command got as far as serving.
var errNotServed = errors.New("not served in tests")

// run runs wapper-cloud's command line with a stand-in server that records
// its configuration.
func run(t *testing.T, args ...string) (code int, stdout, stderr string, cfg *server.Config) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newCommand(func(_ context.Context, c server.Config) error {
		cfg = &c
		return errNotServed
	})
	cmd.SetOut(&out)
	code = cli.Run(context.Background(), cmd, args, &errb)
	return code, out.String(), errb.String(), cfg
}

// kubeconfig writes a kubeconfig naming an API server nothing dials in
// these tests.
func kubeconfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	const kc = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHelpExitsZero: --help prints the help and exits 0 on every command.
func TestHelpExitsZero(t *testing.T) {
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			walk(sub, append(append([]string(nil), path...), sub.Name()))
		}
	}
	walk(newCommand(server.Run), nil)
	if len(paths) < 2 {
		t.Fatalf("commands %q, want the root and token at least", paths)
	}
	for _, p := range paths {
		for _, h := range []string{"--help", "-h"} {
			code, out, errs, _ := run(t, append(p, h)...)
			if code != cli.ExitOK || !strings.Contains(out, "Usage:") || errs != "" {
				t.Errorf("wapper-cloud %s %s: exit %d, stdout %q, stderr %q", strings.Join(p, " "), h, code, out, errs)
			}
		}
	}
}

// TestBadFlagsExitTwo: a bad flag or value exits 2 and says what is wrong.
func TestBadFlagsExitTwo(t *testing.T) {
	kc := kubeconfig(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"--workers", "four"}, `invalid argument "four" for "--workers"`},
		{[]string{"--kubeconfig", kc, "--workers", "0"}, "--workers 0: want 1 or more"},
		{[]string{"--kubeconfig", kc, "--workers", "-3"}, "--workers -3: want 1 or more"},
		{[]string{"--kubeconfig", kc, "--status-workers", "0"}, "--status-workers 0: want 1 or more"},
		{[]string{"--kubeconfig", kc, "--tls-cert", "c.pem"}, "--tls-cert and --tls-key go together"},
		{[]string{"--log-format", "xml"}, `invalid argument "xml" for "--log-format" flag: want text or json`},
		{[]string{"serve"}, `unknown command "serve" for "wapper-cloud"`},
		{[]string{"token"}, "accepts 1 arg(s), received 0"},
		{[]string{"token", "a", "b"}, "accepts 1 arg(s), received 2"},
		{[]string{"token", "--listen", ":1", "n"}, "unknown flag: --listen"},
	} {
		code, _, errs, cfg := run(t, tc.args...)
		if code != cli.ExitUsage || !strings.HasPrefix(errs, "wapper-cloud: ") || !strings.Contains(errs, tc.want) || !strings.Contains(errs, "--help") {
			t.Errorf("%q: exit %d, stderr %q; want 2 with %q", tc.args, code, errs, tc.want)
		}
		if cfg != nil {
			t.Errorf("%q: served despite the bad command line", tc.args)
		}
	}
}

// TestFlagsReachServer: the flags, --workers 1 first, reach the server's
// configuration as given; the defaults are the packages' own.
func TestFlagsReachServer(t *testing.T) {
	kc := kubeconfig(t)
	code, _, errs, cfg := run(t, "--kubeconfig", kc, "--workers", "1", "--window", "2", "--status-qps", "7", "--kube-api-qps", "9", "--tls-hosts", "a,b", "--log-format", "json")
	if code != cli.ExitFailure || !strings.Contains(errs, errNotServed.Error()) || cfg == nil {
		t.Fatalf("exit %d, stderr %q; want the stand-in server's failure", code, errs)
	}
	if cfg.Workers != 1 || cfg.Hub.Window != 2 || cfg.Status.QPS != 7 || cfg.Rest.QPS != 9 || cfg.Rest.Burst != 18 || strings.Join(cfg.TLSHosts, " ") != "a b" {
		t.Fatalf("config %+v", cfg)
	}
	_, _, _, cfg = run(t, "--kubeconfig", kc)
	if cfg == nil || cfg.Workers != server.DefaultWorkers || cfg.Listen != server.DefaultListen || cfg.Namespace != server.DefaultNamespace || cfg.Status.Workers == 0 {
		t.Fatalf("default config %+v", cfg)
	}
}

// TestDeployArgsParse: the flags deploy/cloud/wapper-cloud.yaml passes are
// all known to the command.
func TestDeployArgsParse(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "cloud", "wapper-cloud.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, line := range strings.Split(string(b), "\n") {
		if a, ok := strings.CutPrefix(strings.TrimSpace(line), "- --"); ok {
			args = append(args, "--"+a)
		}
	}
	if len(args) == 0 {
		t.Fatal("no container args found in the Deployment")
	}
	if err := newCommand(server.Run).ParseFlags(args); err != nil {
		t.Fatalf("deploy args %q: %v", args, err)
	}
}
