package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"
)

// The stages of wapper-host's shutdown, in order: every component of a
// stage is stopped (its context ends) only after every component of the
// stages before it has returned. See run for what each holds.
const (
	stageInputs  = iota // what brings devices, changes and requests in
	stageOutputs        // what sends device events out
	stageBus            // the MQTT connection the outputs publish on
	stageCore           // the devices manager and what watches it
	numStages
)

// lifecycle runs wapper-host's long-running components in one errgroup.
// A component is a Run(ctx) error that returns once ctx has ended and
// everything it started has stopped, nil on a clean stop. The first
// component to fail, or the end of the parent context (a signal), begins
// the shutdown; Wait then stops the stages in order and returns the first
// failure.
type lifecycle struct {
	g      *errgroup.Group
	stop   context.Context // ends on a signal or at the first failure
	stages [numStages]stage
	log    *slog.Logger
	// onStop is called once the shutdown begins (it starts the
	// --shutdown-timeout clock).
	onStop func()

	mu      sync.Mutex
	running map[string]int // components whose Run has not returned, by name
}

type stage struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// newLifecycle returns a lifecycle whose shutdown begins when ctx ends.
func newLifecycle(ctx context.Context, log *slog.Logger, onStop func()) *lifecycle {
	l := &lifecycle{log: log, onStop: onStop, running: map[string]int{}}
	l.g, l.stop = errgroup.WithContext(ctx)
	for i := range l.stages {
		// A stage's context ends only when Wait says so, not with ctx.
		l.stages[i].ctx, l.stages[i].cancel = context.WithCancel(context.WithoutCancel(ctx))
	}
	return l
}

// Go runs a component in a stage; a failure begins the shutdown, and Wait
// returns it prefixed with name.
func (l *lifecycle) Go(st int, name string, run func(context.Context) error) {
	s := &l.stages[st]
	s.wg.Add(1)
	l.mu.Lock()
	l.running[name]++
	l.mu.Unlock()
	l.g.Go(func() error {
		defer s.wg.Done()
		err := run(s.ctx)
		l.mu.Lock()
		if l.running[name]--; l.running[name] == 0 {
			delete(l.running, name)
		}
		l.mu.Unlock()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
}

// Fail begins the shutdown with err, as a component failing at start
// would: run's setup uses it for what fails after components started.
// Wait returns err unless another failure came first.
func (l *lifecycle) Fail(err error) { l.g.Go(func() error { return err }) }

// Running returns the names of the components still running, sorted.
func (l *lifecycle) Running() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	names := make([]string, 0, len(l.running))
	for n := range l.running {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Wait waits for the shutdown to begin, stops the stages in order, and
// returns the first failure (nil after a signal with no failure).
func (l *lifecycle) Wait() error {
	<-l.stop.Done()
	if l.onStop != nil {
		l.onStop()
	}
	for i := range l.stages {
		s := &l.stages[i]
		s.cancel()
		s.wg.Wait()
		l.log.Debug("shutdown: stage stopped", "stage", i, "still-running", l.Running())
	}
	return l.g.Wait()
}
