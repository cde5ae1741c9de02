package regtest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"wapper.dev/wapper/internal/testenv"
)

// Conformance is the OCI distribution-spec conformance program: module
// and version as the Go module proxy serves it.
const (
	ConformanceModule  = "github.com/opencontainers/distribution-spec/conformance"
	ConformanceVersion = "v0.0.0-20260831232431-97274622c111"
)

// ConformanceBin returns the conformance program, built once and cached
// under the user's cache directory (~/.cache/wapper).
func ConformanceBin(t testing.TB) string {
	t.Helper()
	cacheRoot, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(cacheRoot, "wapper", "oci-conformance-"+ConformanceVersion)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := buildConformance(t, bin); err != nil {
		testenv.Missing(t, "the OCI conformance program", fmt.Sprintf("building it from the Go module proxy failed: %v", err))
	}
	return bin
}

func buildConformance(t testing.TB, bin string) error {
	work := t.TempDir()
	env := append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	dl := exec.Command("go", "mod", "download", "-json", ConformanceModule+"@"+ConformanceVersion)
	dl.Dir, dl.Env = work, env
	out, err := dl.Output()
	if err != nil {
		return fmt.Errorf("go mod download: %v", err)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		return fmt.Errorf("go mod download: %s %s", info.Error, out)
	}
	src := filepath.Join(work, "src")
	if out, err := exec.Command("cp", "-r", info.Dir, src).CombinedOutput(); err != nil {
		return fmt.Errorf("copy sources: %v %s", err, out)
	}
	if out, err := exec.Command("chmod", "-R", "u+w", src).CombinedOutput(); err != nil {
		return fmt.Errorf("chmod: %v %s", err, out)
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return err
	}
	tmp := bin + ".tmp"
	b := exec.Command("go", "build", "-o", tmp, ".")
	b.Dir, b.Env = src, append(env, "CGO_ENABLED=0")
	if out, err := b.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v %s", err, out)
	}
	return os.Rename(tmp, bin)
}
