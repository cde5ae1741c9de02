// Command gensdk writes the SDK archive that `wapper plugin new` embeds:
//
//	go run ./registry/plugincli/scaffold/internal/gensdk -root . -out registry/plugincli/scaffold/sdk.txtar
//
// It is run by go generate in package scaffold and by make build.
package main

import (
	"flag"
	"fmt"
	"os"

	"wapper.dev/wapper/registry/plugincli/scaffold/internal/sdkarchive"
)

func main() {
	root := flag.String("root", ".", "the wapper repository")
	out := flag.String("out", "sdk.txtar", "the archive to write")
	flag.Parse()
	data, err := sdkarchive.Build(*root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gensdk:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, data, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gensdk:", err)
		os.Exit(1)
	}
}
