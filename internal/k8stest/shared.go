package k8stest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"wapper.dev/wapper/deploy/crds"
	"wapper.dev/wapper/internal/testenv"
)

var shared struct {
	once sync.Once
	env  *Env
	err  error
}

// Shared returns the test binary's cluster, started on first use with every
// CRD in deploy/crds installed. Without the binaries it fails the test under
// CI=true and skips it elsewhere; any other start-up error fails the test
// (and every later caller) with the servers' logs. Pair it with Run in
// TestMain so that the cluster stops when the tests end.
func Shared(t testing.TB) *Env {
	t.Helper()
	shared.once.Do(func() {
		all, err := crds.All()
		if err != nil {
			shared.err = err
			return
		}
		shared.env, shared.err = Start(context.Background(), Options{CRDs: all})
	})
	switch {
	case errors.Is(shared.err, ErrBinariesMissing):
		testenv.Missing(t, "a kube-apiserver and etcd build", "run hack/k8s/ensure-k8s-bins.sh (make test runs it)")
	case shared.err != nil:
		t.Fatalf("start the test cluster: %v", shared.err)
	}
	return shared.env
}

// Run runs the tests, then stops the shared cluster if one was started.
// Use it from TestMain: os.Exit(k8stest.Run(m)).
func Run(m *testing.M) int {
	code := m.Run()
	if shared.env != nil {
		if err := shared.env.Stop(); err != nil {
			fmt.Printf("k8stest: stop: %v\n", err)
		}
	}
	return code
}

// Namespace creates a namespace named after the test (plus a random
// suffix) and asks to delete it when the test ends. No controller-manager
// runs here, so a deleted namespace stays Terminating with its objects in
// it: tests get isolation from fresh names, never from deletion.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	cs, err := kubernetes.NewForConfig(e.Config())
	if err != nil {
		t.Fatalf("k8s client: %v", err)
	}
	base := strings.ToLower(strings.NewReplacer("/", "-", "_", "-", " ", "-").Replace(t.Name()))
	base = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return -1
	}, base)
	if len(base) > 40 {
		base = base[:40]
	}
	name := strings.Trim(base, "-") + "-" + randomHex(3)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}
