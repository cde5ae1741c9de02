package client_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"

	"wapper.dev/wapper/internal/regtest"
	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/registry/artifact"
	"wapper.dev/wapper/registry/client"
)

func virtual(t *testing.T) *artifact.Built {
	t.Helper()
	wasm, err := os.ReadFile(testenv.Plugin(t, "virtual"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := artifact.Build(wasm, artifact.Metadata{ABIMajor: 1, ABIMinor: -1, Protocols: []string{"virtual"}}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newClient(t *testing.T, o client.Options) *client.Client {
	t.Helper()
	c, err := client.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// roundTrip pushes by tag and pulls by tag and by digest.
func roundTrip(t *testing.T, c *client.Client, repo string) {
	ctx := context.Background()
	b := virtual(t)
	desc, err := c.Push(ctx, repo+":v1", b)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != b.ManifestDesc.Digest {
		t.Fatalf("pushed digest %s, built %s", desc.Digest, b.ManifestDesc.Digest)
	}
	for _, ref := range []string{repo + ":v1", repo + "@" + desc.Digest.String()} {
		p, err := c.Pull(ctx, ref)
		if err != nil {
			t.Fatalf("pull %s: %v", ref, err)
		}
		if !bytes.Equal(p.Wasm, b.Wasm) || p.Manifest.Desc.Digest != desc.Digest {
			t.Fatalf("pull %s: got other content", ref)
		}
		if got := p.Artifact.Metadata.Protocols; len(got) != 1 || got[0] != "virtual" {
			t.Fatalf("pull %s: protocols %v", ref, got)
		}
	}
	if _, err := c.Tag(ctx, repo+":v1", repo+":stable"); err != nil {
		t.Fatal(err)
	}
	tags, err := c.Tags(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(tags) // docker-registry does not sort
	if strings.Join(tags, ",") != "stable,v1" {
		t.Fatalf("tags %v", tags)
	}
}

func TestRoundTripEmbedded(t *testing.T) {
	r := regtest.Start(t, false)
	roundTrip(t, newClient(t, regtest.ClientOptions()), r.Addr+"/plugins/virtual")
}

// TestInteropDockerRegistry pushes and pulls against Debian's
// docker-registry 2.8, an independent implementation.
func TestInteropDockerRegistry(t *testing.T) {
	addr := regtest.DockerRegistry(t)
	o := regtest.ClientOptions()
	o.Username, o.Password = "", ""
	c := newClient(t, o)
	roundTrip(t, c, addr+"/plugins/virtual")

	// Copy across registries: embedded -> docker-registry keeps the digest.
	r := regtest.Start(t, false)
	ec := newClient(t, regtest.ClientOptions())
	b := virtual(t)
	if _, err := ec.Push(context.Background(), r.Addr+"/p/v:1", b); err != nil {
		t.Fatal(err)
	}
	// One client with a credential for the embedded registry only.
	cross := newClient(t, client.Options{PlainHTTP: true, Username: regtest.User, Password: regtest.Password})
	desc, err := cross.Tag(context.Background(), r.Addr+"/p/v:1", addr+"/copied/v:1")
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != b.ManifestDesc.Digest {
		t.Fatalf("copy changed the digest: %s", desc.Digest)
	}
	p, err := c.Pull(context.Background(), addr+"/copied/v@"+b.ManifestDesc.Digest.String())
	if err != nil || !bytes.Equal(p.Wasm, b.Wasm) {
		t.Fatalf("pull copy: %v", err)
	}
}

func TestAuthRequired(t *testing.T) {
	r := regtest.Start(t, true)
	o := regtest.ClientOptions()
	o.Username, o.Password = "", ""
	anon := newClient(t, o)
	_, err := anon.Push(context.Background(), r.Addr+"/p/v:1", virtual(t))
	if err == nil || !strings.Contains(err.Error(), "--username") {
		t.Fatalf("anonymous push: want a refusal that names --username, got %v", err)
	}
	o.Username, o.Password = regtest.User, "wrong"
	if _, err := newClient(t, o).Push(context.Background(), r.Addr+"/p/v:1", virtual(t)); err == nil {
		t.Fatal("push with a wrong password succeeded")
	}
	if _, err := newClient(t, regtest.ClientOptions()).Push(context.Background(), r.Addr+"/p/v:1", virtual(t)); err != nil {
		t.Fatal(err)
	}
	// Anonymous read is on for this registry.
	if _, err := anon.Pull(context.Background(), r.Addr+"/p/v:1"); err != nil {
		t.Fatalf("anonymous pull: %v", err)
	}
}

func TestDockerConfigCredentials(t *testing.T) {
	r := regtest.Start(t, false)
	cfg := filepath.Join(t.TempDir(), "config.json")
	c0 := newClient(t, client.Options{PlainHTTP: true, DockerConfig: cfg})
	if _, err := c0.Push(context.Background(), r.Addr+"/p/v:1", virtual(t)); err == nil {
		t.Fatal("push without credentials succeeded")
	}
	// Store a credential the way `docker login` does.
	auth64 := "d2FwcGVyOnNlY3JldC1mb3ItdGVzdHM=" // wapper:secret-for-tests
	if err := os.WriteFile(cfg, []byte(`{"auths":{"`+r.Addr+`":{"auth":"`+auth64+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, client.Options{PlainHTTP: true, DockerConfig: cfg})
	if _, err := c.Push(context.Background(), r.Addr+"/p/v:1", virtual(t)); err != nil {
		t.Fatal(err)
	}
}

func TestPlainHTTPOnlyLoopback(t *testing.T) {
	c := newClient(t, client.Options{PlainHTTP: true})
	_, err := c.Pull(context.Background(), "registry.invalid/p/v:1")
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("want a loopback refusal, got %v", err)
	}
}

func TestWrongDigest(t *testing.T) {
	r := regtest.Start(t, false)
	c := newClient(t, regtest.ClientOptions())
	b := virtual(t)
	if _, err := c.Push(context.Background(), r.Addr+"/p/v:1", b); err != nil {
		t.Fatal(err)
	}
	wrong := digest.FromString("something else")
	_, err := c.Pull(context.Background(), r.Addr+"/p/v@"+wrong.String())
	if !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("pull by a digest that is not there: want ErrNotFound, got %v", err)
	}
}

// corrupt rewrites the stored wasm blob behind the registry's back.
func corrupt(t *testing.T, r *regtest.Registry, d digest.Digest, mutate func([]byte) []byte) {
	t.Helper()
	p := filepath.Join(r.Store.Root(), "blobs", string(d.Algorithm()), d.Encoded()[:2], d.Encoded())
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, mutate(b), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptAndTruncatedBlob(t *testing.T) {
	for name, mutate := range map[string]func([]byte) []byte{
		"flipped":   func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b },
		"truncated": func(b []byte) []byte { return b[:len(b)/2] },
	} {
		t.Run(name, func(t *testing.T) {
			r := regtest.Start(t, false)
			c := newClient(t, regtest.ClientOptions())
			b := virtual(t)
			if _, err := c.Push(context.Background(), r.Addr+"/p/v:1", b); err != nil {
				t.Fatal(err)
			}
			corrupt(t, r, b.WasmDesc.Digest, mutate)
			p, err := c.Pull(context.Background(), r.Addr+"/p/v:1")
			if err == nil {
				t.Fatalf("pull of a %s blob succeeded (%d bytes)", name, len(p.Wasm))
			}
			if !errors.Is(err, client.ErrDigest) {
				t.Fatalf("want ErrDigest, got %v", err)
			}
			t.Logf("refused as expected: %v", err)
		})
	}
}

// TestNotAWapperArtifact pushes an ordinary OCI image with oras and
// checks that pull refuses it while inspect-style fetches still work.
func TestNotAWapperArtifact(t *testing.T) {
	r := regtest.Start(t, false)
	ctx := context.Background()
	mem := memory.New()
	layer := []byte("not wasm")
	ldesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(layer), Size: int64(len(layer))}
	if err := mem.Push(ctx, ldesc, bytes.NewReader(layer)); err != nil {
		t.Fatal(err)
	}
	mdesc, err := oras.PackManifest(ctx, mem, oras.PackManifestVersion1_1, "application/vnd.example.thing", oras.PackManifestOptions{Layers: []ocispec.Descriptor{ldesc}})
	if err != nil {
		t.Fatal(err)
	}
	if err := mem.Tag(ctx, mdesc, "1"); err != nil {
		t.Fatal(err)
	}
	repo, err := remote.NewRepository(r.Addr + "/other/thing")
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	repo.Client = &auth.Client{Credential: auth.StaticCredential(r.Addr, auth.Credential{Username: regtest.User, Password: regtest.Password})}
	if _, err := oras.Copy(ctx, mem, "1", repo, "1", oras.DefaultCopyOptions); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, regtest.ClientOptions())
	_, err = c.Pull(ctx, r.Addr+"/other/thing:1")
	if !errors.Is(err, artifact.ErrNotWapperArtifact) {
		t.Fatalf("want ErrNotWapperArtifact, got %v", err)
	}
	if m, err := c.FetchManifest(ctx, r.Addr+"/other/thing:1"); err != nil || m.Desc.Digest != mdesc.Digest {
		t.Fatalf("fetch manifest: %v", err)
	}
}

// TestForeignWasmArtifact pushes a .wasm the way `oras push` does (config
// application/vnd.wasm.config.v0+json, layer application/wasm, no wapper
// annotations) and checks that wapper pulls it.
func TestForeignWasmArtifact(t *testing.T) {
	r := regtest.Start(t, false)
	ctx := context.Background()
	wasm, err := os.ReadFile(testenv.Plugin(t, "virtual"))
	if err != nil {
		t.Fatal(err)
	}
	mem := memory.New()
	wdesc := ocispec.Descriptor{MediaType: artifact.MediaTypeWasm, Digest: digest.FromBytes(wasm), Size: int64(len(wasm)),
		Annotations: map[string]string{ocispec.AnnotationTitle: "virtual.wasm"}}
	cfg := []byte(`{"architecture":"wasm","os":"wasip1","layerDigests":["` + wdesc.Digest.String() + `"]}`)
	cdesc := ocispec.Descriptor{MediaType: artifact.MediaTypeConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	for _, x := range []struct {
		d ocispec.Descriptor
		b []byte
	}{{wdesc, wasm}, {cdesc, cfg}} {
		if err := mem.Push(ctx, x.d, bytes.NewReader(x.b)); err != nil {
			t.Fatal(err)
		}
	}
	mdesc, err := oras.PackManifest(ctx, mem, oras.PackManifestVersion1_1, "", oras.PackManifestOptions{Layers: []ocispec.Descriptor{wdesc}, ConfigDescriptor: &cdesc})
	if err != nil {
		t.Fatal(err)
	}
	if err := mem.Tag(ctx, mdesc, "1"); err != nil {
		t.Fatal(err)
	}
	repo, _ := remote.NewRepository(r.Addr + "/foreign/virtual")
	repo.PlainHTTP = true
	repo.Client = &auth.Client{Credential: auth.StaticCredential(r.Addr, auth.Credential{Username: regtest.User, Password: regtest.Password})}
	if _, err := oras.Copy(ctx, mem, "1", repo, "1", oras.DefaultCopyOptions); err != nil {
		t.Fatal(err)
	}
	p, err := newClient(t, regtest.ClientOptions()).Pull(ctx, r.Addr+"/foreign/virtual:1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.Wasm, wasm) {
		t.Fatal("pulled other bytes")
	}
}

func TestUnreachable(t *testing.T) {
	c := newClient(t, regtest.ClientOptions())
	_, err := c.Pull(context.Background(), regtest.DeadAddr(t)+"/p/v:1")
	if !errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("want ErrUnreachable, got %v", err)
	}
}
