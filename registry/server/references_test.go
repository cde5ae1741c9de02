package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"wapper.dev/wapper/internal/regtest"
)

// errorBody is the error document of the distribution-spec.
type errorBody struct {
	Errors []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Detail  any    `json:"detail"`
	} `json:"errors"`
}

// pushBlob uploads b to repository base (http://HOST/v2/NAME) in one POST
// and returns its descriptor.
func pushBlob(t *testing.T, base string, mediaType string, b []byte) ocispec.Descriptor {
	t.Helper()
	d := digest.FromBytes(b)
	resp, body := do(t, "POST", base+"/blobs/uploads/?digest="+d.String(), bytes.NewReader(b))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("push blob %s: %s %s", d, resp.Status, body)
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

// imageManifest renders an OCI image manifest, optionally with a subject.
func imageManifest(t *testing.T, config ocispec.Descriptor, layers []ocispec.Descriptor, subject *ocispec.Descriptor) []byte {
	t.Helper()
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: config, Layers: layers, Subject: subject}
	m.SchemaVersion = 2
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// putManifest pushes a manifest by digest and returns the response.
func putManifest(t *testing.T, base, mediaType string, b []byte) (*http.Response, []byte) {
	t.Helper()
	return do(t, "PUT", base+"/manifests/"+digest.FromBytes(b).String(), bytes.NewReader(b), "Content-Type", mediaType)
}

// wantRefused checks a 400 answer whose errors all carry code and name
// the digests in want (in any order).
func wantRefused(t *testing.T, resp *http.Response, body []byte, code string, want ...digest.Digest) {
	t.Helper()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %s, want 400 %s; body %s", resp.Status, code, body)
	}
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err != nil || len(eb.Errors) == 0 {
		t.Fatalf("error body %q does not hold distribution-spec errors: %v", body, err)
	}
	got := map[string]bool{}
	for _, e := range eb.Errors {
		if e.Code != code {
			t.Errorf("error code %q (%s), want %q", e.Code, e.Message, code)
		}
		got[fmt.Sprint(e.Detail)] = true
	}
	for _, d := range want {
		if !got[d.String()] {
			t.Errorf("no error names %s; body %s", d, body)
		}
	}
	if len(want) > 0 && len(eb.Errors) != len(want) {
		t.Errorf("%d errors, want %d; body %s", len(eb.Errors), len(want), body)
	}
}

// TestManifestNamingUnknownBlobsIsRefused pushes manifests that name blobs
// or manifests the repository does not hold: each is refused with 400
// MANIFEST_BLOB_UNKNOWN and not stored, while a subject that does not
// exist yet stays allowed.
func TestManifestNamingUnknownBlobsIsRefused(t *testing.T) {
	r := regtest.Start(t, false)
	base := "http://" + r.Addr + "/v2/refs/repo"
	config := pushBlob(t, base, ocispec.MediaTypeImageConfig, []byte(`{"architecture":"wasm","os":"wasip1"}`))
	layer := pushBlob(t, base, ocispec.MediaTypeImageLayer, []byte("a layer the repository holds"))
	absent := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromString("never pushed"), Size: 12}
	absentConfig := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromString("no config"), Size: 9}
	// Held by another repository only: still unknown to this one.
	elsewhere := pushBlob(t, "http://"+r.Addr+"/v2/other/repo", ocispec.MediaTypeImageLayer, []byte("a layer of another repository"))

	refused := func(name string, mediaType string, b []byte, code string, want ...digest.Digest) {
		t.Run(name, func(t *testing.T) {
			resp, body := putManifest(t, base, mediaType, b)
			wantRefused(t, resp, body, code, want...)
			if resp, _ := do(t, "GET", base+"/manifests/"+digest.FromBytes(b).String(), nil); resp.StatusCode != http.StatusNotFound {
				t.Errorf("refused manifest is served: %s", resp.Status)
			}
		})
	}
	refused("missing layer", ocispec.MediaTypeImageManifest,
		imageManifest(t, config, []ocispec.Descriptor{layer, absent}, nil), "MANIFEST_BLOB_UNKNOWN", absent.Digest)
	refused("missing config", ocispec.MediaTypeImageManifest,
		imageManifest(t, absentConfig, []ocispec.Descriptor{layer}, nil), "MANIFEST_BLOB_UNKNOWN", absentConfig.Digest)
	refused("missing config and layer", ocispec.MediaTypeImageManifest,
		imageManifest(t, absentConfig, []ocispec.Descriptor{absent, layer, absent}, nil), "MANIFEST_BLOB_UNKNOWN", absentConfig.Digest, absent.Digest)
	refused("layer of another repository", ocispec.MediaTypeImageManifest,
		imageManifest(t, config, []ocispec.Descriptor{elsewhere}, nil), "MANIFEST_BLOB_UNKNOWN", elsewhere.Digest)
	refused("no config", ocispec.MediaTypeImageManifest,
		[]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`), "MANIFEST_INVALID")
	refused("malformed layer digest", ocispec.MediaTypeImageManifest,
		imageManifest(t, config, []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: "sha256:nothex", Size: 1}}, nil), "MANIFEST_INVALID")

	t.Run("many missing layers", func(t *testing.T) {
		var layers []ocispec.Descriptor
		for i := range 150 {
			layers = append(layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromString(fmt.Sprint("absent ", i)), Size: 1})
		}
		resp, body := putManifest(t, base, ocispec.MediaTypeImageManifest, imageManifest(t, config, layers, nil))
		wantRefused(t, resp, body, "MANIFEST_BLOB_UNKNOWN")
		var eb errorBody
		if err := json.Unmarshal(body, &eb); err != nil || len(eb.Errors) != 100 {
			t.Fatalf("%d errors (%v), want the first 100", len(eb.Errors), err)
		}
	})

	// The subject may be pushed after its referrers.
	subject := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("subject pushed later"), Size: 20}
	good := imageManifest(t, config, []ocispec.Descriptor{layer}, &subject)
	if resp, body := putManifest(t, base, ocispec.MediaTypeImageManifest, good); resp.StatusCode != http.StatusCreated {
		t.Fatalf("manifest with a subject not pushed yet: %s %s", resp.Status, body)
	}
	// Non-distributable layers that say where they are kept are not pushed.
	foreign := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageLayerNonDistributableGzip, //nolint:staticcheck // what older tools push
		Digest:    digest.FromString("kept elsewhere"), Size: 14,
		URLs: []string{"https://store.example.com/blobs/kept-elsewhere"},
	}
	if resp, body := putManifest(t, base, ocispec.MediaTypeImageManifest, imageManifest(t, config, []ocispec.Descriptor{foreign, layer}, nil)); resp.StatusCode != http.StatusCreated {
		t.Fatalf("manifest with a non-distributable layer: %s %s", resp.Status, body)
	}

	index := func(children ...ocispec.Descriptor) []byte {
		idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: children}
		idx.SchemaVersion = 2
		b, err := json.Marshal(idx)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	goodDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(good), Size: int64(len(good))}
	absentChild := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("child never pushed"), Size: 18}
	refused("index with a missing manifest", ocispec.MediaTypeImageIndex, index(goodDesc, absentChild), "MANIFEST_BLOB_UNKNOWN", absentChild.Digest)
	// A blob is not a manifest.
	refused("index naming a blob", ocispec.MediaTypeImageIndex, index(ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: layer.Digest, Size: layer.Size}),
		"MANIFEST_BLOB_UNKNOWN", layer.Digest)
	if resp, body := putManifest(t, base, ocispec.MediaTypeImageIndex, index(goodDesc)); resp.StatusCode != http.StatusCreated {
		t.Fatalf("complete index: %s %s", resp.Status, body)
	}

	// Once the missing layer is pushed, the manifest that named it is taken.
	pushBlob(t, base, ocispec.MediaTypeImageLayer, []byte("never pushed"))
	if resp, body := putManifest(t, base, ocispec.MediaTypeImageManifest, imageManifest(t, config, []ocispec.Descriptor{layer, absent}, nil)); resp.StatusCode != http.StatusCreated {
		t.Fatalf("manifest after its layer was pushed: %s %s", resp.Status, body)
	}
}
