package modules_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/cloud/modules"
	"wapper.dev/wapper/internal/regtest"
	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/linkproto"
	"wapper.dev/wapper/registry/artifact"
	"wapper.dev/wapper/registry/client"
	"wapper.dev/wapper/registry/fetch"
)

// node is an Authorizer for one node that may fetch every plugin; the
// node credentials themselves are tested with the hub (cloud/server).
type node string

func (n node) Authenticate(http.ResponseWriter, *http.Request) string { return string(n) }

func (n node) Desired(string, string) (linkproto.Item, bool) { return linkproto.Item{}, true }

// TestPinMismatchIsRefused: against the real embedded registry, a module
// matching its pin is served with its digest, and one that does not is a
// definite refusal, 422 naming the pinned and the actual digests, not a 502
// that a host would retry as if the registry were unreachable.
func TestPinMismatchIsRefused(t *testing.T) {
	wasm, err := os.ReadFile(testenv.Plugin(t, "virtual"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := artifact.Build(wasm, artifact.Metadata{ABIMajor: 1, ABIMinor: -1}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	reg := regtest.Start(t, false)
	c, err := client.New(regtest.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Addr + "/plugins/virtual:v1"
	if _, err := c.Push(context.Background(), ref, b); err != nil {
		t.Fatal(err)
	}
	wrong := digest.FromString("not the plugin")
	plugins := map[string]string{"good": b.ManifestDesc.Digest.String(), "bad": wrong.String()}
	pr := prometheus.NewRegistry()
	h := modules.New(modules.Options{
		Auth: node("n1"),
		Plugin: func(name string) (*mappersv1alpha1.MapperPlugin, bool) {
			pin, ok := plugins[name]
			p := &mappersv1alpha1.MapperPlugin{}
			p.Name, p.Spec.Module.Image, p.Spec.Module.Digest = name, ref, pin
			return p, ok
		},
		CacheDir: t.TempDir(), Fetch: fetch.Options{Client: regtest.ClientOptions()}, Registerer: pr,
	})
	get := func(name string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, linkproto.ModulesPath+name, nil))
		return rec
	}

	rec := get("good")
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), wasm) || rec.Header().Get(linkproto.ModuleDigestHeader) != b.WasmDesc.Digest.String() {
		t.Fatalf("good pin: %d %s, digest header %q", rec.Code, firstLine(rec.Body), rec.Header().Get(linkproto.ModuleDigestHeader))
	}

	rec = get("bad")
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != http.StatusUnprocessableEntity {
		t.Fatalf("wrong pin: %d %s; want 422", rec.Code, body)
	}
	for _, d := range []digest.Digest{wrong, b.ManifestDesc.Digest, b.WasmDesc.Digest} {
		if !bytes.Contains(body, []byte(d.String())) {
			t.Errorf("refusal does not name %s: %s", d, body)
		}
	}
	if got := count(t, pr, "mismatch"); got != 1 {
		t.Errorf("mismatch requests counted %v, want 1", got)
	}
	if got := count(t, pr, "error"); got != 0 {
		t.Errorf("a refusal counted as %v pull errors", got)
	}

	// A registry that cannot be reached is still a 502.
	ref = regtest.DeadAddr(t) + "/plugins/virtual:v1"
	if rec := get("bad"); rec.Code != http.StatusBadGateway {
		t.Fatalf("unreachable registry: %d %s; want 502", rec.Code, firstLine(rec.Body))
	}
}

func firstLine(b *bytes.Buffer) string {
	s, _, _ := strings.Cut(b.String(), "\n")
	return s
}

// count reads wapper_cloud_module_requests_total{result}.
func count(t *testing.T, g prometheus.Gatherer, result string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "wapper_cloud_module_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
