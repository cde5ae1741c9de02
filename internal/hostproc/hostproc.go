// Package hostproc runs a built binary, such as bin/wapper-host, as a
// process of a test and keeps what it writes, so that the test can wait for
// it, read its JSON log records and see its output when it fails.
package hostproc

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// maxLine is the longest output line kept; a longer one ends the capture.
const maxLine = 1 << 20

// Proc is a running process whose stdout and stderr are captured together,
// line by line. Its methods are safe for concurrent use.
type Proc struct {
	// Cmd is the started command; use Cmd.Process to signal it.
	Cmd *exec.Cmd

	done chan struct{}
	err  error // of Wait, once done is closed

	mu  sync.Mutex
	log bytes.Buffer
}

// Start starts bin with args, its stdout and stderr both captured, and
// registers a cleanup that kills the process if it still runs and logs its
// output when the test failed. It does not wait for anything else; a
// failure to start fails the test.
func Start(t testing.TB, bin string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Cmd: exec.Command(bin, args...), done: make(chan struct{})}
	pr, pw := io.Pipe()
	p.Cmd.Stdout, p.Cmd.Stderr = pw, pw
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	captured := make(chan struct{})
	go func() {
		defer close(captured)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, maxLine), maxLine)
		for sc.Scan() {
			p.mu.Lock()
			p.log.Write(sc.Bytes())
			p.log.WriteByte('\n')
			p.mu.Unlock()
		}
		// Past a line too long, keep draining so that the process never
		// blocks on a full pipe.
		io.Copy(io.Discard, pr)
	}()
	// done waits for the capture too, so that Logs holds the last lines
	// once the process is seen to have exited.
	go func() { p.err = p.Cmd.Wait(); pw.Close(); <-captured; close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.Cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), p.Logs())
		}
	})
	return p
}

// Done is closed once the process has exited, its status is known and all
// its output is in Logs.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is what Cmd.Wait returned; it is meaningful only after Done is closed.
func (p *Proc) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Logs returns the output captured so far, one line per line written.
func (p *Proc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// Logged returns the JSON log records captured so far whose msg is msg.
func (p *Proc) Logged(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(p.Logs(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}
