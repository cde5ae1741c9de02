// Package artifact defines how a wapper mapper plugin is packaged as an OCI
// artifact: the CNCF TAG-Runtime Wasm OCI artifact (an image manifest with a
// config of type application/vnd.wasm.config.v0+json and one layer of type
// application/wasm), with wapper's own metadata in manifest annotations.
// registry/FORMAT.md is the written specification; this package builds and
// parses it.
package artifact

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of the Wasm OCI artifact.
const (
	MediaTypeManifest = ocispec.MediaTypeImageManifest
	MediaTypeConfig   = "application/vnd.wasm.config.v0+json"
	MediaTypeWasm     = "application/wasm"
)

// Annotation keys wapper sets on the manifest.
const (
	AnnotationABI          = "dev.wapper.abi.version" // "1" or "1.<minor>"
	AnnotationProtocols    = "dev.wapper.protocols"   // comma-separated
	AnnotationGrants       = "dev.wapper.grants"      // JSON array of grant strings
	AnnotationConfigSchema = "dev.wapper.config.schema"
	AnnotationExports      = "dev.wapper.exports" // comma-separated export names
	AnnotationImports      = "dev.wapper.imports" // comma-separated module.name imports
)

// Metadata is what a plugin declares about itself.
type Metadata struct {
	// ABIMajor and ABIMinor are the plugin ABI version; ABIMinor is -1
	// when unknown (the module was not run to ask it).
	ABIMajor int `json:"abiMajor"`
	ABIMinor int `json:"abiMinor"`
	// Protocols are the KubeEdge protocol names the plugin provides.
	Protocols []string `json:"protocols,omitempty"`
	// Grants are the grants the plugin asks for, in MapperPlugin syntax.
	Grants []string `json:"grants,omitempty"`
	// ConfigSchema is the JSON schema of the plugin config, if any.
	ConfigSchema json.RawMessage `json:"configSchema,omitempty"`
	// Exports and Imports list the module's exported functions and its
	// imports ("module.name").
	Exports []string `json:"exports,omitempty"`
	Imports []string `json:"imports,omitempty"`
}

// ABIVersion renders the ABI version as it appears in the annotation.
func (m Metadata) ABIVersion() string {
	if m.ABIMajor == 0 {
		return ""
	}
	if m.ABIMinor < 0 {
		return strconv.Itoa(m.ABIMajor)
	}
	return fmt.Sprintf("%d.%d", m.ABIMajor, m.ABIMinor)
}

// Annotations renders m as manifest annotations.
func (m Metadata) Annotations() map[string]string {
	a := map[string]string{}
	if v := m.ABIVersion(); v != "" {
		a[AnnotationABI] = v
	}
	if len(m.Protocols) > 0 {
		a[AnnotationProtocols] = strings.Join(m.Protocols, ",")
	}
	if len(m.Grants) > 0 {
		b, _ := json.Marshal(m.Grants)
		a[AnnotationGrants] = string(b)
	}
	if len(m.ConfigSchema) > 0 {
		a[AnnotationConfigSchema] = string(m.ConfigSchema)
	}
	if len(m.Exports) > 0 {
		a[AnnotationExports] = strings.Join(m.Exports, ",")
	}
	if len(m.Imports) > 0 {
		a[AnnotationImports] = strings.Join(m.Imports, ",")
	}
	return a
}

// MetadataFrom reads wapper metadata back from manifest annotations.
// Missing annotations leave their fields empty (ABIMinor -1).
func MetadataFrom(a map[string]string) (Metadata, error) {
	m := Metadata{ABIMinor: -1}
	if v := a[AnnotationABI]; v != "" {
		maj, min, hasMin := strings.Cut(v, ".")
		var ok bool
		m.ABIMajor, ok = decimal(maj)
		if ok && hasMin {
			m.ABIMinor, ok = decimal(min)
		}
		// ABI majors start at 1; a 0 is what ABIVersion leaves out.
		if !ok || m.ABIMajor == 0 {
			return Metadata{ABIMinor: -1}, fmt.Errorf("annotation %s=%q: want MAJOR or MAJOR.MINOR, in decimal with MAJOR at least 1", AnnotationABI, v)
		}
	}
	m.Protocols = splitList(a[AnnotationProtocols])
	if v := a[AnnotationGrants]; v != "" {
		if err := json.Unmarshal([]byte(v), &m.Grants); err != nil {
			return m, fmt.Errorf("annotation %s is not a JSON array of strings: %w", AnnotationGrants, err)
		}
	}
	if v := a[AnnotationConfigSchema]; v != "" {
		if !json.Valid([]byte(v)) {
			return m, fmt.Errorf("annotation %s is not valid JSON", AnnotationConfigSchema)
		}
		m.ConfigSchema = json.RawMessage(v)
	}
	m.Exports = splitList(a[AnnotationExports])
	m.Imports = splitList(a[AnnotationImports])
	return m, nil
}

// decimal parses a non-negative decimal number without sign.
func decimal(s string) (int, bool) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Config is the Wasm OCI artifact config blob.
type Config struct {
	Created      *time.Time      `json:"created,omitempty"`
	Author       string          `json:"author,omitempty"`
	Architecture string          `json:"architecture"`
	OS           string          `json:"os"`
	LayerDigests []digest.Digest `json:"layerDigests"`
	Component    json.RawMessage `json:"component,omitempty"`
}

// Built is a packed artifact: the bytes of each part and their descriptors.
type Built struct {
	Manifest     []byte
	ManifestDesc ocispec.Descriptor
	Config       []byte
	ConfigDesc   ocispec.Descriptor
	Wasm         []byte
	WasmDesc     ocispec.Descriptor
}

// Build packs a wasm module and its metadata. created may be zero to leave
// the time out (which makes the artifact reproducible).
func Build(wasm []byte, meta Metadata, created time.Time) (*Built, error) {
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return nil, errors.New("not a WebAssembly binary (no \\0asm magic)")
	}
	wdesc := ocispec.Descriptor{MediaType: MediaTypeWasm, Digest: digest.FromBytes(wasm), Size: int64(len(wasm))}
	cfg := Config{Architecture: "wasm", OS: "wasip1", LayerDigests: []digest.Digest{wdesc.Digest}}
	if !created.IsZero() {
		c := created.UTC()
		cfg.Created = &c
	}
	cb, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cdesc := ocispec.Descriptor{MediaType: MediaTypeConfig, Digest: digest.FromBytes(cb), Size: int64(len(cb))}
	ann := meta.Annotations()
	if !created.IsZero() {
		ann[ocispec.AnnotationCreated] = created.UTC().Format(time.RFC3339)
	}
	man := ocispec.Manifest{
		MediaType:   MediaTypeManifest,
		Config:      cdesc,
		Layers:      []ocispec.Descriptor{wdesc},
		Annotations: ann,
	}
	man.SchemaVersion = 2
	mb, err := json.Marshal(man)
	if err != nil {
		return nil, err
	}
	return &Built{
		Manifest:     mb,
		ManifestDesc: ocispec.Descriptor{MediaType: MediaTypeManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb))},
		Config:       cb, ConfigDesc: cdesc,
		Wasm: wasm, WasmDesc: wdesc,
	}, nil
}

// ErrNotWapperArtifact is returned by Parse for a manifest that is not a
// Wasm OCI artifact.
var ErrNotWapperArtifact = errors.New("not a wasm plugin artifact")

// MaxModuleSize bounds the module size a manifest may declare. A client
// allocates the declared size before it reads the module, so a hostile
// registry could otherwise make it allocate any amount. It matches the
// bound the host puts on modules it downloads from the cloud.
const MaxModuleSize = 512 << 20

// Artifact is a parsed plugin manifest.
type Artifact struct {
	Manifest ocispec.Manifest
	// Module is the descriptor of the application/wasm layer.
	Module ocispec.Descriptor
	// Metadata is read from the annotations.
	Metadata Metadata
}

// Parse checks that a manifest is a Wasm OCI artifact holding exactly one
// application/wasm layer and reads its metadata. It accepts artifacts that
// other tools pushed: a config of type application/vnd.wasm.config.v0+json,
// or any config when the manifest's artifactType is application/wasm or
// the wasm config type.
func Parse(mediaType string, manifest []byte) (*Artifact, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest is not JSON: %w", ErrNotWapperArtifact, err)
	}
	if mediaType == "" {
		mediaType = m.MediaType
	}
	if mediaType != MediaTypeManifest {
		return nil, fmt.Errorf("%w: media type %q is not an OCI image manifest (%s)", ErrNotWapperArtifact, mediaType, MediaTypeManifest)
	}
	wasmTyped := m.Config.MediaType == MediaTypeConfig ||
		m.ArtifactType == MediaTypeConfig || m.ArtifactType == MediaTypeWasm
	if !wasmTyped {
		return nil, fmt.Errorf("%w: config media type %q is not %s", ErrNotWapperArtifact, m.Config.MediaType, MediaTypeConfig)
	}
	var layers []ocispec.Descriptor
	for _, l := range m.Layers {
		if l.MediaType == MediaTypeWasm {
			layers = append(layers, l)
		}
	}
	if len(layers) != 1 {
		types := make([]string, 0, len(m.Layers))
		for _, l := range m.Layers {
			types = append(types, l.MediaType)
		}
		return nil, fmt.Errorf("%w: want exactly one %s layer, found layers %v", ErrNotWapperArtifact, MediaTypeWasm, types)
	}
	if err := layers[0].Digest.Validate(); err != nil {
		return nil, fmt.Errorf("%w: wasm layer digest: %w", ErrNotWapperArtifact, err)
	}
	if n := layers[0].Size; n <= 0 || n > MaxModuleSize {
		return nil, fmt.Errorf("%w: wasm layer size %d is not between 1 and %d bytes", ErrNotWapperArtifact, n, MaxModuleSize)
	}
	meta, err := MetadataFrom(m.Annotations)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotWapperArtifact, err)
	}
	return &Artifact{Manifest: m, Module: layers[0], Metadata: meta}, nil
}

// Merge fills fields of m that are empty from extra, so that metadata read
// from the module wins over metadata from flags only where it has some.
func (m Metadata) Merge(extra Metadata) Metadata {
	if m.ABIMajor == 0 {
		m.ABIMajor, m.ABIMinor = extra.ABIMajor, extra.ABIMinor
	}
	for _, p := range extra.Protocols {
		if !slices.Contains(m.Protocols, p) {
			m.Protocols = append(m.Protocols, p)
		}
	}
	for _, g := range extra.Grants {
		if !slices.Contains(m.Grants, g) {
			m.Grants = append(m.Grants, g)
		}
	}
	if len(m.ConfigSchema) == 0 {
		m.ConfigSchema = extra.ConfigSchema
	}
	if len(m.Exports) == 0 {
		m.Exports = extra.Exports
	}
	if len(m.Imports) == 0 {
		m.Imports = extra.Imports
	}
	return m
}
