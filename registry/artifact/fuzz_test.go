package artifact_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"wapper.dev/wapper/registry/artifact"
)

// manifestSeeds are realistic manifests a pull can meet: what wapper push
// writes, what oras push writes, and manifests Parse must refuse.
func manifestSeeds(t testing.TB) [][]byte {
	wasm := []byte("\x00asm\x01\x00\x00\x00")
	full, err := artifact.Build(wasm, artifact.Metadata{
		ABIMajor: 1, ABIMinor: 0, Protocols: []string{"modbus", "virtual"},
		Grants: []string{"tcp:10.0.0.5:502", "serial:/dev/ttyUSB0"}, ConfigSchema: json.RawMessage(`{"type":"object","properties":{"port":{"type":"integer"}}}`),
		Exports: []string{"memory", "wapper_abi_v1", "wapper_alloc"}, Imports: []string{"wapper.log", "wasi_snapshot_preview1.fd_write"},
	}, time.Date(2026, 11, 23, 13, 51, 36, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	bare, err := artifact.Build(wasm, artifact.Metadata{ABIMajor: 1, ABIMinor: -1}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	const d = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
	return [][]byte{
		full.Manifest,
		bare.Manifest,
		// oras push --artifact-type application/wasm, empty config.
		[]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/wasm","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"` + d + `","size":2,"data":"e30="},"layers":[{"mediaType":"application/wasm","digest":"` + d + `","size":3923148,"annotations":{"org.opencontainers.image.title":"plugin.wasm"}}],"annotations":{"org.opencontainers.image.created":"2026-11-23T13:51:36Z"}}`),
		// A wasm layer beside other layers, and metadata annotations
		// written by hand.
		[]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.wasm.config.v0+json","digest":"` + d + `","size":2},"layers":[{"mediaType":"text/plain","digest":"` + d + `","size":2},{"mediaType":"application/wasm","digest":"` + d + `","size":2}],"annotations":{"dev.wapper.abi.version":"1.3","dev.wapper.protocols":" modbus , ,opcua","dev.wapper.grants":"[]","dev.wapper.config.schema":"true"}}`),
		[]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + d + `","size":2},"layers":[]}`),
		[]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + d + `","size":2}]}`),
		[]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.wasm.config.v0+json","digest":"` + d + `","size":2},"layers":[{"mediaType":"application/wasm","digest":"sha256:0","size":-1}]}`),
		[]byte(`null`),
		[]byte(`{`),
	}
}

// FuzzParse parses arbitrary manifests as a pulled plugin artifact: Parse
// must not panic, and what it accepts must be safe to fetch (one wasm
// layer with a valid digest and a bounded size) and carry metadata that
// survives being written back as annotations.
func FuzzParse(f *testing.F) {
	for _, m := range manifestSeeds(f) {
		f.Add("", m)
		f.Add(artifact.MediaTypeManifest, m)
	}
	f.Add("application/vnd.oci.image.index.v1+json", []byte(`{"schemaVersion":2,"manifests":[]}`))
	f.Fuzz(func(t *testing.T, mediaType string, manifest []byte) {
		a, err := artifact.Parse(mediaType, manifest)
		if err != nil {
			return
		}
		if a.Module.MediaType != artifact.MediaTypeWasm {
			t.Fatalf("module layer has media type %q", a.Module.MediaType)
		}
		if err := a.Module.Digest.Validate(); err != nil {
			t.Fatalf("accepted module digest %q: %v", a.Module.Digest, err)
		}
		if a.Module.Size <= 0 || a.Module.Size > artifact.MaxModuleSize {
			t.Fatalf("accepted module size %d", a.Module.Size)
		}
		n := 0
		for _, l := range a.Manifest.Layers {
			if l.MediaType == artifact.MediaTypeWasm {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("accepted a manifest with %d wasm layers", n)
		}
		checkMetadataRoundTrip(t, a.Metadata)
	})
}

// FuzzMetadataFrom reads arbitrary wapper annotations.
func FuzzMetadataFrom(f *testing.F) {
	f.Add("1.0", "modbus,virtual", `["tcp:10.0.0.5:502"]`, `{"type":"object"}`, "memory,wapper_abi_v1", "wapper.log")
	f.Add("1", "", "", "", "", "")
	f.Add("", " a, ,b ", "[]", "null", ",", "")
	f.Add("1.x", "", `"not an array"`, "{", "", "")
	f.Add("2.-1", "", "[1]", "", "", "")
	f.Fuzz(func(t *testing.T, abi, protocols, grants, schema, exports, imports string) {
		m, err := artifact.MetadataFrom(map[string]string{
			artifact.AnnotationABI: abi, artifact.AnnotationProtocols: protocols,
			artifact.AnnotationGrants: grants, artifact.AnnotationConfigSchema: schema,
			artifact.AnnotationExports: exports, artifact.AnnotationImports: imports,
		})
		if err != nil {
			return
		}
		checkMetadataRoundTrip(t, m)
	})
}

// checkMetadataRoundTrip checks that m, read from annotations, reads back
// the same after Annotations renders it.
func checkMetadataRoundTrip(t *testing.T, m artifact.Metadata) {
	t.Helper()
	back, err := artifact.MetadataFrom(m.Annotations())
	if err != nil {
		t.Fatalf("annotations rendered from %+v do not read back: %v", m, err)
	}
	same := back.ABIMajor == m.ABIMajor && back.ABIMinor == m.ABIMinor &&
		slices.Equal(back.Protocols, m.Protocols) && slices.Equal(back.Grants, m.Grants) &&
		string(back.ConfigSchema) == string(m.ConfigSchema) &&
		slices.Equal(back.Exports, m.Exports) && slices.Equal(back.Imports, m.Imports)
	if !same {
		t.Fatalf("metadata changes when written back as annotations:\n got %+v\nwant %+v", back, m)
	}
}
