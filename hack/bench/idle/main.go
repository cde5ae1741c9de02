// Command idle is the process-per-mapper baseline of `make bench`: the
// smallest native Go process, which waits on stdin so its memory can be
// read, or exits at once with -exit.
package main

import (
	"os"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-exit" {
		return
	}
	buf := make([]byte, 1)
	os.Stdin.Read(buf)
}
