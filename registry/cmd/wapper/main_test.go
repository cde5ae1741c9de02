package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"wapper.dev/wapper/internal/cli"
)

// run runs wapper's command line in the test process.
func run(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	code = cli.Run(context.Background(), root, args, &errb)
	return code, out.String(), errb.String()
}

// TestHelpExitsZero: --help prints the help and exits 0 on every command
// and subcommand.
func TestHelpExitsZero(t *testing.T) {
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			walk(sub, append(append([]string(nil), path...), sub.Name()))
		}
	}
	walk(newRoot(), nil)
	if len(paths) < 10 {
		t.Fatalf("only %d commands: %q", len(paths), paths)
	}
	for _, p := range paths {
		code, out, errs := run(append(p, "--help")...)
		if code != cli.ExitOK || !strings.Contains(out, "Usage:") || errs != "" {
			t.Errorf("wapper %s --help: exit %d, stdout %q, stderr %q", strings.Join(p, " "), code, out, errs)
		}
	}
}

// TestUsageErrorsExitTwo: bad flags, unknown commands and wrong arguments
// exit 2 with the reason.
func TestUsageErrorsExitTwo(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"pussh"}, `unknown command "pussh" for "wapper"`},
		{[]string{"registry", "serv"}, `unknown command "serv" for "wapper registry"; did you mean serve?`},
		{[]string{"registry", "serve", "extra"}, `unknown command "extra" for "wapper registry serve"`},
		{[]string{"--log-level", "loud", "ls"}, `invalid argument "loud" for "--log-level" flag`},
		{[]string{"push"}, "wapper push"},
	} {
		code, _, errs := run(tc.args...)
		if code != cli.ExitUsage || !strings.HasPrefix(errs, "wapper: ") || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 with %q", tc.args, code, errs, tc.want)
		}
	}
}

// TestGroupAloneShowsHelp: a command group run alone prints its help and
// exits 0, as before.
func TestGroupAloneShowsHelp(t *testing.T) {
	if code, out, _ := run("registry"); code != cli.ExitOK || !strings.Contains(out, "serve") {
		t.Fatalf("wapper registry: exit %d, stdout %q", code, out)
	}
}
