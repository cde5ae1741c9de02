package controller_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/cloud/controller"
)

// TestRolloutFollower: a replica that does not lead still sends its
// nodes their plugins but writes no status.rollout; once it leads, it
// writes the rollout it planned.
func TestRolloutFollower(t *testing.T) {
	var leads atomic.Bool
	r := newRolloutRig(t, controller.Options{Leader: leads.Load})
	d1 := "sha256:" + strings.Repeat("1", 64)
	r.apply("v1.wasm", d1, `{maxUnavailable: "50%"}`)
	r.h.waitModules(t, r.key, map[string]string{r.n1: "v1.wasm", r.n2: "v1.wasm"})
	time.Sleep(time.Second) // the status writer flushes every millisecond
	if st := r.plugin().Status.Rollout; st.Phase != "" {
		t.Fatalf("a follower wrote status.rollout %+v", st)
	}
	leads.Store(true)
	r.ctl.LeadershipChanged()
	r.rollout(func(st mappersv1alpha1.RolloutStatus) bool {
		return st.Phase == mappersv1alpha1.RolloutProgressing && st.TargetDigest == d1
	})
}
