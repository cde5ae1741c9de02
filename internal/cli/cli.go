// Package cli holds the command-line conventions that wapper's three
// binaries (wapper-host, wapper-cloud and wapper) share, so that they
// behave alike:
//
//   - one library, cobra, for every command and subcommand;
//   - --help and -h print the help and exit 0, on every command;
//   - a bad flag, a bad flag value, an unknown subcommand or a wrong number
//     of arguments prints "NAME: the reason" and a pointer to --help, and
//     exits 2 ([ExitUsage]); a command reports a bad setting it finds
//     itself the same way by returning a [UsageError] (see [Usagef]);
//   - any other error prints "NAME: the reason" and exits 1;
//   - daemons take --log-level and --log-format through [AddLogFlags].
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Exit statuses of the binaries.
const (
	// ExitOK is a clean finish, and --help.
	ExitOK = 0
	// ExitFailure is a failure while running.
	ExitFailure = 1
	// ExitUsage is a command line that cannot be run: a bad flag or
	// value, an unknown subcommand, a wrong number of arguments.
	ExitUsage = 2
)

// UsageError is an error in the command line: the binary exits with
// [ExitUsage].
type UsageError struct{ Err error }

// Error returns the reason.
func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the reason.
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a [UsageError] formatted as fmt.Errorf does (%w keeps
// the chain).
func Usagef(format string, a ...any) error {
	return &UsageError{Err: fmt.Errorf(format, a...)}
}

// IsUsage reports whether err is (or wraps) a [UsageError].
func IsUsage(err error) bool {
	var u *UsageError
	return errors.As(err, &u)
}

// Prepare applies the conventions to root and every command below it:
// cobra prints neither errors nor usage on failure ([Run] prints the
// error), and flag and argument errors become [UsageError]s. A command with
// subcommands and no Args of its own refuses an unknown subcommand (cobra
// does so only on the root; elsewhere it printed the help and exited 0),
// and prints its help when run alone.
// Call it once the tree is complete.
func Prepare(root *cobra.Command) {
	root.SilenceErrors = true
	root.SilenceUsage = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{Err: err} })
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.SilenceErrors, c.SilenceUsage = true, true
		c.Args = usageArgs(c.Args)
		if !c.Runnable() && c.HasSubCommands() {
			// cobra checks the arguments of runnable commands only.
			c.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// usageArgs wraps a command's argument check so that its errors are
// usage errors; nil stands for cobra's default.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		var err error
		switch {
		case check != nil:
			err = check(c, args)
		case c.HasSubCommands() && len(args) > 0:
			err = fmt.Errorf("unknown command %q for %q%s", args[0], c.CommandPath(), suggest(c, args[0]))
		}
		if err != nil && !IsUsage(err) {
			err = &UsageError{Err: err}
		}
		return err
	}
}

// suggest names the subcommands of c close to arg, as cobra does for the
// root.
func suggest(c *cobra.Command, arg string) string {
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2 // cobra's default
	}
	s := c.SuggestionsFor(arg)
	if len(s) == 0 {
		return ""
	}
	return "; did you mean " + strings.Join(s, " or ") + "?"
}

// Run prepares root (see [Prepare]), runs it with args and returns the
// exit status. Errors go to stderr as "NAME: reason", NAME being root's
// name; usage errors add where to find the help.
func Run(ctx context.Context, root *cobra.Command, args []string, stderr io.Writer) int {
	Prepare(root)
	root.SetArgs(args)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	name := root.Name()
	if IsUsage(err) {
		if cmd == nil {
			cmd = root
		}
		fmt.Fprintf(stderr, "%s: %v\nRun '%s --help' for usage.\n", name, err, cmd.CommandPath())
		return ExitUsage
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	return ExitFailure
}

// Main runs root on the process's arguments and exits with the status
// [Run] returns.
func Main(ctx context.Context, root *cobra.Command) {
	os.Exit(Run(ctx, root, os.Args[1:], os.Stderr))
}
