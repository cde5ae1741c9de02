package modules_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/cloud/modules"
	"wapper.dev/wapper/internal/regtest"
	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/linkproto"
	"wapper.dev/wapper/registry/artifact"
	"wapper.dev/wapper/registry/client"
	"wapper.dev/wapper/registry/fetch"
)

// sentNode is an Authorizer for a node that was sent one plugin object.
type sentNode struct{ item linkproto.Item }

func (n sentNode) Authenticate(http.ResponseWriter, *http.Request) string { return "n1" }

func (n sentNode) Desired(string, string) (linkproto.Item, bool) { return n.item, true }

// TestServesTheModuleSentAndResolvesDigests: during a staged rollout a
// node not yet in a wave is sent the previous module; the endpoint serves
// that one, not the cluster's. And the resolver gives an image's module
// digest for its manifest pin, as hosts report it.
func TestServesTheModuleSentAndResolvesDigests(t *testing.T) {
	v1, err := os.ReadFile(testenv.Plugin(t, "virtual"))
	if err != nil {
		t.Fatal(err)
	}
	v2 := append(append([]byte(nil), v1...), 0, 3, 2, 'v', '2') // a custom section "v2", empty
	reg := regtest.Start(t, false)
	c, err := client.New(regtest.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	push := func(tag string, wasm []byte) (ref, manifest string) {
		b, err := artifact.Build(wasm, artifact.Metadata{ABIMajor: 1, ABIMinor: -1}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		ref = reg.Addr + "/plugins/virtual:" + tag
		if _, err := c.Push(context.Background(), ref, b); err != nil {
			t.Fatal(err)
		}
		return ref, b.ManifestDesc.Digest.String()
	}
	ref1, pin1 := push("v1", v1)
	ref2, pin2 := push("v2", v2)

	sent := &mappersv1alpha1.MapperPlugin{}
	sent.Name, sent.Spec.Module = "virtual", mappersv1alpha1.Module{Image: ref1, Digest: pin1}
	obj, err := json.Marshal(sent)
	if err != nil {
		t.Fatal(err)
	}
	h := modules.New(modules.Options{
		Auth: sentNode{linkproto.Item{Key: linkproto.Key(linkproto.KindMapperPlugin, "", "virtual"), Object: obj}},
		Plugin: func(name string) (*mappersv1alpha1.MapperPlugin, bool) {
			p := &mappersv1alpha1.MapperPlugin{}
			p.Name, p.Spec.Module = name, mappersv1alpha1.Module{Image: ref2, Digest: pin2}
			return p, true
		},
		CacheDir: t.TempDir(), Fetch: fetch.Options{Client: regtest.ClientOptions()},
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, linkproto.ModulesPath+"virtual", nil))
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), v1) {
		t.Fatalf("served %d, %d bytes (v1 has %d, v2 %d); want the module the node was sent", rec.Code, rec.Body.Len(), len(v1), len(v2))
	}

	r := modules.NewResolver(t.TempDir(), fetch.Options{Client: regtest.ClientOptions()}, 0)
	for _, tc := range []struct {
		m    mappersv1alpha1.Module
		want string
	}{
		{mappersv1alpha1.Module{Image: ref2, Digest: pin2}, digest.FromBytes(v2).String()},
		{mappersv1alpha1.Module{Image: ref2, Digest: pin2}, digest.FromBytes(v2).String()}, // from memory
		{mappersv1alpha1.Module{Image: ref1}, digest.FromBytes(v1).String()},               // a tag, resolved
		{mappersv1alpha1.Module{File: "v.wasm", Digest: pin1}, pin1},
		{mappersv1alpha1.Module{File: "v.wasm"}, ""},
	} {
		got, err := r.Digest(context.Background(), tc.m)
		if err != nil || got != tc.want {
			t.Errorf("Digest(%+v) = %q, %v; want %q", tc.m, got, err, tc.want)
		}
	}
	if _, err := r.Digest(context.Background(), mappersv1alpha1.Module{Image: regtest.DeadAddr(t) + "/plugins/virtual:v9"}); err == nil {
		t.Error("an unreachable registry resolved a digest")
	}
}
