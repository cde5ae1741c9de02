// Command image builds the container image of one static binary (such as
// bin/wapper-host), reproducibly and without a container runtime or base
// image: one layer on an empty base holding the binary at /usr/bin/NAME,
// /etc/passwd and /etc/group with a nonroot user (65532), the Mozilla
// root certificates (from golang.org/x/crypto/x509roots/fallback, pinned by
// go.mod), /etc/nsswitch.conf, /tmp and the given directories. The config
// runs the binary as 65532:65532.
//
// Every timestamp (the config's created time, its history, each file's
// mtime) is SOURCE_DATE_EPOCH (make images passes the last commit's
// time), files are written in a fixed order with fixed owners and modes,
// and compression is deterministic: the same binary and flags give the
// same image digest, on any machine.
//
//	go run ./hack/image --binary bin/wapper-host --name wapper-host \
//	    --out bin/images/wapper-host --tar bin/images/wapper-host.tar \
//	    [--push registry.example.com/wapper/wapper-host:TAG]
//
// It prints the image's manifest digest on stdout, and what it wrote on
// stderr. The image is for the binary's own platform (linux/GOARCH, read
// from the binary); multi-platform indexes are not built.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// The nonroot user and group the image runs as (distroless's number).
const (
	nonrootID = 65532
	nonroot   = "65532:65532"
	home      = "/home/nonroot"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type options struct {
	binary, name, out, tarOut, push string
	plainHTTP                       bool
	version, revision, source       string
	description                     string
	ports, dirs, files              listFlag
	epoch                           int64
}

func main() {
	var o options
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.StringVar(&o.binary, "binary", "", "static linux binary to put in the image (required)")
	fs.StringVar(&o.name, "name", "", "image and binary name: the binary goes to /usr/bin/NAME, the entrypoint (default: the binary's file name)")
	fs.StringVar(&o.out, "out", "", "write the image as an OCI image layout in this folder (replaced)")
	fs.StringVar(&o.tarOut, "tar", "", "write the image as a tarball for `docker load -i` / `podman load -i`, tagged NAME:VERSION")
	fs.StringVar(&o.push, "push", "", "push the image to this reference (REGISTRY/REPO[:TAG]); credentials from the docker config ($DOCKER_CONFIG)")
	fs.BoolVar(&o.plainHTTP, "plain-http", false, "push over plain HTTP (loopback registries only)")
	fs.StringVar(&o.version, "version", "dev", "org.opencontainers.image.version, and the tag of --tar and of the OCI layout's ref name")
	fs.StringVar(&o.revision, "revision", "", "org.opencontainers.image.revision (the source commit)")
	fs.StringVar(&o.source, "source", "https://wapper.dev/wapper", "org.opencontainers.image.source")
	fs.StringVar(&o.description, "description", "", "org.opencontainers.image.description")
	fs.Var(&o.ports, "port", "exposed port, such as 8443/tcp (repeatable)")
	fs.Var(&o.dirs, "dir", "an empty directory owned by the nonroot user, such as /var/lib/wapper (repeatable)")
	fs.Var(&o.files, "file", "an extra file SRC=/ABS/DEST, owned by root, mode 0644 (repeatable)")
	fs.Int64Var(&o.epoch, "source-date-epoch", envEpoch(), "every timestamp in the image, in seconds since 1970 (default $SOURCE_DATE_EPOCH, else 0)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: image --binary FILE [--name NAME] (--out DIR | --tar FILE | --push REF)... [flags]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if err := o.check(); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func envEpoch() int64 {
	n, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

func (o *options) check() error {
	if o.binary == "" {
		return errors.New("--binary is required")
	}
	if o.name == "" {
		o.name = filepath.Base(o.binary)
	}
	if strings.ContainsAny(o.name, "/ \t\n") || o.name == "." || o.name == ".." {
		return fmt.Errorf("--name %q: want a plain file name", o.name)
	}
	if o.out == "" && o.tarOut == "" && o.push == "" {
		return errors.New("nothing to do: give --out, --tar or --push")
	}
	if _, err := name.NewTag(o.name + ":" + o.version); err != nil {
		return fmt.Errorf("--version %q is not a valid tag: %w", o.version, err)
	}
	for _, p := range o.ports {
		num, proto, _ := strings.Cut(p, "/")
		if n, err := strconv.Atoi(num); err != nil || n < 1 || n > 65535 || (proto != "" && proto != "tcp" && proto != "udp") {
			return fmt.Errorf("--port %q: want PORT[/tcp|/udp]", p)
		}
	}
	for _, d := range o.dirs {
		if !path.IsAbs(d) || path.Clean(d) != d || d == "/" {
			return fmt.Errorf("--dir %q: want a clean absolute path", d)
		}
	}
	for _, f := range o.files {
		src, dst, ok := strings.Cut(f, "=")
		if !ok || src == "" || !path.IsAbs(dst) || path.Clean(dst) != dst {
			return fmt.Errorf("--file %q: want SRC=/ABS/DEST", f)
		}
	}
	if o.epoch < 0 {
		return fmt.Errorf("--source-date-epoch %d is negative", o.epoch)
	}
	return nil
}

func run(ctx context.Context, o options) error {
	plat, err := platformOf(o.binary)
	if err != nil {
		return err
	}
	img, err := build(o, plat)
	if err != nil {
		return err
	}
	dig, err := img.Digest()
	if err != nil {
		return err
	}
	if o.out != "" {
		if err := writeLayout(o.out, img, plat, o.version); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "%s: OCI image layout %s (%s)\n", o.name, o.out, plat)
	}
	if o.tarOut != "" {
		tag, err := name.NewTag(o.name + ":" + o.version)
		if err != nil {
			return err
		}
		if err := tarball.WriteToFile(o.tarOut, tag, img); err != nil {
			return fmt.Errorf("write %s: %w", o.tarOut, err)
		}
		fmt.Fprintf(os.Stderr, "%s: tarball %s, loads as %s (%s)\n", o.name, o.tarOut, tag, plat)
	}
	if o.push != "" {
		ref, err := pushImage(ctx, o.push, o.plainHTTP, img)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "%s: pushed %s@%s\n", o.name, ref.Context(), dig)
	}
	fmt.Println(dig)
	return nil
}

// platformOf reads a binary's platform and refuses one that an empty
// image cannot run: not linux, or dynamically linked.
func platformOf(bin string) (v1.Platform, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return v1.Platform{}, fmt.Errorf("%s: not a linux (ELF) binary: %w", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return v1.Platform{}, fmt.Errorf("%s is dynamically linked (it names an interpreter); an empty image cannot run it: build it with CGO_ENABLED=0", bin)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return v1.Platform{}, fmt.Errorf("%s needs shared libraries %v; build it with CGO_ENABLED=0", bin, libs)
	}
	plat := v1.Platform{OS: "linux", Architecture: elfArch(f)}
	// A Go binary says what it was built for; trust that over the ELF
	// header, and take the variant (GOARM) from it.
	if bi, err := buildinfo.ReadFile(bin); err == nil {
		for _, s := range bi.Settings {
			switch s.Key {
			case "GOOS":
				plat.OS = s.Value
			case "GOARCH":
				plat.Architecture = s.Value
			case "GOARM":
				plat.Variant = "v" + strings.TrimSuffix(strings.TrimSuffix(s.Value, ",softfloat"), ",hardfloat")
			case "CGO_ENABLED":
				if s.Value == "1" {
					return v1.Platform{}, fmt.Errorf("%s was built with CGO_ENABLED=1; build it with CGO_ENABLED=0", bin)
				}
			}
		}
	}
	if plat.OS != "linux" || plat.Architecture == "" {
		return v1.Platform{}, fmt.Errorf("%s is for %s/%s; the image needs a linux binary", bin, plat.OS, plat.Architecture)
	}
	if plat.Architecture == "arm64" {
		plat.Variant = "v8"
	}
	return plat, nil
}

func elfArch(f *elf.File) string {
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64"
	case elf.EM_AARCH64:
		return "arm64"
	case elf.EM_ARM:
		return "arm"
	case elf.EM_386:
		return "386"
	case elf.EM_RISCV:
		return "riscv64"
	case elf.EM_S390:
		return "s390x"
	case elf.EM_LOONGARCH:
		return "loong64"
	case elf.EM_PPC64:
		if f.ByteOrder.String() == "LittleEndian" {
			return "ppc64le"
		}
		return "ppc64"
	}
	return ""
}

func build(o options, plat v1.Platform) (v1.Image, error) {
	created := time.Unix(o.epoch, 0).UTC()
	b, err := rootfs(o, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithCompressionLevel(gzip.BestCompression), tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}
	labels := map[string]string{
		"org.opencontainers.image.title":   o.name,
		"org.opencontainers.image.version": o.version,
		"org.opencontainers.image.source":  o.source,
		"org.opencontainers.image.created": created.Format(time.RFC3339),
	}
	if o.revision != "" {
		labels["org.opencontainers.image.revision"] = o.revision
	}
	if o.description != "" {
		labels["org.opencontainers.image.description"] = o.description
	}
	var ports map[string]struct{}
	for _, p := range o.ports {
		if !strings.Contains(p, "/") {
			p += "/tcp"
		}
		if ports == nil {
			ports = map[string]struct{}{}
		}
		ports[p] = struct{}{}
	}
	cf := &v1.ConfigFile{
		Architecture: plat.Architecture,
		OS:           plat.OS,
		Variant:      plat.Variant,
		Created:      v1.Time{Time: created},
		Config: v1.Config{
			Entrypoint:   []string{"/usr/bin/" + o.name},
			User:         nonroot,
			WorkingDir:   home,
			Env:          []string{"PATH=/usr/bin", "HOME=" + home},
			ExposedPorts: ports,
			Labels:       labels,
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	base, err = mutate.ConfigFile(base, cf)
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "hack/image --binary " + filepath.Base(o.binary) + " --name " + o.name,
			Comment:   "static binary, nonroot user, CA certificates",
		},
	})
	if err != nil {
		return nil, err
	}
	// The labels again as manifest annotations, where registries show them.
	return mutate.Annotations(img, labels).(v1.Image), nil
}

// entry is one file or directory of the layer.
type entry struct {
	mode     int64
	uid, gid int
	data     []byte // nil for a directory
}

// rootfs returns the layer's tar stream: every path in sorted order, with
// its parents, mtime created, numeric owners only.
func rootfs(o options, created time.Time) ([]byte, error) {
	bin, err := os.ReadFile(o.binary)
	if err != nil {
		return nil, err
	}
	files := map[string]entry{
		"/etc/passwd": {mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\n" +
			"nonroot:x:65532:65532:nonroot:" + home + ":/sbin/nologin\n")},
		"/etc/group":                         {mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		"/etc/nsswitch.conf":                 {mode: 0o644, data: []byte("hosts: files dns\n")},
		"/etc/ssl/certs/ca-certificates.crt": {mode: 0o644, data: caBundle()},
		"/usr/bin/" + o.name:                 {mode: 0o755, data: bin},
		"/tmp":                               {mode: 0o1777},
		home:                                 {mode: 0o700, uid: nonrootID, gid: nonrootID},
	}
	for _, d := range o.dirs {
		if _, dup := files[d]; dup {
			return nil, fmt.Errorf("--dir %s is already in the image", d)
		}
		files[d] = entry{mode: 0o755, uid: nonrootID, gid: nonrootID}
	}
	for _, f := range o.files {
		src, dst, _ := strings.Cut(f, "=")
		if _, dup := files[dst]; dup {
			return nil, fmt.Errorf("--file %s: %s is already in the image", f, dst)
		}
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		files[dst] = entry{mode: 0o644, data: b}
	}
	for p := range files {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if e, ok := files[d]; ok {
				if e.data != nil {
					return nil, fmt.Errorf("%s is a file and the parent of %s", d, p)
				}
				continue
			}
			files[d] = entry{mode: 0o755}
		}
	}
	names := make([]string, 0, len(files))
	for p := range files {
		names = append(names, p)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range names {
		e := files[p]
		h := &tar.Header{
			Name:    strings.TrimPrefix(p, "/"),
			Mode:    e.mode,
			Uid:     e.uid,
			Gid:     e.gid,
			ModTime: created,
			Format:  tar.FormatPAX,
		}
		if e.data == nil {
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// caBundle returns the NSS root certificates that carry no constraint
// beyond what a PEM bundle can say (a root distrusted after a date is left
// out rather than trusted for ever), in the fallback module's order.
func caBundle() []byte {
	var b bytes.Buffer
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue
		}
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate})
	}
	return b.Bytes()
}

// writeLayout replaces dir with an OCI image layout holding img, named
// version (org.opencontainers.image.ref.name). It refuses to replace a
// folder that is not an OCI layout.
func writeLayout(dir string, img v1.Image, plat v1.Platform, version string) error {
	if _, err := os.Stat(dir); err == nil {
		if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
			if ents, _ := os.ReadDir(dir); len(ents) > 0 {
				return fmt.Errorf("--out %s exists and is not an OCI image layout; not replacing it", dir)
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write %s: %w", dir, err)
	}
	if err := p.WriteImage(img); err != nil {
		return fmt.Errorf("write %s: %w", dir, err)
	}
	// The index entry names the image's platform and version, as OCI
	// image layouts for one image usually do.
	desc := v1.Descriptor{MediaType: types.OCIManifestSchema1, Platform: &plat,
		Annotations: map[string]string{"org.opencontainers.image.ref.name": version}}
	if desc.Digest, err = img.Digest(); err != nil {
		return err
	}
	if desc.Size, err = img.Size(); err != nil {
		return err
	}
	if err := p.AppendDescriptor(desc); err != nil {
		return fmt.Errorf("write %s: %w", dir, err)
	}
	return nil
}

func pushImage(ctx context.Context, ref string, plainHTTP bool, img v1.Image) (name.Reference, error) {
	var nopts []name.Option
	if plainHTTP {
		r, err := name.ParseReference(ref)
		if err != nil {
			return nil, fmt.Errorf("--push %q: %w", ref, err)
		}
		if !isLoopback(r.Context().RegistryStr()) {
			return nil, fmt.Errorf("--plain-http is for loopback registries only, not %s", r.Context().RegistryStr())
		}
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return nil, fmt.Errorf("--push %q: %w", ref, err)
	}
	if err := remote.Write(r, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return nil, fmt.Errorf("push %s: %w", r, err)
	}
	return r, nil
}

func isLoopback(hostport string) bool {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		h = hostport
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}
