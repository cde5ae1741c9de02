package fetch_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"wapper.dev/wapper/internal/regtest"
	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/registry/artifact"
	"wapper.dev/wapper/registry/client"
	"wapper.dev/wapper/registry/fetch"
)

// setup pushes the virtual plugin to a fresh embedded registry.
func setup(t *testing.T) (addr string, b *artifact.Built) {
	t.Helper()
	wasm, err := os.ReadFile(testenv.Plugin(t, "virtual"))
	if err != nil {
		t.Fatal(err)
	}
	b, err = artifact.Build(wasm, artifact.Metadata{ABIMajor: 1, ABIMinor: -1}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	r := regtest.Start(t, false)
	c, err := client.New(regtest.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(context.Background(), r.Addr+"/plugins/virtual:v1", b); err != nil {
		t.Fatal(err)
	}
	return r.Addr, b
}

func opts() fetch.Options { return fetch.Options{Client: regtest.ClientOptions()} }

func TestPinnedByManifestAndModuleDigest(t *testing.T) {
	addr, b := setup(t)
	ctx := context.Background()
	for name, want := range map[string]digest.Digest{"manifest": b.ManifestDesc.Digest, "module": b.WasmDesc.Digest} {
		t.Run(name, func(t *testing.T) {
			cache := t.TempDir()
			got, err := fetch.Module(ctx, addr+"/plugins/virtual:v1", want, cache, opts())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, b.Wasm) {
				t.Fatal("other bytes")
			}
			// Cached: a dead registry address no longer matters.
			got, err = fetch.Module(ctx, regtest.DeadAddr(t)+"/plugins/virtual:v1", want, cache, opts())
			if err != nil || !bytes.Equal(got, b.Wasm) {
				t.Fatalf("from cache: %v", err)
			}
		})
	}
}

func TestWrongPinIsRefused(t *testing.T) {
	addr, _ := setup(t)
	wrong := digest.FromString("not the plugin")
	_, err := fetch.Module(context.Background(), addr+"/plugins/virtual:v1", wrong, t.TempDir(), opts())
	if !errors.Is(err, client.ErrDigest) {
		t.Fatalf("want ErrDigest, got %v", err)
	}
	// A definite refusal, told apart from an unreachable registry, naming
	// the pin and what the reference holds.
	if !errors.Is(err, fetch.ErrMismatch) || errors.Is(err, fetch.ErrNotCached) || errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("want ErrMismatch only, got %v", err)
	}
	_, b := setup(t)
	for _, d := range []digest.Digest{wrong, b.ManifestDesc.Digest, b.WasmDesc.Digest} {
		if !strings.Contains(err.Error(), d.String()) {
			t.Errorf("refusal does not name %s: %v", d, err)
		}
	}
}

// TestSavedModuleIsFound: a module cached with Save (as the host's cloud
// link does with one fetched through wapper-cloud) is found by Module
// under its pin, a manifest digest or the module's own, with the registry
// unreachable; a corrupt copy is not used.
func TestSavedModuleIsFound(t *testing.T) {
	wasm, err := os.ReadFile(testenv.Plugin(t, "virtual"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := artifact.Build(wasm, artifact.Metadata{ABIMajor: 1, ABIMinor: -1}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	dead := regtest.DeadAddr(t) + "/plugins/virtual:v1"
	for name, pin := range map[string]digest.Digest{"manifest": b.ManifestDesc.Digest, "module": b.WasmDesc.Digest} {
		t.Run(name, func(t *testing.T) {
			cache := t.TempDir()
			if _, err := fetch.Module(context.Background(), dead, pin, cache, opts()); !errors.Is(err, fetch.ErrNotCached) {
				t.Fatalf("before Save: %v, want ErrNotCached", err)
			}
			d, err := fetch.Save(cache, wasm, pin)
			if err != nil || d != b.WasmDesc.Digest {
				t.Fatalf("Save = %s, %v; want %s", d, err, b.WasmDesc.Digest)
			}
			got, err := fetch.Module(context.Background(), dead, pin, cache, opts())
			if err != nil || !bytes.Equal(got, wasm) {
				t.Fatalf("saved module: %v", err)
			}
			if got, ok := fetch.Cached(cache, pin); !ok || !bytes.Equal(got, wasm) {
				t.Fatal("Cached does not find the saved module")
			}
			if _, ok := fetch.Cached(cache, digest.FromString("other")); ok {
				t.Fatal("Cached finds a module never saved")
			}
			p := cache + "/blobs/" + string(d.Algorithm()) + "/" + d.Encoded()
			if err := os.WriteFile(p, []byte("garbage"), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, ok := fetch.Cached(cache, pin); ok {
				t.Fatal("Cached returns a corrupt copy")
			}
		})
	}
	if _, err := fetch.Save(t.TempDir(), wasm, "sha256:nothex"); err == nil {
		t.Fatal("Save takes a malformed pin")
	}
}

func TestUnreachableWithoutCache(t *testing.T) {
	_, b := setup(t)
	_, err := fetch.Module(context.Background(), regtest.DeadAddr(t)+"/plugins/virtual:v1", b.ManifestDesc.Digest, t.TempDir(), opts())
	if !errors.Is(err, fetch.ErrNotCached) || !errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("want ErrNotCached and ErrUnreachable, got %v", err)
	}
}

// TestTagFallsBackToCache fetches by tag only, then stops the registry:
// the module the tag last resolved to is served from the cache.
func TestTagFallsBackToCache(t *testing.T) {
	wasm, err := os.ReadFile(testenv.Plugin(t, "virtual"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := artifact.Build(wasm, artifact.Metadata{ABIMajor: 1, ABIMinor: -1}, time.Time{})
	root := t.TempDir()
	p := regtest.Serve(t, root, "")
	c, _ := client.New(regtest.ClientOptions())
	ref := p.Addr + "/plugins/virtual:v1"
	if _, err := c.Push(context.Background(), ref, b); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	if _, err := fetch.Module(context.Background(), ref, "", cache, opts()); err != nil {
		t.Fatal(err)
	}
	p.Kill()
	got, err := fetch.Module(context.Background(), ref, "", cache, opts())
	if err != nil || !bytes.Equal(got, wasm) {
		t.Fatalf("cached fallback: %v", err)
	}
	// Another tag was never fetched: a clear error.
	_, err = fetch.Module(context.Background(), p.Addr+"/plugins/virtual:v2", "", cache, opts())
	if !errors.Is(err, fetch.ErrNotCached) {
		t.Fatalf("want ErrNotCached, got %v", err)
	}
}

// TestCorruptCacheIsRefetched damages the cached module: it is not used,
// and the registry's copy replaces it.
func TestCorruptCacheIsRefetched(t *testing.T) {
	addr, b := setup(t)
	cache := t.TempDir()
	ctx := context.Background()
	if _, err := fetch.Module(ctx, addr+"/plugins/virtual:v1", b.ManifestDesc.Digest, cache, opts()); err != nil {
		t.Fatal(err)
	}
	d := b.WasmDesc.Digest
	p := cache + "/blobs/" + string(d.Algorithm()) + "/" + d.Encoded()
	if err := os.WriteFile(p, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := fetch.Module(ctx, regtest.DeadAddr(t)+"/plugins/virtual:v1", b.ManifestDesc.Digest, cache, opts()); !errors.Is(err, fetch.ErrNotCached) {
		t.Fatalf("corrupt cache used: %v", err)
	}
	got, err := fetch.Module(ctx, addr+"/plugins/virtual:v1", b.ManifestDesc.Digest, cache, opts())
	if err != nil || !bytes.Equal(got, b.Wasm) {
		t.Fatalf("refetch: %v", err)
	}
}

// TestModuleDigestNeedsATag: the module's own digest can pin an image only
// through a tag; without one the refusal says which digest to pin instead.
func TestModuleDigestNeedsATag(t *testing.T) {
	addr, b := setup(t)
	_, err := fetch.Module(context.Background(), addr+"/plugins/virtual", b.WasmDesc.Digest, t.TempDir(), opts())
	if !errors.Is(err, client.ErrNotFound) || !strings.Contains(err.Error(), "manifest digest that `wapper push` printed") || !strings.Contains(err.Error(), "add the tag") {
		t.Fatalf("module digest with an untagged image: %v", err)
	}
	// With the tag it loads, and so does the manifest digest without one.
	if _, err := fetch.Module(context.Background(), addr+"/plugins/virtual:v1", b.WasmDesc.Digest, t.TempDir(), opts()); err != nil {
		t.Fatal(err)
	}
	if _, err := fetch.Module(context.Background(), addr+"/plugins/virtual", b.ManifestDesc.Digest, t.TempDir(), opts()); err != nil {
		t.Fatal(err)
	}
}
