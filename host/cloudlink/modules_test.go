package cloudlink_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/cloud/server"
	"wapper.dev/wapper/host/cloudlink"
	"wapper.dev/wapper/internal/regtest"
	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/linkproto"
	"wapper.dev/wapper/registry/artifact"
	"wapper.dev/wapper/registry/client"
	"wapper.dev/wapper/registry/fetch"
)

// registry starts wapper's embedded registry on loopback (plain HTTP,
// anonymous reads), pushes the virtual plugin and returns its reference,
// manifest digest and module.
func registry(t *testing.T) (ref string, manifest digest.Digest, wasm []byte) {
	t.Helper()
	wasm, err := os.ReadFile(testenv.Plugin(t, "virtual"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := artifact.Build(wasm, artifact.Metadata{ABIMajor: 1, ABIMinor: -1}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	r := regtest.Start(t, true)
	c, err := client.New(regtest.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	ref = r.Addr + "/plugins/virtual:v1"
	if _, err := c.Push(context.Background(), ref, b); err != nil {
		t.Fatal(err)
	}
	return ref, b.ManifestDesc.Digest, wasm
}

// directFetch is the host's own registry access: here it speaks HTTPS to a
// plain-HTTP registry, so the registry is out of the host's reach while
// the cloud (configured for it) can pull.
type directFetch struct{ dir string }

func (d directFetch) Module(ctx context.Context, p *mappersv1alpha1.MapperPlugin) ([]byte, error) {
	return fetch.Module(ctx, p.Spec.Module.Image, digest.Digest(p.Spec.Module.Digest), d.dir, fetch.Options{Client: client.Options{DockerConfig: filepath.Join(d.dir, "none.json")}})
}

// TestModuleThroughTheCloud: with the registry out of the host's reach, the
// module comes through the cloud, checked by digest and cached; another
// node's credential cannot fetch it.
func TestModuleThroughTheCloud(t *testing.T) {
	ref, manifest, wasm := registry(t)
	c := newCluster(t)
	cl := c.startCloud(t, "", func(cfg *server.Config) {
		cfg.Fetch = fetch.Options{Client: client.Options{PlainHTTP: true, DockerConfig: filepath.Join(t.TempDir(), "none.json")}}
	})
	pluginName := "virtual-" + c.ns
	c.apply(t, names(t, c, `apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: PLUGIN}
spec:
  protocols: [PROTO]
  module: {image: "`+ref+`", digest: "`+manifest.String()+`"}`+"\n---\n"+model+"\n---\n"+device("a1", c.node("a"), "20")))
	dir := t.TempDir()
	a := startHost(t, cl.url, c.node("a"), c.token(t, c.node("a")), cl.ca, filepath.Join(dir, "a.db"), func(o *cloudlink.Options) {
		o.Direct = directFetch{dir: filepath.Join(dir, "direct")}
	})
	set := a.sink.wait(t, "the plugin", func(s cloudlink.Set) bool { return len(s.Plugins) == 1 })
	p := set.Plugins[0]

	if _, err := (directFetch{dir: t.TempDir()}).Module(context.Background(), p); err == nil {
		t.Fatal("the host reaches the registry directly; the test would not exercise the cloud")
	}
	got, err := a.link.Module(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, wasm) {
		t.Fatal("module through the cloud differs from the pushed one")
	}
	if b, ok := fetch.Cached(filepath.Join(dir, "modules"), manifest); !ok || !bytes.Equal(b, wasm) {
		t.Fatal("module not cached under its pin")
	}

	// A node without this plugin is refused, and so is a wrong token.
	tokB := c.token(t, c.node("b"))
	b := startHost(t, cl.url, c.node("b"), tokB, cl.ca, filepath.Join(t.TempDir(), "b.db"), nil)
	waitUntil(t, "node b connected", func() (bool, error) { return b.link.Connected(), nil })
	if _, err := b.link.Module(context.Background(), p); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("node b fetched node a's plugin: %v", err)
	}
	req, _ := http.NewRequest(http.MethodGet, cl.url+linkproto.ModulesPath+pluginName, nil)
	req.Header.Set(linkproto.NodeHeader, c.node("a"))
	req.Header.Set("Authorization", "Bearer wrong")
	tlsCfg, _ := cloudlink.LoadCA(cl.ca)
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong token: %s, want 401", resp.Status)
	}

	// A host whose object pins something else refuses what the cloud
	// checked against its own pin.
	bad := p.DeepCopy()
	bad.Spec.Module.Digest = digest.FromString("not it").String()
	if _, err := a.link.Module(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "refusing it") {
		t.Fatalf("a module checked against another pin: %v, want a refusal", err)
	}

	// With the cloud gone too, the cached module still loads.
	cl.stop()
	got, err = a.link.Module(context.Background(), p)
	if err != nil || !bytes.Equal(got, wasm) {
		t.Fatalf("cached module: %v", err)
	}

}
