package cloudlink

import (
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
)

// ModuleResolver returns the wasm module of a MapperPlugin (the device
// manager's interface).
type ModuleResolver interface {
	Module(ctx context.Context, p *mappersv1alpha1.MapperPlugin) ([]byte, error)
}

// Module returns p's module: from Options.Direct (the registry) when that
// works, else through the cloud's pull-through endpoint, checked by digest
// and cached in ModuleDir so that it loads again with both unreachable.
func (l *Link) Module(ctx context.Context, p *mappersv1alpha1.MapperPlugin) ([]byte, error) {
	var direct error
	if l.opts.Direct != nil {
		b, err := l.opts.Direct.Module(ctx, p)
		if err == nil || p.Spec.Module.Image == "" {
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

func (l *Link) cachePath(d digest.Digest) string {
	return filepath.Join(l.opts.ModuleDir, "cloud", d.Algorithm().String(), d.Encoded())
}

func (l *Link) moduleViaCloud(ctx context.Context, p *mappersv1alpha1.MapperPlugin) ([]byte, error) {
	if l.opts.ModuleDir == "" {
		return nil, errors.New("cloudlink: no module cache folder set")
	}
	pin := digest.Digest(p.Spec.Module.Digest)
	if pin != "" && pin.Validate() == nil {
		// A pin may name the module itself, or its manifest (then the
		// mapping saved at the last fetch finds the module).
		for _, d := range []digest.Digest{pin, l.pinned(pin)} {
			if d == "" {
				continue
			}
			if b, err := os.ReadFile(l.cachePath(d)); err == nil && digest.FromBytes(b) == d {
				return b, nil
			}
		}
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
	body, err := io.ReadAll(io.LimitReader(resp.Body, 512<<20))
	if err != nil {
		return nil, fmt.Errorf("MapperPlugin %s: read the module from the cloud: %w", p.Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("MapperPlugin %s: the cloud answered %s: %s", p.Name, resp.Status, body)
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
	if err := l.save(got, pin, body); err != nil {
		l.log.Warn("cloudlink: module not cached", "plugin", p.Name, "err", err)
	}
	return body, nil
}

func (l *Link) pinned(pin digest.Digest) digest.Digest {
	b, err := os.ReadFile(l.cachePath(pin) + ".module")
	if err != nil {
		return ""
	}
	d := digest.Digest(b)
	if d.Validate() != nil {
		return ""
	}
	return d
}

func (l *Link) save(d, pin digest.Digest, b []byte) error {
	path := l.cachePath(d)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := writeAtomic(path, b); err != nil {
		return err
	}
	if pin != "" && pin != d && pin.Validate() == nil {
		pp := l.cachePath(pin) + ".module"
		if err := os.MkdirAll(filepath.Dir(pp), 0o755); err != nil {
			return err
		}
		return writeAtomic(pp, []byte(d))
	}
	return nil
}

func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
