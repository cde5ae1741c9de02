// Package client pushes, pulls, inspects, tags and lists wapper plugin
// artifacts on any OCI registry, through oras-go.
//
// Every pull is verified: the manifest against the digest the registry
// names (and the one in the reference, if any), the module against the
// digest in the manifest. Credentials come from flags or from the docker
// config file; plain HTTP is allowed only for loopback registries.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"wapper.dev/wapper/registry/artifact"
)

// MaxManifestSize bounds the manifests the client reads.
const MaxManifestSize = 4 << 20

// Errors callers test for with errors.Is.
var (
	// ErrUnreachable means no HTTP answer came from the registry.
	ErrUnreachable = errors.New("registry unreachable")
	// ErrNotFound means the registry has no such manifest or tag.
	ErrNotFound = errors.New("not found in registry")
	// ErrDigest means content did not match its digest.
	ErrDigest = errors.New("digest mismatch")
)

// Options configure a Client.
type Options struct {
	// PlainHTTP talks HTTP instead of HTTPS; allowed only for loopback
	// registries (localhost, 127.0.0.0/8, ::1).
	PlainHTTP bool
	// Insecure skips TLS certificate verification.
	Insecure bool
	// CAFile adds PEM certificates to trust.
	CAFile string
	// Username and Password, when Username is set, are used for every
	// registry instead of the docker config file.
	Username, Password string
	// DockerConfig is the docker config file holding credentials; empty
	// means the default ($DOCKER_CONFIG/config.json or
	// ~/.docker/config.json). A missing file means no credentials.
	DockerConfig string
	// Progress receives a progress line for each transfer; nil for none.
	Progress io.Writer
	// Logger receives transfer logs; nil means slog.Default().
	Logger *slog.Logger
	// FlagPrefix is what the command's registry flags start with after
	// "--", for the hints in errors: empty for wapper's own --plain-http
	// and --ca-file, "registry-" for wapper-host's and wapper-cloud's
	// --registry-plain-http and --registry-ca-file.
	FlagPrefix string
}

// flag names one of the command's registry flags, such as --plain-http.
func (o Options) flag(name string) string { return "--" + o.FlagPrefix + name }

// credentialsHint says how to give credentials for host.
func (o Options) credentialsHint(host string) string {
	if o.FlagPrefix == "" {
		return "pass --username/--password or log in so the docker config file has credentials for " + host
	}
	return "log in (docker login " + host + ") so the docker config file the command reads has credentials for it"
}

// Client talks to OCI registries.
type Client struct {
	opts Options
	http *http.Client
	cred auth.CredentialFunc
	log  *slog.Logger
}

// New returns a Client for opts.
func New(opts Options) (*Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: opts.Insecure} //nolint:gosec // the user asked with --insecure
	if opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", opts.CAFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	c := &Client{opts: opts, http: &http.Client{Transport: tr}, log: opts.Logger}
	if c.log == nil {
		c.log = slog.Default()
	}
	switch {
	case opts.Username != "":
		cred := auth.Credential{Username: opts.Username, Password: opts.Password}
		c.cred = func(context.Context, string) (auth.Credential, error) { return cred, nil }
	default:
		var st credentials.Store
		var err error
		if opts.DockerConfig != "" {
			st, err = credentials.NewStore(opts.DockerConfig, credentials.StoreOptions{})
		} else {
			st, err = credentials.NewStoreFromDocker(credentials.StoreOptions{})
		}
		if err != nil {
			hint := "fix the file or pass --username/--password"
			if opts.FlagPrefix != "" {
				hint = "fix the file"
			}
			return nil, fmt.Errorf("read docker config for credentials: %w (%s)", err, hint)
		}
		c.cred = credentials.Credential(st)
	}
	return c, nil
}

// IsLoopback reports whether a registry host[:port] is a loopback address.
func IsLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *Client) repo(ref string) (*remote.Repository, registry.Reference, error) {
	r, err := registry.ParseReference(ref)
	if err != nil {
		return nil, r, fmt.Errorf("reference %q: %w (want HOST[:PORT]/REPO[:TAG|@DIGEST])", ref, err)
	}
	if c.opts.PlainHTTP && !IsLoopback(r.Registry) {
		return nil, r, fmt.Errorf("%s is allowed only for loopback registries, not %s: use TLS (with %s for a private CA)", c.opts.flag("plain-http"), r.Registry, c.opts.flag("ca-file"))
	}
	repo, err := remote.NewRepository(r.Registry + "/" + r.Repository)
	if err != nil {
		return nil, r, err
	}
	repo.PlainHTTP = c.opts.PlainHTTP
	repo.Client = &auth.Client{Client: c.http, Credential: c.cred, Cache: auth.NewCache()}
	return repo, r, nil
}

// wrap turns transport and protocol errors into errors that tell the user
// what to do.
func (c *Client) wrap(what, host string, err error) error {
	if err == nil {
		return nil
	}
	var ue *url.Error
	var resp *errcode.ErrorResponse
	switch {
	case errors.Is(err, auth.ErrBasicCredentialNotFound),
		errors.As(err, &resp) && resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("%s: %w (%s)", what, err, c.opts.credentialsHint(host))
	case errors.As(err, &resp) && resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%s: %w (the credential for %s may not do this)", what, err, host)
	case errors.Is(err, errdef.ErrNotFound), errors.As(err, &resp) && resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%s: %w: %w", what, ErrNotFound, err)
	case errors.As(err, &ue):
		hint := "check the address and that the registry runs"
		if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
			hint = "the registry speaks plain HTTP: pass " + c.opts.flag("plain-http") + " (loopback only)"
		}
		return fmt.Errorf("%s: %w: %s: %w (%s)", what, ErrUnreachable, host, err, hint)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Push uploads a built artifact to ref (HOST/REPO[:TAG]; the tag defaults
// to "latest") and returns the manifest descriptor.
func (c *Client) Push(ctx context.Context, ref string, b *artifact.Built) (ocispec.Descriptor, error) {
	repo, r, err := c.repo(ref)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if r.Reference == "" {
		r.Reference = "latest"
	}
	if _, err := r.Digest(); err == nil {
		return ocispec.Descriptor{}, fmt.Errorf("push to %q: give a tag, not a digest (the digest is computed)", ref)
	}
	for _, blob := range []struct {
		desc ocispec.Descriptor
		data []byte
	}{{b.WasmDesc, b.Wasm}, {b.ConfigDesc, b.Config}} {
		ok, err := repo.Exists(ctx, blob.desc)
		if err != nil {
			return ocispec.Descriptor{}, c.wrap("check blob "+blob.desc.Digest.String(), r.Registry, err)
		}
		if ok {
			c.log.Debug("blob already present", "digest", blob.desc.Digest)
			continue
		}
		rd := c.progress("push", blob.desc, bytes.NewReader(blob.data))
		if err := repo.Push(ctx, blob.desc, rd); err != nil {
			return ocispec.Descriptor{}, c.wrap("push blob "+blob.desc.Digest.String(), r.Registry, err)
		}
		rd.done()
	}
	if err := repo.PushReference(ctx, b.ManifestDesc, bytes.NewReader(b.Manifest), r.Reference); err != nil {
		return ocispec.Descriptor{}, c.wrap("push manifest", r.Registry, err)
	}
	c.log.Debug("pushed", "ref", r.String(), "digest", b.ManifestDesc.Digest)
	return b.ManifestDesc, nil
}

// Manifest is a fetched and verified manifest.
type Manifest struct {
	// Ref is the reference as parsed, with the registry and repository.
	Ref registry.Reference
	// Desc is the manifest's descriptor; its digest is verified.
	Desc ocispec.Descriptor
	// Raw is the manifest as the registry served it.
	Raw []byte
}

// FetchManifest resolves ref and returns its manifest, verified against
// its digest (and against the reference's digest when it has one).
func (c *Client) FetchManifest(ctx context.Context, ref string) (*Manifest, error) {
	repo, r, err := c.repo(ref)
	if err != nil {
		return nil, err
	}
	if r.Reference == "" {
		r.Reference = "latest"
	}
	desc, rc, err := repo.FetchReference(ctx, r.Reference)
	if err != nil {
		return nil, c.wrap("fetch manifest "+r.String(), r.Registry, err)
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, MaxManifestSize+1))
	if err != nil {
		return nil, c.wrap("read manifest "+r.String(), r.Registry, err)
	}
	if len(raw) > MaxManifestSize {
		return nil, fmt.Errorf("manifest of %s is larger than %d bytes; refusing it", r, MaxManifestSize)
	}
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("registry named an invalid manifest digest for %s: %w", r, err)
	}
	if got := desc.Digest.Algorithm().FromBytes(raw); got != desc.Digest {
		return nil, fmt.Errorf("manifest of %s: %w: registry said %s, content is %s", r, ErrDigest, desc.Digest, got)
	}
	if want, err := r.Digest(); err == nil && want != desc.Digest {
		return nil, fmt.Errorf("manifest of %s: %w: got %s", r, ErrDigest, desc.Digest)
	}
	desc.Size = int64(len(raw))
	return &Manifest{Ref: r, Desc: desc, Raw: raw}, nil
}

// Pulled is a pulled plugin.
type Pulled struct {
	Manifest *Manifest
	Artifact *artifact.Artifact
	// Wasm is the module, verified against the manifest's layer digest.
	Wasm []byte
}

// Pull fetches the plugin at ref and verifies every digest on the way.
// A manifest that is not a Wasm plugin artifact is refused with an error
// wrapping artifact.ErrNotWapperArtifact.
func (c *Client) Pull(ctx context.Context, ref string) (*Pulled, error) {
	m, err := c.FetchManifest(ctx, ref)
	if err != nil {
		return nil, err
	}
	a, err := artifact.Parse(m.Desc.MediaType, m.Raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Ref, err)
	}
	wasm, err := c.FetchBlob(ctx, m.Ref, a.Module)
	if err != nil {
		return nil, err
	}
	return &Pulled{Manifest: m, Artifact: a, Wasm: wasm}, nil
}

// FetchBlob downloads one blob of ref's repository and verifies its size
// and digest.
func (c *Client) FetchBlob(ctx context.Context, ref registry.Reference, desc ocispec.Descriptor) ([]byte, error) {
	repo, r, err := c.repo(ref.Registry + "/" + ref.Repository)
	if err != nil {
		return nil, err
	}
	rc, err := repo.Blobs().Fetch(ctx, desc)
	if err != nil {
		var ue *url.Error
		var resp *errcode.ErrorResponse
		if !errors.As(err, &ue) && !errors.As(err, &resp) && !errors.Is(err, errdef.ErrNotFound) {
			// oras checks the size the registry announces against the
			// manifest's before any byte is read.
			return nil, fmt.Errorf("blob %s from %s: %w: %w", desc.Digest, r.Registry, ErrDigest, err)
		}
		return nil, c.wrap("fetch blob "+desc.Digest.String(), r.Registry, err)
	}
	defer rc.Close()
	pr := c.progress("pull", desc, rc)
	b, err := content.ReadAll(pr, desc)
	if err != nil {
		if errors.Is(err, content.ErrMismatchedDigest) || errors.Is(err, content.ErrTrailingData) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("blob %s from %s: %w: %w", desc.Digest, r.Registry, ErrDigest, err)
		}
		return nil, c.wrap("read blob "+desc.Digest.String(), r.Registry, err)
	}
	pr.done()
	return b, nil
}

// Tag points dst at the manifest src names. Within one repository it
// only adds the tag; across repositories it copies the artifact.
func (c *Client) Tag(ctx context.Context, src, dst string) (ocispec.Descriptor, error) {
	srepo, sr, err := c.repo(src)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	drepo, dr, err := c.repo(dst)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if sr.Reference == "" {
		sr.Reference = "latest"
	}
	if dr.Reference == "" {
		return ocispec.Descriptor{}, fmt.Errorf("destination %q needs a tag", dst)
	}
	if sr.Registry == dr.Registry && sr.Repository == dr.Repository {
		desc, err := srepo.Resolve(ctx, sr.Reference)
		if err != nil {
			return desc, c.wrap("resolve "+sr.String(), sr.Registry, err)
		}
		if err := srepo.Tag(ctx, desc, dr.Reference); err != nil {
			return desc, c.wrap("tag "+dr.String(), dr.Registry, err)
		}
		return desc, nil
	}
	desc, err := oras.Copy(ctx, srepo, sr.Reference, drepo, dr.Reference, oras.DefaultCopyOptions)
	if err != nil {
		return desc, c.wrap("copy "+sr.String()+" to "+dr.String(), dr.Registry, err)
	}
	return desc, nil
}

// Tags lists the tags of repository repo (HOST/REPO) in the order the
// registry returns them.
func (c *Client) Tags(ctx context.Context, repoRef string) ([]string, error) {
	repo, r, err := c.repo(repoRef)
	if err != nil {
		return nil, err
	}
	var tags []string
	err = repo.Tags(ctx, "", func(t []string) error {
		tags = append(tags, t...)
		return nil
	})
	return tags, c.wrap("list tags of "+r.Registry+"/"+r.Repository, r.Registry, err)
}

// Resolve returns the manifest descriptor ref points to.
func (c *Client) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	repo, r, err := c.repo(ref)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if r.Reference == "" {
		r.Reference = "latest"
	}
	desc, err := repo.Resolve(ctx, r.Reference)
	return desc, c.wrap("resolve "+r.String(), r.Registry, err)
}

// DigestOf is the sha256 digest of b, the digest wapper pins modules by.
func DigestOf(b []byte) digest.Digest { return digest.FromBytes(b) }

// --- progress -------------------------------------------------------------

// progressReader reports a transfer's progress in steps of a tenth.
type progressReader struct {
	r     io.Reader
	w     io.Writer
	label string
	total int64
	n     int64
	step  int64
	start time.Time
	log   *slog.Logger
}

func (c *Client) progress(verb string, desc ocispec.Descriptor, r io.Reader) *progressReader {
	enc := desc.Digest.Encoded()
	if len(enc) > 12 {
		enc = enc[:12]
	}
	return &progressReader{r: r, w: c.opts.Progress, label: verb + " " + enc, total: desc.Size, start: time.Now(), log: c.log}
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if p.w != nil && p.total > 0 {
		if s := p.n * 10 / p.total; s > p.step {
			p.step = s
			fmt.Fprintf(p.w, "\r%s %s/%s %3d%%", p.label, size(p.n), size(p.total), p.n*100/p.total)
		}
	}
	return n, err
}

func (p *progressReader) done() {
	if p.w != nil {
		fmt.Fprintf(p.w, "\r%s %s done\n", p.label, size(p.n))
	}
	p.log.Debug("transfer done", "what", p.label, "bytes", p.n, "dur", time.Since(p.start))
}

func size(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
