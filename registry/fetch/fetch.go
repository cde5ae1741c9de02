// Package fetch gives the host its plugin modules: pulled from a registry,
// verified by digest, and cached by digest on disk so that a module the
// host has seen once still loads while the registry is unreachable. Modules
// that came another way (through wapper-cloud's pull-through endpoint) are
// cached in the same layout with Save, so one lookup finds both.
//
// Cache layout under cacheDir (every file written atomically):
//
//	blobs/<alg>/<hex>      module bytes, named by their own digest
//	manifests/<alg>/<hex>  the module digest a manifest digest points to
//	refs/<sha256(ref)>     the manifest digest a reference last resolved to
package fetch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2/registry"

	"wapper.dev/wapper/registry/client"
)

// Errors callers tell apart with errors.Is.
var (
	// ErrNotCached is wrapped in the error returned when the registry is
	// unreachable and the module is not in the cache: another way to the
	// module (wapper-cloud's pull-through endpoint) may still work.
	ErrNotCached = errors.New("module not in cache")
	// ErrMismatch is wrapped (together with client.ErrDigest) in the error
	// returned when the registry answered but what the reference names
	// matches neither digest the pin may be: a definite refusal that no
	// other way to the same registry changes. The error names the pinned
	// digest and the manifest and module digests found.
	ErrMismatch = errors.New("module does not match its pinned digest")
)

// Options configure Module.
type Options struct {
	// Client configures registry access (TLS, credentials, plain HTTP).
	Client client.Options
	// Logger receives cache and fallback logs; nil means slog.Default().
	Logger *slog.Logger
}

// Module returns the wasm module that ref names, checked against want.
//
// want pins the module: it is either the digest of the artifact's manifest
// (what `wapper push` prints) or the digest of the module itself. A module
// whose digest matches neither is refused. A pinned module found in the
// cache is returned without contacting the registry. With want empty the
// reference (usually a tag) is resolved at the registry, and when the
// registry is unreachable the module it last resolved to is returned from
// the cache.
func Module(ctx context.Context, ref string, want digest.Digest, cacheDir string, opts Options) ([]byte, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if cacheDir == "" {
		return nil, errors.New("fetch: no cache directory given")
	}
	c := cache{dir: cacheDir}
	if want != "" {
		if err := want.Validate(); err != nil {
			return nil, fmt.Errorf("pinned digest %q: %w (want sha256:<64 hex>)", want, err)
		}
		if b, ok := c.lookup(want); ok {
			log.Debug("module from cache", "ref", ref, "digest", want)
			return b, nil
		}
	}
	cl, err := client.New(opts.Client)
	if err != nil {
		return nil, err
	}
	p, err := pull(ctx, cl, ref, want)
	if err != nil {
		if errors.Is(err, client.ErrUnreachable) {
			if want == "" {
				if md, ok := c.ref(ref); ok {
					if b, ok := c.lookup(md); ok {
						log.Warn("registry unreachable; using the cached module this reference last resolved to", "ref", ref, "manifest", md, "err", err)
						return b, nil
					}
				}
			}
			return nil, fmt.Errorf("%w: %s (pinned %s) is not cached in %s and the registry cannot be reached: %w; restore access to the registry once so that the module is cached",
				ErrNotCached, ref, orNone(want), cacheDir, err)
		}
		return nil, err
	}
	md, ld := p.Manifest.Desc.Digest, p.Artifact.Module.Digest
	if want != "" && want != md && want != ld {
		return nil, fmt.Errorf("%w (%w): %s resolves to manifest %s with module %s, but %s is pinned; refusing to run it (fix the pinned digest or the reference)",
			ErrMismatch, client.ErrDigest, ref, md, ld, want)
	}
	if err := c.store(p.Wasm, ld, md, ref); err != nil {
		log.Warn("could not cache module; it will need the registry next time", "dir", cacheDir, "err", err)
	}
	return p.Wasm, nil
}

func orNone(d digest.Digest) string {
	if d == "" {
		return "no digest"
	}
	return d.String()
}

// pull fetches ref; with want set it first tries want as a manifest digest
// in ref's repository, so that a moved tag does not matter.
func pull(ctx context.Context, cl *client.Client, ref string, want digest.Digest) (*client.Pulled, error) {
	if want == "" {
		return cl.Pull(ctx, ref)
	}
	r, err := registry.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("reference %q: %w", ref, err)
	}
	byDigest := r.Registry + "/" + r.Repository + "@" + want.String()
	p, err := cl.Pull(ctx, byDigest)
	if err == nil || !errors.Is(err, client.ErrNotFound) {
		return p, err
	}
	// want may be the module's own digest: pull the reference and compare.
	if r.Reference == "" || strings.Contains(r.Reference, ":") {
		return nil, fmt.Errorf("%w (%s is not a manifest in %s/%s; without a tag in the image, the pinned digest must be the manifest digest that `wapper push` printed, or add the tag to pin the module's own digest)",
			err, want, r.Registry, r.Repository)
	}
	return cl.Pull(ctx, ref)
}

// Cached returns the module that d names in the cache under cacheDir,
// verified against its digest: d is the module's own digest, or the digest
// of an artifact manifest whose module was cached with it (by Module or
// Save). It never contacts a registry.
func Cached(cacheDir string, d digest.Digest) ([]byte, bool) {
	if cacheDir == "" || d.Validate() != nil {
		return nil, false
	}
	return cache{dir: cacheDir}.lookup(d)
}

// Save caches wasm, a module obtained by other means than Module (through
// wapper-cloud, which checked it against pin), so that Module and Cached
// find it under pin later with no registry and no cloud in reach. The bytes
// are stored under their own digest; a pin naming something else (the
// artifact's manifest) is recorded as pointing to them. It returns the
// module's digest.
func Save(cacheDir string, wasm []byte, pin digest.Digest) (digest.Digest, error) {
	if cacheDir == "" {
		return "", errors.New("fetch: no cache directory given")
	}
	if pin != "" {
		if err := pin.Validate(); err != nil {
			return "", fmt.Errorf("pinned digest %q: %w", pin, err)
		}
	}
	c := cache{dir: cacheDir}
	d := digest.FromBytes(wasm)
	if err := writeAtomic(c.path("blobs", d), wasm); err != nil {
		return "", fmt.Errorf("cache module %s: %w", d, err)
	}
	if pin != "" && pin != d {
		if err := writeAtomic(c.path("manifests", pin), []byte(d.String())); err != nil {
			return "", fmt.Errorf("cache module %s under %s: %w", d, pin, err)
		}
	}
	return d, nil
}

type cache struct{ dir string }

func (c cache) path(kind string, d digest.Digest) string {
	return filepath.Join(c.dir, kind, string(d.Algorithm()), d.Encoded())
}

// lookup returns the module for d (a module or manifest digest), verified.
func (c cache) lookup(d digest.Digest) ([]byte, bool) {
	if b, err := os.ReadFile(c.path("blobs", d)); err == nil && d.Algorithm().FromBytes(b) == d {
		return b, true
	}
	m, err := os.ReadFile(c.path("manifests", d))
	if err != nil {
		return nil, false
	}
	ld, err := digest.Parse(strings.TrimSpace(string(m)))
	if err != nil {
		return nil, false
	}
	b, err := os.ReadFile(c.path("blobs", ld))
	if err != nil || ld.Algorithm().FromBytes(b) != ld {
		return nil, false
	}
	return b, true
}

func (c cache) ref(ref string) (digest.Digest, bool) {
	b, err := os.ReadFile(filepath.Join(c.dir, "refs", digest.FromString(ref).Encoded()))
	if err != nil {
		return "", false
	}
	d, err := digest.Parse(strings.TrimSpace(string(b)))
	return d, err == nil
}

func (c cache) store(wasm []byte, module, manifest digest.Digest, ref string) error {
	if err := writeAtomic(c.path("blobs", module), wasm); err != nil {
		return err
	}
	if err := writeAtomic(c.path("manifests", manifest), []byte(module.String())); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(c.dir, "refs", digest.FromString(ref).Encoded()), []byte(manifest.String()))
}

func writeAtomic(dst string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(dst), ".tmp-")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), dst)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
