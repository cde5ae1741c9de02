package server_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"wapper.dev/wapper/internal/regtest"
	"wapper.dev/wapper/internal/testenv"
)

// TestOCIConformance runs the official distribution-spec conformance
// program, with every workflow and every data set but one enabled, against
// `wapper registry serve` running as its own process with basic auth and
// anonymous reads off. Every check must pass.
//
// The one data set left out is "sparse" (manifests naming blobs and
// manifests that were never pushed; off by default in the suite): the
// registry refuses those with MANIFEST_BLOB_UNKNOWN, as the spec allows
// and the distribution reference registry does.
func TestOCIConformance(t *testing.T) {
	testenv.Slow(t, "the OCI conformance run takes a while")
	bin := regtest.ConformanceBin(t)
	p := regtest.Serve(t, t.TempDir(), "")
	results := t.TempDir()
	cmd := exec.Command(bin)
	cmd.Dir = results
	cmd.Env = append(os.Environ(),
		"OCI_REGISTRY="+p.Addr,
		"OCI_TLS=disabled",
		"OCI_VERSION=1.1",
		"OCI_USERNAME="+regtest.User,
		"OCI_PASSWORD="+regtest.Password,
		"OCI_REPO1=conformance/repo1",
		"OCI_REPO2=conformance/repo2",
		"OCI_RESULTS_DIR="+filepath.Join(results, "results"),
		"OCI_API_PULL=true", "OCI_API_PUSH=true",
		"OCI_API_BLOBS_ATOMIC=true", "OCI_API_BLOBS_DELETE=true",
		"OCI_API_BLOBS_DIGEST_HEADER=true", "OCI_API_BLOBS_MOUNT_ANONYMOUS=true",
		"OCI_API_BLOBS_UPLOAD_CANCEL=true",
		"OCI_API_MANIFESTS_ATOMIC=true", "OCI_API_MANIFESTS_DELETE=true",
		"OCI_API_MANIFESTS_DIGEST_HEADER=true", "OCI_API_MANIFESTS_TAG_PARAM=true",
		"OCI_API_TAGS_ATOMIC=true", "OCI_API_TAGS_DELETE=true", "OCI_API_TAGS_LIST=true",
		"OCI_API_REFERRER=true",
		"OCI_DATA_IMAGE=true", "OCI_DATA_INDEX=true", "OCI_DATA_INDEX_LIST=true",
		"OCI_DATA_SPARSE=false", "OCI_DATA_ARTIFACT=true", "OCI_DATA_SUBJECT=true",
		"OCI_DATA_SUBJECT_MISSING=true", "OCI_DATA_ARTIFACT_LIST=true",
		"OCI_DATA_SUBJECT_LIST=true", "OCI_DATA_DATA_FIELD=true",
		"OCI_DATA_NONDISTRIBUTABLE=true", "OCI_DATA_CUSTOM_FIELDS=true",
		"OCI_DATA_NO_LAYERS=true", "OCI_DATA_EMPTY_BLOB=true", "OCI_DATA_SHA512=true",
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	count := func(label string) int {
		m := regexp.MustCompile(`(?m)^\s+` + label + `\.*:\s+(\d+)$`).FindSubmatch(out.Bytes())
		if m == nil {
			return -1
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}
	pass, fail, errs, skip, disabled := count("Pass"), count("FAIL"), count("Error"), count("Skip"), count("Disabled")
	t.Logf("OCI conformance: %d passed, %d failed, %d errors, %d skipped, %d disabled", pass, fail, errs, skip, disabled)
	if runErr != nil || pass <= 0 || fail != 0 || errs != 0 || skip != 0 || disabled != 0 {
		t.Fatalf("conformance run failed (%v):\n%s", runErr, out.String())
	}
}
