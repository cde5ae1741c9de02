package cli

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// tree returns a small command tree: root (runnable, --n, log flags) with
// group "grp" holding "leaf" (one argument) and "fail" (a failure).
func tree() *cobra.Command {
	var n int
	var log Log
	root := &cobra.Command{Use: "tool", Args: cobra.NoArgs, RunE: func(*cobra.Command, []string) error {
		if n < 0 {
			return Usagef("--n %d: want 0 or more", n)
		}
		return nil
	}}
	root.Flags().IntVar(&n, "n", 0, "a number")
	AddLogFlags(root.Flags(), &log)
	grp := &cobra.Command{Use: "grp"}
	grp.AddCommand(
		&cobra.Command{Use: "leaf ARG", Args: cobra.ExactArgs(1), RunE: func(*cobra.Command, []string) error { return nil }},
		&cobra.Command{Use: "fail", RunE: func(*cobra.Command, []string) error { return errors.New("it broke") }},
	)
	root.AddCommand(grp)
	return root
}

func TestRunExitStatus(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string // in stderr
	}{
		{nil, ExitOK, ""},
		{[]string{"--help"}, ExitOK, ""},
		{[]string{"-h"}, ExitOK, ""},
		{[]string{"grp", "--help"}, ExitOK, ""},
		{[]string{"grp", "leaf", "--help"}, ExitOK, ""},
		{[]string{"grp", "leaf", "x"}, ExitOK, ""},
		{[]string{"--bogus"}, ExitUsage, "tool: unknown flag: --bogus\nRun 'tool --help' for usage."},
		{[]string{"--n", "x"}, ExitUsage, `invalid argument "x" for "--n"`},
		{[]string{"--n", "-1"}, ExitUsage, "tool: --n -1: want 0 or more"},
		{[]string{"--log-format", "xml"}, ExitUsage, "want text or json"},
		{[]string{"--log-level", "loud"}, ExitUsage, "want debug, info, warn or error"},
		{[]string{"extra"}, ExitUsage, `unknown command "extra" for "tool"`},
		{[]string{"grp", "laef"}, ExitUsage, `unknown command "laef" for "tool grp"; did you mean leaf?`},
		{[]string{"grp", "leaf"}, ExitUsage, "Run 'tool grp leaf --help' for usage."},
		{[]string{"grp", "fail"}, ExitFailure, "tool: it broke\n"},
	} {
		var out bytes.Buffer
		root := tree()
		root.SetOut(&bytes.Buffer{})
		code := Run(context.Background(), root, tc.args, &out)
		if code != tc.code || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d with %q", tc.args, code, out.String(), tc.code, tc.want)
		}
		if tc.code == ExitFailure && strings.Contains(out.String(), "--help") {
			t.Errorf("%q: a failure that is not a usage error points to --help: %q", tc.args, out.String())
		}
	}
}

func TestLogFlags(t *testing.T) {
	var l Log
	cmd := &cobra.Command{Use: "d"}
	AddLogFlags(cmd.Flags(), &l)
	if l.Level.String() != "info" || l.Format != FormatText {
		t.Fatalf("defaults %s %s, want info text", l.Level.String(), l.Format)
	}
	if err := cmd.Flags().Parse([]string{"--log-level", "warn", "--log-format", "json"}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := l.Logger(&buf)
	log.Info("hidden")
	log.Warn("shown", "k", 1)
	if got := buf.String(); strings.Contains(got, "hidden") || !strings.HasPrefix(got, `{"time":`) || !strings.Contains(got, `"msg":"shown","k":1`) {
		t.Fatalf("logged %q", got)
	}
	if !log.Enabled(context.Background(), slog.LevelWarn) || log.Enabled(context.Background(), slog.LevelInfo) {
		t.Fatal("level not applied")
	}
}
