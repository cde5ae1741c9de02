package cloudlink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"

	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/linkproto"
	"wapper.dev/wapper/registry/fetch"
)

// ModuleResolver returns the wasm module of a MapperPlugin (the device
// manager's interface).
type ModuleResolver interface {
	Module(ctx context.Context, p *mappersv1alpha1.MapperPlugin) ([]byte, error)
}

// Module returns p's module: from Options.Direct (the registry) when that
// works, else through the cloud's pull-through endpoint, checked by digest
// and saved in ModuleDir (registry/fetch's layout) so that it loads again
// with both unreachable. A module that does not match its pin is a
// definite refusal (fetch.ErrMismatch), never a reason to ask the cloud,
// which would pull the same module and refuse it too; the cloud's own
// refusal (HTTP 422) is returned the same way.
func (l *Link) Module(ctx context.Context, p *mappersv1alpha1.MapperPlugin) ([]byte, error) {
	var direct error
	if l.opts.Direct != nil {
		b, err := l.opts.Direct.Module(ctx, p)
		switch {
		case err == nil, p.Spec.Module.Image == "", errors.Is(err, fetch.ErrMismatch), ctx.Err() != nil:
			return b, err
		}
		direct = err
		l.log.Info("cloudlink: registry not usable from here; fetching the module through the cloud", "plugin", p.Name, "err", err)
	}
	b, err := l.moduleViaCloud(ctx, p)
	if err != nil && direct != nil {
		return nil, fmt.Errorf("MapperPlugin %s: from the registry: %v; through the cloud: %w", p.Name, direct, err)
	}
	return b, err
}

// refusal is the cloud's definite refusal of a module: its text is the
// cloud's, and it matches fetch.ErrMismatch.
type refusal struct{ msg string }

func (r *refusal) Error() string { return r.msg }

func (r *refusal) Unwrap() error { return fetch.ErrMismatch }

// legacyPath is where hosts before registry/fetch's shared layout kept
// modules fetched through the cloud; they are still read, and moved into
// the shared layout when found.
func (l *Link) legacyPath(d digest.Digest) string {
	return filepath.Join(l.opts.ModuleDir, "cloud", d.Algorithm().String(), d.Encoded())
}

// cached returns the module pin names from the module cache.
func (l *Link) cached(p *mappersv1alpha1.MapperPlugin, pin digest.Digest) ([]byte, bool) {
	if pin == "" || pin.Validate() != nil {
		return nil, false
	}
	if b, ok := fetch.Cached(l.opts.ModuleDir, pin); ok {
		return b, true
	}
	// A pin may name the module itself, or its manifest (then the mapping
	// saved at the last fetch finds the module).
	for _, d := range []digest.Digest{pin, l.legacyPinned(pin)} {
		if d == "" {
			continue
		}
		if b, err := os.ReadFile(l.legacyPath(d)); err == nil && digest.FromBytes(b) == d {
			if _, err := fetch.Save(l.opts.ModuleDir, b, pin); err != nil {
				l.log.Warn("cloudlink: module not moved to the shared cache", "plugin", p.Name, "err", err)
			}
			return b, true
		}
	}
	return nil, false
}

func (l *Link) moduleViaCloud(ctx context.Context, p *mappersv1alpha1.MapperPlugin) ([]byte, error) {
	if l.opts.ModuleDir == "" {
		return nil, errors.New("cloudlink: no module cache folder set")
	}
	pin := digest.Digest(p.Spec.Module.Digest)
	if b, ok := l.cached(p, pin); ok {
		return b, nil
	}
	ep, err := l.endpoint(linkproto.ModulesPath + p.Name)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep, nil)
	if err != nil {
		return nil, err
	}
	req.Header = l.header()
	resp, err := l.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("MapperPlugin %s: fetch the module through the cloud: %w", p.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		text := fmt.Sprintf("MapperPlugin %s: the cloud answered %s: %s", p.Name, resp.Status, bytes.TrimSpace(msg))
		if resp.StatusCode == http.StatusUnprocessableEntity {
			return nil, &refusal{msg: text}
		}
		return nil, errors.New(text)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 512<<20))
	if err != nil {
		return nil, fmt.Errorf("MapperPlugin %s: read the module from the cloud: %w", p.Name, err)
	}
	got := digest.FromBytes(body)
	if want := digest.Digest(resp.Header.Get(linkproto.ModuleDigestHeader)); want != got {
		return nil, fmt.Errorf("MapperPlugin %s: module from the cloud is %s but the cloud said %s; refusing it", p.Name, got, want)
	}
	// The cloud checked the module against the pin it holds (through the
	// artifact's manifest when the pin names one); that must be the pin
	// this host holds, and a pin naming the module itself is checked here.
	if got != pin && digest.Digest(resp.Header.Get(linkproto.ModulePinHeader)) != pin {
		return nil, fmt.Errorf("MapperPlugin %s: the cloud checked the module against %q but this host pins %s; refusing it (the plugin is being changed; it is fetched again with the new object)", p.Name, resp.Header.Get(linkproto.ModulePinHeader), pin)
	}
	if _, err := fetch.Save(l.opts.ModuleDir, body, pin); err != nil {
		l.log.Warn("cloudlink: module not cached", "plugin", p.Name, "err", err)
	}
	return body, nil
}

// maxErrorBody bounds the part of an error answer kept for the message.
const maxErrorBody = 4 << 10

func (l *Link) legacyPinned(pin digest.Digest) digest.Digest {
	b, err := os.ReadFile(l.legacyPath(pin) + ".module")
	if err != nil {
		return ""
	}
	d := digest.Digest(b)
	if d.Validate() != nil {
		return ""
	}
	return d
}
