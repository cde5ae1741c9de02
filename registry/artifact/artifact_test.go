package artifact_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"wapper.dev/wapper/registry/artifact"
)

func TestBuildParseRoundTrip(t *testing.T) {
	wasm := []byte("\x00asm\x01\x00\x00\x00")
	meta := artifact.Metadata{ABIMajor: 1, ABIMinor: 2, Protocols: []string{"modbus", "virtual"},
		Grants: []string{"tcp:10.0.0.5:502"}, ConfigSchema: json.RawMessage(`{"type":"object"}`)}
	b, err := artifact.Build(wasm, meta, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	// Reproducible without a time.
	b2, _ := artifact.Build(wasm, meta, time.Time{})
	if b.ManifestDesc.Digest != b2.ManifestDesc.Digest {
		t.Fatal("same input, different digests")
	}
	a, err := artifact.Parse(b.ManifestDesc.MediaType, b.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if a.Module.Digest != b.WasmDesc.Digest || a.Metadata.ABIVersion() != "1.2" ||
		len(a.Metadata.Protocols) != 2 || a.Metadata.Grants[0] != "tcp:10.0.0.5:502" ||
		string(a.Metadata.ConfigSchema) != `{"type":"object"}` {
		t.Fatalf("round trip: %+v", a.Metadata)
	}
	var cfg artifact.Config
	if err := json.Unmarshal(b.Config, &cfg); err != nil || cfg.Architecture != "wasm" || cfg.LayerDigests[0] != b.WasmDesc.Digest {
		t.Fatalf("config: %s", b.Config)
	}
}

func TestParseRefusesOtherManifests(t *testing.T) {
	for name, m := range map[string]string{
		"image":    `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`,
		"two wasm": `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.wasm.config.v0+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/wasm","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},{"mediaType":"application/wasm","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}]}`,
		"index":    `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`,
		"not json": `{`,
	} {
		if _, err := artifact.Parse("", []byte(m)); !errors.Is(err, artifact.ErrNotWapperArtifact) {
			t.Errorf("%s: want ErrNotWapperArtifact, got %v", name, err)
		}
	}
}

// TestParseRefusesBadModuleOrMetadata refuses a module size a client could
// not safely allocate and ABI versions that do not read back the same.
func TestParseRefusesBadModuleOrMetadata(t *testing.T) {
	const d = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
	man := func(size, annotations string) string {
		return `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.wasm.config.v0+json","digest":"` + d +
			`","size":2},"layers":[{"mediaType":"application/wasm","digest":"` + d + `","size":` + size + `}],"annotations":{` + annotations + `}}`
	}
	for name, m := range map[string]string{
		"huge module":   man("1099511627776", ""),
		"empty module":  man("0", ""),
		"negative size": man("-1", ""),
		"abi 0":         man("2", `"dev.wapper.abi.version":"0.5"`),
		"abi sign":      man("2", `"dev.wapper.abi.version":"1.-1"`),
		"abi plus":      man("2", `"dev.wapper.abi.version":"+1"`),
	} {
		if _, err := artifact.Parse("", []byte(m)); !errors.Is(err, artifact.ErrNotWapperArtifact) {
			t.Errorf("%s: want ErrNotWapperArtifact, got %v", name, err)
		}
	}
	if _, err := artifact.Parse("", []byte(man("2", `"dev.wapper.abi.version":"1.0"`))); err != nil {
		t.Fatalf("valid manifest refused: %v", err)
	}
}
