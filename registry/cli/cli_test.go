package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"wapper.dev/wapper/internal/regtest"
	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/registry/auth"
	"wapper.dev/wapper/registry/cli"
)

// run executes `wapper ARGS...` in process and returns stdout.
func run(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "wapper", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(cli.Commands()...)
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func creds() []string {
	return []string{"--plain-http", "-u", regtest.User, "--password-stdin", "-q", "--registry-config", filepath.Join(os.TempDir(), "none.json")}
}

func TestPushInspectPullTagLs(t *testing.T) {
	r := regtest.Start(t, false)
	plugin := testenv.Plugin(t, "virtual")
	pw := regtest.Password + "\n"
	ref := r.Addr + "/plugins/virtual:v1"
	out, err := run(t, pw, append([]string{"push", plugin, ref, "--protocol", "virtual", "--grant", "tcp://127.0.0.1:502"}, creds()...)...)
	if err != nil {
		t.Fatal(err)
	}
	pinned := strings.TrimSpace(out)
	if !strings.Contains(pinned, "@sha256:") {
		t.Fatalf("push printed %q", out)
	}
	out, err = run(t, pw, append([]string{"inspect", "--json", ref}, creds()...)...)
	if err != nil {
		t.Fatal(err)
	}
	var in cli.Inspection
	if err := json.Unmarshal([]byte(out), &in); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !in.Plugin || in.Reference != pinned || in.Metadata.ABIMajor != 1 ||
		strings.Join(in.Metadata.Protocols, ",") != "virtual" || strings.Join(in.Metadata.Grants, ",") != "tcp://127.0.0.1:502" {
		t.Fatalf("inspect: %+v", in)
	}
	dst := filepath.Join(t.TempDir(), "got.wasm")
	if _, err := run(t, pw, append([]string{"pull", pinned, "-o", dst}, creds()...)...); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(plugin)
	got, _ := os.ReadFile(dst)
	if !bytes.Equal(got, want) {
		t.Fatal("pulled module differs")
	}
	if _, err := run(t, pw, append([]string{"tag", ref, "stable"}, creds()...)...); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, pw, append([]string{"ls", r.Addr + "/plugins/virtual"}, creds()...)...)
	if err != nil || out != "stable\nv1\n" {
		t.Fatalf("ls: %q %v", out, err)
	}
}

func TestPushRefusesModulesThatWouldNotLoad(t *testing.T) {
	r := regtest.Start(t, false)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.wasm")
	os.WriteFile(empty, []byte("\x00asm\x01\x00\x00\x00"), 0o644)
	text := filepath.Join(dir, "text.wasm")
	os.WriteFile(text, []byte("hello"), 0o644)
	for file, want := range map[string]string{empty: "wapper_abi_v1", text: "not a WebAssembly module"} {
		_, err := run(t, regtest.Password+"\n", append([]string{"push", file, r.Addr + "/p/bad:1"}, creds()...)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("push %s: want a refusal naming %q, got %v", filepath.Base(file), want, err)
		}
	}
	if tags, _ := r.Store.Tags("p/bad"); len(tags) != 0 {
		t.Fatalf("refused module was uploaded: %v", tags)
	}
}

func TestPasswdLineWorksWithHtpasswd(t *testing.T) {
	out, err := run(t, "s3cret\n", "registry", "passwd", "alice")
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "htpasswd")
	os.WriteFile(f, []byte("# users\n"+out), 0o600)
	h, err := auth.LoadHtpasswd(f)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Check("alice", "s3cret") || h.Check("alice", "wrong") || h.Check("bob", "s3cret") {
		t.Fatal("htpasswd check gave wrong answers")
	}
}

func TestServeNeedsSomeAccess(t *testing.T) {
	_, err := run(t, "", "registry", "serve", "--root", t.TempDir(), "--listen", "127.0.0.1:0")
	if err == nil || !strings.Contains(err.Error(), "--htpasswd") {
		t.Fatalf("want a refusal naming --htpasswd, got %v", err)
	}
}
