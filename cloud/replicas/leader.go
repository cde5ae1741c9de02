package replicas

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Leader elects, among the replicas, the one that does the work that is
// not per node: planning MapperPlugin rollouts and writing status.rollout.
// It uses client-go's leader election on the Lease LeaderLease, with the
// same identity, duration and renew interval as Nodes, through
// Options.Beat.
type Leader struct {
	opts   Options
	log    *slog.Logger
	leader atomic.Bool
	// OnChange, when set before Run, is called (in its own goroutine)
	// each time this replica becomes or stops being the leader.
	OnChange func(leader bool)
}

// NewLeader returns a Leader; call Run to take part in the election.
// Options.Metrics and OnLost are not used: see BindLeader for its gauge.
func NewLeader(opts Options) (*Leader, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if opts.Kube == nil || opts.Namespace == "" {
		return nil, errors.New("replicas: Options.Kube and Options.Namespace are required")
	}
	l := &Leader{opts: opts, log: opts.Logger.With("replica", opts.Identity)}
	if d := l.renewDeadline(); float64(d) <= leaderelection.JitterFactor*float64(opts.RenewInterval) {
		return nil, fmt.Errorf("lease renew interval %s is too close to the lease duration %s for the leader election: make it at most a third of it", opts.RenewInterval, opts.LeaseDuration)
	}
	return l, nil
}

// IsLeader reports whether this replica leads now.
func (l *Leader) IsLeader() bool { return l.leader.Load() }

// Run takes part in the election until ctx ends, standing again after
// each loss of the leadership, and gives the leadership up on the way
// out. It returns nil.
func (l *Leader) Run(ctx context.Context) error {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: LeaderLease, Namespace: l.opts.Namespace},
		Client:     l.opts.Beat.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: l.opts.Identity},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   l.opts.LeaseDuration,
			RenewDeadline:   l.renewDeadline(),
			RetryPeriod:     l.opts.RenewInterval,
			ReleaseOnCancel: true,
			Name:            LeaderLease,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) { l.set(true) },
				OnStoppedLeading: func() { l.set(false) },
				OnNewLeader: func(id string) {
					if id != l.opts.Identity {
						l.log.Info("replicas: another replica leads", "leader", id)
					}
				},
			},
		})
		if err != nil {
			return err
		}
		le.Run(ctx)
	}
	return nil
}

// renewDeadline is how long the leader keeps trying to renew before it
// steps down: between the renew interval and the lease duration.
func (l *Leader) renewDeadline() time.Duration {
	return l.opts.RenewInterval + (l.opts.LeaseDuration-l.opts.RenewInterval)*2/3
}

func (l *Leader) set(v bool) {
	if l.leader.Swap(v) == v {
		return
	}
	if v {
		l.log.Info("replicas: this replica leads: it plans rollouts and writes status.rollout")
	} else {
		l.log.Info("replicas: this replica no longer leads")
	}
	if l.OnChange != nil {
		go l.OnChange(v)
	}
}
