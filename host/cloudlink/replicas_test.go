package cloudlink_test

import (
	"context"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"wapper.dev/wapper/host/cloudlink"
	"wapper.dev/wapper/linkproto"
)

// TestSeveralCloudURLs: with --cloud listing two replicas, each
// reconnect goes to the next one, and a replica that refuses the node
// (409, another replica serves it) is tried again after its Retry-After,
// counted as "elsewhere".
func TestSeveralCloudURLs(t *testing.T) {
	var mu sync.Mutex
	var order []string
	refuse := func(name string, code int) *httptest.Server {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != linkproto.LinkPath {
				http.NotFound(w, r)
				return
			}
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			w.Header().Set("Retry-After", "1")
			http.Error(w, "wapper-cloud: node n is served by wapper-cloud replica r9", code)
		}))
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv
	}
	a, b := refuse("a", http.StatusConflict), refuse("b", http.StatusServiceUnavailable)
	pool := x509.NewCertPool()
	pool.AddCert(a.Certificate())
	pool.AddCert(b.Certificate())
	tlsCfg := a.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tlsCfg.RootCAs = pool

	db, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	reg := prometheus.NewRegistry()
	l, err := cloudlink.New(cloudlink.Options{
		URL: a.URL + ", " + b.URL, Node: "n", Token: "tok", DB: db, TLS: tlsCfg, Registerer: reg,
		Sink: cloudlink.SinkFunc(func(context.Context, cloudlink.Set) error { return nil }),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3500*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	// Three attempts in 3.5 s: Retry-After (1 s) is honoured, not the
	// 0.5 s first backoff.
	if len(order) < 2 || len(order) > 4 {
		t.Fatalf("%d attempts in %s: %v", len(order), time.Since(start), order)
	}
	for i := 1; i < len(order); i++ {
		if order[i] == order[i-1] {
			t.Fatalf("attempts did not alternate between the URLs: %v", order)
		}
	}
	if got := disconnects(t, reg, "elsewhere"); got != float64(len(order)) {
		t.Fatalf("elsewhere disconnects %v, attempts %d", got, len(order))
	}
}

// disconnects reads wapper_cloudlink_disconnects_total{reason} from reg.
func disconnects(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "wapper_cloudlink_disconnects_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "reason" && lp.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no disconnect reason %q", reason)
	return 0
}

// TestCheckURLList: each URL of a list is checked.
func TestCheckURLList(t *testing.T) {
	if err := cloudlink.CheckURL("https://a:8443,https://b:8443"); err != nil {
		t.Fatal(err)
	}
	if err := cloudlink.CheckURL("https://a:8443,http://b:8443"); err == nil || !strings.Contains(err.Error(), "http://b:8443") {
		t.Fatalf("a plain-HTTP URL in a list: %v", err)
	}
	if err := cloudlink.CheckURL(" , "); err == nil {
		t.Fatal("an empty list accepted")
	}
}
