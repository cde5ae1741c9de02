package hostio

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/abi/grant"
)

// Secrets is where the host keeps the secrets plugins may read and TLS
// connections use. Key returns one key of a secret, or an *abi.Error with
// code abi.ErrNotFound when the secret or the key does not exist, in a
// new slice that the caller may overwrite (the host clears values once
// used). It is safe for concurrent use.
type Secrets interface {
	Key(name, key string) ([]byte, error)
}

// SecretDir is a Secrets kept as files, in the layout of a Kubernetes
// Secret mounted as a volume: DIR/NAME/KEY holds the value of key KEY of
// secret NAME. Files are read on each use, so a secret rotated on disk
// (as the kubelet does, through symbolic links) takes effect at once.
type SecretDir string

// Key reads DIR/NAME/KEY.
func (d SecretDir) Key(name, key string) ([]byte, error) {
	if d == "" {
		return nil, abi.Errorf(abi.ErrNotFound, "secret %q: the host has no secrets directory", name)
	}
	p := filepath.Join(string(d), name, key)
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if _, err := os.Stat(filepath.Join(string(d), name)); err != nil {
				return nil, abi.Errorf(abi.ErrNotFound, "secret %q does not exist", name)
			}
			return nil, abi.Errorf(abi.ErrNotFound, "secret %q has no key %q", name, key)
		}
		return nil, abi.Errorf(abi.ErrUnavailable, "secret %q key %q: %v", name, key, errnoText(err))
	}
	defer f.Close()
	v, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, abi.Errorf(abi.ErrUnavailable, "secret %q key %q: %v", name, key, errnoText(err))
	}
	if len(v) > maxSecretFile {
		return nil, abi.Errorf(abi.ErrTooLarge, "secret %q key %q is larger than %d bytes", name, key, maxSecretFile)
	}
	return v, nil
}

// maxSecretFile bounds a value SecretDir reads: a Kubernetes Secret's
// whole size. A CA bundle for grants.tls may be that large; what a plugin
// reads is bounded by abi.MaxSecret.
const maxSecretFile = 1 << 20

// ParseSecretRef splits a secret_get reference "NAME/KEY" and checks both
// parts.
func ParseSecretRef(ref string) (name, key string, err error) {
	name, key, ok := strings.Cut(ref, "/")
	if !ok || !grant.ValidSecretName(name) || !grant.ValidSecretKey(key) {
		return "", "", abi.Errorf(abi.ErrInvalid, "secret reference %q: want NAME/KEY, such as plc-login/password (a Kubernetes secret name and one of its keys)", ref)
	}
	return name, key, nil
}

// CheckSecret checks that the grants let the plugin read secret name.
func (g *Grants) CheckSecret(name string) error {
	if g != nil {
		for _, pat := range g.secrets {
			if grant.MatchGlob(pat, name) {
				return nil
			}
		}
	}
	return g.denied(KindSecret, "secret "+name, "")
}

// Secret returns key KEY of secret NAME, for ref "NAME/KEY", when the
// grants allow the secret.
func (t *Table) Secret(ref string) ([]byte, error) {
	name, key, err := ParseSecretRef(ref)
	if err != nil {
		return nil, err
	}
	if err := t.grants.CheckSecret(name); err != nil {
		return nil, err
	}
	if t.secrets == nil {
		return nil, abi.Errorf(abi.ErrNotFound, "secret %q: the host keeps no secrets (start wapper-host with --secrets-dir)", name)
	}
	v, err := t.secrets.Key(name, key)
	if err == nil && len(v) > abi.MaxSecret {
		clear(v)
		return nil, abi.Errorf(abi.ErrTooLarge, "secret %q key %q is larger than %d bytes", name, key, abi.MaxSecret)
	}
	return v, err
}
