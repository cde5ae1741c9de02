package server_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"wapper.dev/wapper/internal/regtest"
	"wapper.dev/wapper/registry/artifact"
	"wapper.dev/wapper/registry/auth"
	"wapper.dev/wapper/registry/server"
	"wapper.dev/wapper/registry/store"
)

// specCodes are the error codes of the distribution-spec.
var specCodes = map[string]bool{
	"BLOB_UNKNOWN": true, "BLOB_UPLOAD_INVALID": true, "BLOB_UPLOAD_UNKNOWN": true,
	"DIGEST_INVALID": true, "MANIFEST_BLOB_UNKNOWN": true, "MANIFEST_INVALID": true,
	"MANIFEST_UNKNOWN": true, "NAME_INVALID": true, "NAME_UNKNOWN": true,
	"SIZE_INVALID": true, "UNAUTHORIZED": true, "DENIED": true, "UNSUPPORTED": true,
	"TOOMANYREQUESTS": true, "RANGE_INVALID": true,
}

// FuzzPutManifest pushes arbitrary manifests (body, Content-Type,
// reference and tag parameter) through the registry's HTTP handler. It
// must never panic nor answer 5xx; a refusal must be a distribution-spec
// error document; an accepted manifest must read back byte for byte and
// name only content the repository holds.
func FuzzPutManifest(f *testing.F) {
	const name = "fuzz/repo"
	st, err := store.Open(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = st.Close() })
	h := server.New(server.Config{
		Store:  st,
		Auth:   auth.Static{User: regtest.User, Password: regtest.Password},
		Logger: slog.New(slog.DiscardHandler),
	})

	// Content the seeds name: a plugin artifact, its parts, and an empty
	// config. The artifact's manifest is stored so that indexes and
	// referrers can name it.
	b, err := artifact.Build([]byte("\x00asm\x01\x00\x00\x00"), artifact.Metadata{
		ABIMajor: 1, ABIMinor: 0, Protocols: []string{"virtual"}, Grants: []string{"tcp:127.0.0.1:502"},
	}, time.Date(2026, 11, 23, 13, 51, 36, 0, time.UTC))
	if err != nil {
		f.Fatal(err)
	}
	empty := []byte("{}")
	for _, blob := range [][]byte{b.Config, b.Wasm, empty} {
		if _, err := st.PutBlob(name, digest.FromBytes(blob), bytes.NewReader(blob)); err != nil {
			f.Fatal(err)
		}
	}
	if err := st.PutManifest(name, b.ManifestDesc.Digest, b.ManifestDesc.MediaType, b.Manifest, []string{"v1"}); err != nil {
		f.Fatal(err)
	}
	emptyDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeEmptyJSON, Digest: digest.FromBytes(empty), Size: 2}
	marshal := func(v any) []byte {
		out, err := json.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		return out
	}
	index := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{b.ManifestDesc}}
	index.SchemaVersion = 2
	referrer := ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest, ArtifactType: "application/vnd.example.sig",
		Config: emptyDesc, Layers: []ocispec.Descriptor{emptyDesc}, Subject: &b.ManifestDesc,
		Annotations: map[string]string{"org.opencontainers.image.created": "2026-11-23T13:51:36Z"},
	}
	referrer.SchemaVersion = 2
	missing := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: b.ConfigDesc,
		Layers: []ocispec.Descriptor{{MediaType: artifact.MediaTypeWasm, Digest: digest.FromString("absent"), Size: 6}}}
	missing.SchemaVersion = 2
	docker := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"` +
		emptyDesc.Digest.String() + `","size":2},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"` +
		digest.FromString("foreign").String() + `","size":7,"urls":["https://example.com/layer"]}]}`)
	for _, s := range []struct {
		ct, ref, tag string
		body         []byte
	}{
		{b.ManifestDesc.MediaType, "v2", "", b.Manifest},
		{b.ManifestDesc.MediaType, b.ManifestDesc.Digest.String(), "latest", b.Manifest},
		{ocispec.MediaTypeImageIndex, "multi", "", marshal(index)},
		{ocispec.MediaTypeImageManifest, digest.FromBytes(marshal(referrer)).String(), "", marshal(referrer)},
		{ocispec.MediaTypeImageManifest, "missing", "", marshal(missing)},
		{"application/vnd.docker.distribution.manifest.v2+json", "docker", "", docker},
		{"", "no-type", "", []byte(`{"schemaVersion":2,"layers":[]}`)},
		{"application/vnd.example+json", "custom", "", []byte(`{"anything":[1,2,3]}`)},
		{ocispec.MediaTypeImageManifest, "sha512:" + digest.SHA512.FromBytes(b.Manifest).Encoded(), "", b.Manifest},
		{ocispec.MediaTypeImageManifest, "sha256:bad", "", b.Manifest},
		{ocispec.MediaTypeImageManifest, "v1", "bad tag!", []byte(`{`)},
	} {
		f.Add(s.ct, s.ref, s.tag, s.body)
	}

	f.Fuzz(func(t *testing.T, ct, ref, tag string, body []byte) {
		req := httptest.NewRequest(http.MethodPut, "/v2/"+name+"/manifests/x", bytes.NewReader(body))
		req.URL.Path = "/v2/" + name + "/manifests/" + ref
		if tag != "" {
			req.URL.RawQuery = url.Values{"tag": {tag}}.Encode()
		}
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		req.SetBasicAuth(regtest.User, regtest.Password)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch code := rec.Code; {
		case code >= 500:
			t.Fatalf("PUT %s: %d %s", req.URL, code, rec.Body)
		case code == http.StatusCreated:
			checkAccepted(t, h, st, name, rec.Header().Get("Location"), body)
		case code >= 400:
			var eb errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || len(eb.Errors) == 0 {
				t.Fatalf("PUT %s: %d with body %q, not a distribution-spec error document", req.URL, code, rec.Body)
			}
			for _, e := range eb.Errors {
				if !specCodes[e.Code] {
					t.Fatalf("PUT %s: error code %q is not in the distribution-spec", req.URL, e.Code)
				}
			}
		default:
			t.Fatalf("PUT %s: unexpected status %d", req.URL, code)
		}
	})
}

// checkAccepted checks an accepted manifest: it reads back unchanged at
// its Location, and everything it names is in the repository.
func checkAccepted(t *testing.T, h http.Handler, st *store.Store, name, loc string, body []byte) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/v2/x/manifests/x", nil)
	req.URL.Path = loc
	req.SetBasicAuth(regtest.User, regtest.Password)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), body) {
		t.Fatalf("GET %s after push: %d, body equal %v", loc, rec.Code, bytes.Equal(rec.Body.Bytes(), body))
	}
	var m struct {
		Config    *ocispec.Descriptor  `json:"config"`
		Layers    []ocispec.Descriptor `json:"layers"`
		Manifests []ocispec.Descriptor `json:"manifests"`
	}
	if json.Unmarshal(body, &m) != nil {
		return
	}
	held := func(d digest.Digest) bool {
		_, err := st.StatBlob(name, d)
		return err == nil || st.HasManifest(name, d)
	}
	switch rec.Header().Get("Content-Type") {
	case ocispec.MediaTypeImageManifest, "application/vnd.docker.distribution.manifest.v2+json":
		if m.Config == nil || !held(m.Config.Digest) {
			t.Fatalf("accepted image manifest without its config: %s", body)
		}
		for _, l := range m.Layers {
			if len(l.URLs) == 0 && !held(l.Digest) {
				t.Fatalf("accepted image manifest without its layer %s: %s", l.Digest, body)
			}
		}
	case ocispec.MediaTypeImageIndex, "application/vnd.docker.distribution.manifest.list.v2+json":
		for _, c := range m.Manifests {
			if !st.HasManifest(name, c.Digest) {
				t.Fatalf("accepted index without its manifest %s: %s", c.Digest, body)
			}
		}
	}
}
