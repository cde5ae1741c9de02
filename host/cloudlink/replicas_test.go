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
// (409, another replica serves it, or 503) is tried again no sooner than
// its Retry-After, counted as "elsewhere".
func TestSeveralCloudURLs(t *testing.T) {
	const attempts = 4
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var mu sync.Mutex
	var order []string
	var at []time.Time
	refuse := func(name string, code int) *httptest.Server {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != linkproto.LinkPath {
				http.NotFound(w, r)
				return
			}
			mu.Lock()
			order = append(order, name)
			at = append(at, time.Now())
			if len(order) == attempts {
				cancel()
			}
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
		MinBackoff: 100 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Sink: cloudlink.SinkFunc(func(context.Context, cloudlink.Set) error { return nil }),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(order) < attempts {
		t.Fatalf("%d attempts in a minute: %v", len(order), order)
	}
	for i := 1; i < len(order); i++ {
		if order[i] == order[i-1] {
			t.Fatalf("attempts did not alternate between the URLs: %v", order)
		}
		// Retry-After (1 s) is honoured, not the 0.1 s backoff.
		if gap := at[i].Sub(at[i-1]); gap < time.Second {
			t.Fatalf("attempt %d came %v after the one refused with Retry-After: 1", i+1, gap)
		}
	}
	if got := disconnects(t, reg, "elsewhere"); got < attempts-1 || got > float64(len(order)) {
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
