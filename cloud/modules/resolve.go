package modules

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/registry/fetch"
)

// Resolver finds the content digest (sha256 of the .wasm) of a
// MapperPlugin's module, which is what hosts report they run: an image's
// pin may be its manifest's digest, and a tag names no digest at all, so
// images are pulled through the cloud's registry access (and cached, as
// for the module endpoint).
type Resolver struct {
	cacheDir string
	fetch    fetch.Options
	timeout  time.Duration

	mu     sync.Mutex
	pinned map[string]string // image@pin → content digest
}

// NewResolver returns a Resolver pulling into cacheDir with opts; timeout
// bounds one pull (default 2m).
func NewResolver(cacheDir string, opts fetch.Options, timeout time.Duration) *Resolver {
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	return &Resolver{cacheDir: cacheDir, fetch: opts, timeout: timeout, pinned: map[string]string{}}
}

// Digest returns m's content digest: the digest of a file module (empty
// when it has none: the cloud cannot read the hosts' plugin folders), or
// the digest of the module an image resolves to.
func (r *Resolver) Digest(ctx context.Context, m mappersv1alpha1.Module) (string, error) {
	if m.Image == "" {
		return m.Digest, nil
	}
	key := m.Image + "@" + m.Digest
	if m.Digest != "" {
		r.mu.Lock()
		d, ok := r.pinned[key]
		r.mu.Unlock()
		if ok {
			return d, nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	b, err := fetch.Module(ctx, m.Image, digest.Digest(m.Digest), r.cacheDir, r.fetch)
	if err != nil {
		return "", fmt.Errorf("resolve the module of %s: %w", m.Image, err)
	}
	d := digest.FromBytes(b).String()
	if m.Digest != "" {
		r.mu.Lock()
		r.pinned[key] = d
		r.mu.Unlock()
	}
	return d, nil
}
