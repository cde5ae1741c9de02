// Package cli provides wapper's registry commands as a cobra tree: push,
// pull, inspect, tag, ls, and registry (serve, passwd). The wapper binary
// adds them to its root with Commands.
package cli

import (
	"bufio"
	"errors"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Commands returns the registry commands for the wapper root command.
func Commands() []*cobra.Command {
	return []*cobra.Command{pushCmd(), pullCmd(), inspectCmd(), tagCmd(), lsCmd(), registryCmd()}
}

// readPassword reads one line from r, without its line ending.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password on standard input")
	}
	return line, nil
}
