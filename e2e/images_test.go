package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"wapper.dev/wapper/internal/regtest"
	"wapper.dev/wapper/internal/testenv"
)

// imageNames are the images `make images` builds (hack/image/build.sh).
var imageNames = []string{"wapper-host", "wapper-cloud"}

// buildImages runs hack/image/build.sh (what make images runs) into a new
// folder, with extra environment.
func buildImages(t *testing.T, env ...string) string {
	t.Helper()
	out := t.TempDir()
	cmd := exec.Command(filepath.Join(testenv.Root(), "hack", "image", "build.sh"), out)
	cmd.Dir = testenv.Root()
	cmd.Env = append(os.Environ(), env...)
	begin := time.Now()
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("hack/image/build.sh: %v\n%s", err, b)
	}
	t.Logf("hack/image/build.sh %s (%s):\n%s", out, time.Since(begin).Round(time.Millisecond), b)
	return out
}

func gitOut(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = testenv.Root()
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %v: %v", args, err)
	}
	return strings.TrimSpace(string(b))
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// TestImages builds the wapper-host and wapper-cloud images twice, as make
// images does, and checks that both builds give the same digests (and
// byte-identical tarballs); pushes the first to the embedded registry and
// pulls each image back by digest; checks its config (nonroot user,
// entrypoint, labels, created time), its one layer (owners, modes, fixed
// mtimes, passwd, CA certificates) and runs the binary from the layer with
// --help; and runs the image itself where a container runtime works.
func TestImages(t *testing.T) {
	testenv.Slow(t, "builds both binaries and images twice (about a minute with a warm build cache)")
	reg := regtest.Start(t, false)
	dockerCfg := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(regtest.User + ":" + regtest.Password))
	cfg := `{"auths":{"` + reg.Addr + `":{"auth":"` + auth + `"}}}`
	if err := os.WriteFile(filepath.Join(dockerCfg, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	epoch := gitOut(t, "log", "-1", "--format=%ct")
	revision := gitOut(t, "rev-parse", "HEAD")
	const version = "v0.0.0-test.1"

	first := buildImages(t, "DOCKER_CONFIG="+dockerCfg, "IMAGE_PUSH="+reg.Addr+"/wapper", "IMAGE_PLAIN_HTTP=1", "IMAGE_VERSION="+version)
	second := buildImages(t, "IMAGE_VERSION="+version)

	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	created := time.Unix(sec, 0).UTC()
	for _, n := range imageNames {
		t.Run(n, func(t *testing.T) {
			digest := strings.TrimSpace(string(must(os.ReadFile(filepath.Join(first, n+".digest")))))
			again := strings.TrimSpace(string(must(os.ReadFile(filepath.Join(second, n+".digest")))))
			if digest != again || !strings.HasPrefix(digest, "sha256:") {
				t.Fatalf("two builds of %s: %s and %s: not reproducible", n, digest, again)
			}
			for _, f := range []string{n + ".tar", "bin/" + n} {
				if a, b := fileSum(t, filepath.Join(first, f)), fileSum(t, filepath.Join(second, f)); a != b {
					t.Errorf("two builds of %s differ", f)
				}
			}
			// The OCI layout holds the same image.
			idx, err := layout.ImageIndexFromPath(filepath.Join(first, n))
			if err != nil {
				t.Fatal(err)
			}
			im, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			if len(im.Manifests) != 1 || im.Manifests[0].Digest.String() != digest ||
				im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != version ||
				im.Manifests[0].Platform == nil || im.Manifests[0].Platform.Architecture != runtime.GOARCH {
				t.Fatalf("OCI layout index: %+v", im.Manifests)
			}

			// Pulled back from the registry by digest, and by tag.
			ropts := []remote.Option{remote.WithAuth(&authn.Basic{Username: regtest.User, Password: regtest.Password})}
			byDigest := must(name.ParseReference(reg.Addr+"/wapper/"+n+"@"+digest, name.Insecure))
			img, err := remote.Image(byDigest, ropts...)
			if err != nil {
				t.Fatalf("pull %s: %v", byDigest, err)
			}
			if d := must(img.Digest()).String(); d != digest {
				t.Fatalf("pulled %s, digest %s", byDigest, d)
			}
			tagged, err := remote.Head(must(name.ParseReference(reg.Addr+"/wapper/"+n+":"+version, name.Insecure)), ropts...)
			if err != nil || tagged.Digest.String() != digest {
				t.Fatalf("tag %s: %v %v", version, tagged, err)
			}
			checkImageConfig(t, img, n, created, revision, version)
			bin := checkImageLayer(t, img, n, created)
			if !bytes.Equal(bin, must(os.ReadFile(filepath.Join(first, "bin", n)))) {
				t.Error("the binary in the image is not the one built")
			}
			path := filepath.Join(t.TempDir(), n)
			if err := os.WriteFile(path, bin, 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(path, "--help").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Usage:") {
				t.Fatalf("%s --help from the image: %v\n%s", n, err, out)
			}
			runImage(t, img, first, n, version)
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func checkImageConfig(t *testing.T, img v1.Image, n string, created time.Time, revision, version string) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" || !slices.Equal(c.Entrypoint, []string{"/usr/bin/" + n}) || len(c.Cmd) != 0 || c.WorkingDir != "/home/nonroot" {
		t.Errorf("config: user %q entrypoint %q cmd %q workdir %q", c.User, c.Entrypoint, c.Cmd, c.WorkingDir)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	if !cf.Created.Time.Equal(created) {
		t.Errorf("created %s, want the last commit's time %s", cf.Created.Time, created)
	}
	for _, h := range cf.History {
		if !h.Created.Time.Equal(created) {
			t.Errorf("history entry created %s", h.Created.Time)
		}
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.revision": revision,
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.source":   "https://wapper.dev/wapper",
		"org.opencontainers.image.title":    n,
	} {
		if got := c.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	_, hasLink := c.ExposedPorts["8443/tcp"]
	if hasLink != (n == "wapper-cloud") {
		t.Errorf("exposed ports %v", c.ExposedPorts)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.Annotations["org.opencontainers.image.revision"] != revision || len(m.Layers) != 1 {
		t.Errorf("manifest: annotations %v, %d layers", m.Annotations, len(m.Layers))
	}
}

// checkImageLayer reads the image's file system and returns the binary.
func checkImageLayer(t *testing.T, img v1.Image, n string, created time.Time) []byte {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	files := map[string][]byte{}
	hdrs := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(created) {
			t.Errorf("%s: mtime %s, want %s", h.Name, h.ModTime, created)
		}
		// Directories as "etc/", whatever the layer's spelling.
		h.Name = strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		if h.Typeflag == tar.TypeDir {
			h.Name += "/"
		}
		hdrs[h.Name] = h
		if h.Typeflag == tar.TypeReg {
			files[h.Name] = must(io.ReadAll(tr))
		}
	}
	binName := "usr/bin/" + n
	if h := hdrs[binName]; h == nil || h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 {
		t.Fatalf("%s: %+v (want root-owned, 0755)", binName, h)
	}
	if !strings.Contains(string(files["etc/passwd"]), "nonroot:x:65532:65532:") || !strings.Contains(string(files["etc/group"]), "nonroot:x:65532:") {
		t.Errorf("passwd %q group %q", files["etc/passwd"], files["etc/group"])
	}
	if h := hdrs["home/nonroot/"]; h == nil || h.Uid != 65532 {
		t.Errorf("home/nonroot: %+v", h)
	}
	if h := hdrs["tmp/"]; h == nil || h.Mode&0o1777 != 0o1777 {
		t.Errorf("tmp: %+v", h)
	}
	dataDir := map[string]string{"wapper-host": "var/lib/wapper/", "wapper-cloud": "var/cache/wapper-cloud/"}[n]
	if h := hdrs[dataDir]; h == nil || h.Uid != 65532 {
		t.Errorf("%s: %+v (want the nonroot user's)", dataDir, h)
	}
	pool := x509.NewCertPool()
	rest, count := files["etc/ssl/certs/ca-certificates.crt"], 0
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		pool.AddCert(c)
		count++
	}
	if count < 100 {
		t.Errorf("%d CA certificates in the image", count)
	}
	for p, h := range hdrs {
		if h.Uid != 0 && !slices.Contains([]string{"home/nonroot/", dataDir}, p) {
			t.Errorf("%s is owned by %d, want root", p, h.Uid)
		}
	}
	return files[binName]
}

// runImage runs the image with --help in the first container runtime
// that works here: podman or docker with a reachable daemon (from the
// tarball), else runc or crun as root (from an OCI bundle made of the
// image's layer and config). A machine without one only logs it: no test
// peer the images need, the binary ran from the layer already.
func runImage(t *testing.T, img v1.Image, dir, n, version string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var tried []string
	for _, rt := range []string{"podman", "docker"} {
		bin, err := exec.LookPath(rt)
		if err != nil {
			continue
		}
		if out, err := exec.CommandContext(ctx, bin, "info").CombinedOutput(); err != nil {
			tried = append(tried, fmt.Sprintf("%s (not usable: %s)", bin, lastLine(out, err)))
			continue
		}
		if out, err := exec.CommandContext(ctx, bin, "load", "-i", filepath.Join(dir, n+".tar")).CombinedOutput(); err != nil {
			t.Fatalf("%s load: %v\n%s", rt, err, out)
		}
		ref := n + ":" + version
		t.Cleanup(func() { _ = exec.Command(bin, "rmi", ref).Run() })
		out, err := exec.CommandContext(ctx, bin, "run", "--rm", "--network", "none", "--read-only", "--cap-drop", "ALL", ref, "--help").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Usage:") {
			t.Fatalf("%s run %s --help: %v\n%s", rt, ref, err, out)
		}
		t.Logf("%s ran %s --help", rt, ref)
		return
	}
	for _, rt := range []string{"runc", "crun"} {
		bin, err := exec.LookPath(rt)
		if err != nil {
			continue
		}
		if os.Geteuid() != 0 {
			tried = append(tried, bin+" (needs root here)")
			continue
		}
		out, err := runBundle(ctx, t, bin, img, n)
		if err != nil && strings.Contains(string(out), "Usage:") {
			t.Fatalf("%s run %s --help: %v\n%s", rt, n, err, out)
		}
		if err != nil {
			// The runtime could not make the container (namespaces or
			// cgroups this sandbox does not give): not the image's fault.
			tried = append(tried, fmt.Sprintf("%s (could not start a container: %s)", bin, lastLine(out, err)))
			continue
		}
		if !strings.Contains(string(out), "Usage:") {
			t.Fatalf("%s run %s --help printed no usage:\n%s", rt, n, out)
		}
		t.Logf("%s ran %s --help from an OCI bundle of the image", rt, n)
		return
	}
	if len(tried) == 0 {
		tried = []string{"none of podman, docker, runc, crun is installed"}
	}
	t.Logf("image %s not run in a container runtime: %s; its binary ran from the layer instead", n, strings.Join(tried, "; "))
}

// lastLine returns the last line a failed command printed, or its error.
func lastLine(out []byte, err error) string {
	s := strings.TrimSpace(string(out))
	if s == "" {
		return err.Error()
	}
	return s[strings.LastIndex(s, "\n")+1:]
}

// runBundle unpacks the image into an OCI runtime bundle (rootfs with the
// layer's owners and modes, config.json from the image config: its user,
// working directory, environment and entrypoint, read-only root, no
// capabilities, no network) and runs it with --help.
func runBundle(ctx context.Context, t *testing.T, bin string, img v1.Image, n string) ([]byte, error) {
	t.Helper()
	bundle := t.TempDir()
	rootfs := filepath.Join(bundle, "rootfs")
	if err := unpack(img, rootfs); err != nil {
		t.Fatal(err)
	}
	cf := must(img.ConfigFile())
	uidS, gidS, _ := strings.Cut(cf.Config.User, ":")
	uid, gid := must(strconv.Atoi(uidS)), must(strconv.Atoi(gidS))
	spec := map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"terminal": false, "user": map[string]any{"uid": uid, "gid": gid},
			"args": append(slices.Clone(cf.Config.Entrypoint), "--help"),
			"env":  cf.Config.Env, "cwd": cf.Config.WorkingDir,
			"noNewPrivileges": true, "capabilities": map[string]any{},
		},
		"root":     map[string]any{"path": "rootfs", "readonly": true},
		"hostname": n,
		"mounts": []map[string]any{
			{"destination": "/proc", "type": "proc", "source": "proc"},
			{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "nodev", "mode=1777"}},
		},
		"linux": map[string]any{"namespaces": []map[string]string{
			{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
		}},
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), must(json.Marshal(spec)), 0o644); err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("wapper-image-test-%d", os.Getpid())
	t.Cleanup(func() { _ = exec.Command(bin, "delete", "--force", id).Run() })
	return exec.CommandContext(ctx, bin, "run", "--bundle", bundle, id).CombinedOutput()
}

// unpack writes the image's file system under dir with its owners and
// modes (as root).
func unpack(img v1.Image, dir string) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			return fmt.Errorf("layer path %q escapes the bundle", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected entry %s (type %c)", h.Name, h.Typeflag)
		}
		if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
			return err
		}
		if err := os.Chmod(p, os.FileMode(h.Mode&0o777)|modeBits(h.Mode)); err != nil {
			return err
		}
	}
}

func modeBits(m int64) os.FileMode {
	var fm os.FileMode
	if m&0o1000 != 0 {
		fm |= os.ModeSticky
	}
	return fm
}
