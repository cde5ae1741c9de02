// Package testproc runs the server processes a test depends on (etcd,
// kube-apiserver, cloudcore, edgecore), each with its log in a file, and
// picks the loopback ports they listen on.
//
// A process is started from a goroutine locked to its OS thread, so that
// Pdeathsig kills it if the test binary dies without stopping it, and in
// its own process group.
package testproc

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Proc is one running child process.
type Proc struct {
	// Name names the process in messages.
	Name string
	// LogPath is the file its stdout and stderr go to.
	LogPath string

	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Options are the optional parts of a process's start.
type Options struct {
	// Dir is the working folder (default: the caller's).
	Dir string
	// Env is added to the caller's environment.
	Env []string
}

// Start starts bin with args, its output appended to logPath.
func Start(name, bin, logPath string, o Options, args ...string) (*Proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("testproc: %s log: %w", name, err)
	}
	p := &Proc{Name: name, LogPath: logPath, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = o.Dir
	if len(o.Env) > 0 {
		p.cmd.Env = append(os.Environ(), o.Env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	started := make(chan error, 1)
	go func() {
		// The thread stays locked (and alive) until the child exits.
		runtime.LockOSThread()
		if err := p.cmd.Start(); err != nil {
			started <- err
			logf.Close()
			close(p.done)
			return
		}
		started <- nil
		p.err = p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("testproc: start %s: %w", name, err)
	}
	return p, nil
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM and waits for the process to exit; one that ignores
// it for 15 s is killed, and Stop then returns an error.
func (p *Proc) Stop() error {
	if ok, _ := p.Exited(); ok {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(15 * time.Second):
	}
	p.Kill()
	return fmt.Errorf("testproc: %s ignored SIGTERM and was killed", p.Name)
}

// Kill sends SIGKILL (a crash, as kill -9) and waits for the exit.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Tail returns the last lines of the process's log.
func (p *Proc) Tail(lines int) string { return Tail(p.LogPath, lines) }

// Tail returns the last lines of a file, or why it cannot be read.
func Tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}
