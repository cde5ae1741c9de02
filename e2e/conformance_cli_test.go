package e2e

// `bin/wapper plugin conformance` as an SDK author runs it: a real process
// on both SDK builds of the conformance plugin, and on a plugin that is
// not one, which is sent to `plugin test` with a non-zero exit (and fails
// the cases with --force).

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"wapper.dev/wapper/internal/testenv"
)

func wapperPluginTest(t *testing.T, args ...string) (string, int) {
	t.Helper()
	bin := testenv.Artifact(t, "wapper")
	out, err := exec.Command(bin, append([]string{"plugin", "conformance"}, args...)...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	default:
		t.Fatalf("run %s: %v", bin, err)
		return "", 0
	}
}

func TestWapperPluginTestCLI(t *testing.T) {
	for _, plugin := range []string{"conformance", "conformance-rust"} {
		// Enough cycles that the memory cases' bound (a quarter of what
		// the cycles allocate) is above one step of the Go guest's heap
		// growth (576 KiB seen), which 20 cycles were not.
		out, code := wapperPluginTest(t, "--cycles", "100", testenv.TestPlugin(t, plugin))
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "FAIL  ") {
				t.Errorf("%s: %s", plugin, line)
			}
		}
		if !strings.Contains(out, "PASS  memory/devices") || !strings.Contains(out, "PASS  restart/panic") {
			t.Errorf("%s: report lacks passing memory and restart cases:\n%s", plugin, out)
		}
		if code != 0 {
			t.Errorf("%s: exit %d:\n%s", plugin, code, out)
		}
	}
	out, code := wapperPluginTest(t, testenv.TestPlugin(t, "faulty"))
	if code == 0 || !strings.Contains(out, "is not a conformance plugin") || !strings.Contains(out, "wapper plugin test") {
		t.Fatalf("faulty plugin: exit %d\n%s", code, out)
	}
	out, code = wapperPluginTest(t, "--force", "--run", "values,poll", testenv.TestPlugin(t, "faulty"))
	if code == 0 || !strings.Contains(out, "FAIL  poll") || !strings.Contains(out, "conformance cases failed") {
		t.Fatalf("faulty plugin with --force: exit %d\n%s", code, out)
	}
}
