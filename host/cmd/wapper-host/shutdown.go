package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// shutdown ends wapper-host on SIGINT or SIGTERM. The first signal cancels
// ctx, which run waits on; from then on the deferred closes have the
// shutdown timeout (--shutdown-timeout) to finish. A second signal, or the
// timeout, exits the process at once with status 1, whatever a plugin is
// doing: a plugin call stuck where no deadline reaches it must never keep
// the host from stopping.
type shutdown struct {
	ctx     context.Context
	cancel  context.CancelFunc
	timeout time.Duration
	log     *slog.Logger
	sigs    chan os.Signal
	began   chan struct{} // closed when the shutdown begins
	over    chan struct{} // closed when run has returned
	once    sync.Once     // closes began
	endOnce sync.Once     // closes over

	mu       sync.Mutex      // guards deadline and left
	deadline time.Time       // when the process exits anyway
	left     func() []string // the components still running, for the timeout's log
}

// reportLeft makes the log of a shutdown that times out name the
// components that left returns.
func (s *shutdown) reportLeft(left func() []string) {
	s.mu.Lock()
	s.left = left
	s.mu.Unlock()
}

// handleSignals starts handling SIGINT and SIGTERM. Defer the returned
// shutdown's end first in run, so that it runs after every other deferred
// close.
func handleSignals(log *slog.Logger, timeout time.Duration) *shutdown {
	s := &shutdown{timeout: timeout, log: log, sigs: make(chan os.Signal, 2), began: make(chan struct{}), over: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	signal.Notify(s.sigs, os.Interrupt, syscall.SIGTERM)
	go s.watch()
	return s
}

func (s *shutdown) watch() {
	select {
	case sig := <-s.sigs:
		s.log.Info("stopping; send the signal again to exit at once", "signal", sig.String(), "shutdown-timeout", s.timeout)
		s.begin()
	case <-s.began: // run returns on its own (an error)
	case <-s.over:
		return
	}
	s.mu.Lock()
	t := time.NewTimer(time.Until(s.deadline))
	left := s.left
	s.mu.Unlock()
	defer t.Stop()
	select {
	case sig := <-s.sigs:
		s.log.Error("second signal: exiting without finishing the shutdown", "signal", sig.String())
		os.Exit(1)
	case <-t.C:
		var running []string
		if left != nil {
			running = left()
		}
		s.log.Error("shutdown did not finish within --shutdown-timeout; exiting without waiting further (see the warnings above for what was left)", "shutdown-timeout", s.timeout, "still-running", running)
		os.Exit(1)
	case <-s.over:
	}
}

// begin starts the shutdown clock (once) and cancels ctx.
func (s *shutdown) begin() {
	s.once.Do(func() {
		s.mu.Lock()
		s.deadline = time.Now().Add(s.timeout)
		s.mu.Unlock()
		close(s.began)
		s.cancel()
	})
}

// closeContext returns the context of a deferred close: it ends a little
// before the process exits anyway, so that the closer can still log what
// it leaves behind. It begins the shutdown if no signal has.
func (s *shutdown) closeContext() (context.Context, context.CancelFunc) {
	s.begin()
	s.mu.Lock()
	deadline := s.deadline
	s.mu.Unlock()
	return context.WithDeadline(context.Background(), deadline.Add(-min(s.timeout/5, 2*time.Second)))
}

// end stops handling signals: the shutdown is complete.
func (s *shutdown) end() {
	s.endOnce.Do(func() {
		close(s.over)
		signal.Stop(s.sigs)
		s.cancel()
	})
}
