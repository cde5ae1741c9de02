package layering_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"wapper.dev/wapper/internal/testenv"
)

const mod = "wapper.dev/wapper/"

// TestDependencyDirection fails when a package's non-test dependencies
// cross one of the module's boundaries.
func TestDependencyDirection(t *testing.T) {
	goBin := testenv.Bin(t, "go")
	for _, c := range []struct {
		dir, pkgs string // dir is the module's folder (abi and sdk-go are modules of their own)
		forbidden []string
	}{
		{".", "./cloud/...", []string{mod + "host/"}},
		{".", "./host/...", []string{mod + "cloud/"}},
		{"abi", "./...", []string{mod + "host/", mod + "cloud/", mod + "apis/", mod + "internal/", mod + "sdk-go"}},
		{"sdk-go", "./...", []string{mod + "host/", mod + "cloud/", mod + "apis/", mod + "internal/"}},
	} {
		cmd := exec.Command(goBin, "list", "-deps", "-f", "{{.ImportPath}}", c.pkgs)
		cmd.Dir = filepath.Join(testenv.Root(), c.dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", c.pkgs, err, out)
		}
		for dep := range strings.FieldsSeq(string(out)) {
			for _, f := range c.forbidden {
				if strings.HasPrefix(dep, f) {
					t.Errorf("%s in %s depends on %s", c.pkgs, c.dir, dep)
				}
			}
		}
	}
}
