package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"wapper.dev/wapper/hack/benchresult"
)

const goBench = `goos: linux
goarch: amd64
pkg: wapper.dev/wapper/host/runtime
cpu: AMD EPYC
BenchmarkRead/ping-2         	  300000	       812.5 ns/op	      48 B/op	       2 allocs/op
BenchmarkRead/read-2         	  200000	      1290 ns/op
PASS
pkg: wapper.dev/wapper/host/dmi
BenchmarkOutbox-2   	     100	  10000000 ns/op	 5.5 MB/s
ok  	wapper.dev/wapper/host/dmi	1.2s
`

func writeResults(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	rep := benchresult.Report{Date: "2026-11-30T10:00:00Z", Machine: benchresult.Machine{CPUs: 2, CPUModel: "Test CPU", GoVersion: "go1.26", OS: "linux/amd64"},
		Window: "10s", Seconds: 42,
		Results: []benchresult.Result{
			{Devices: 10000, Mode: "standalone", CPUPercent: 50, RSSMiB: 300, ReadingsPerSec: 20000, WantPerSec: 20000, StartSeconds: 3, FirstReadingMs: 250},
			{Devices: 10000, Mode: "dmi", Error: "not every device started"},
			{Devices: 50000, Mode: "standalone", CPUPercent: 90, RSSMiB: 900, ReadingsPerSec: 50000, WantPerSec: 100000, FirstReadingError: "no reading within 2m0s"},
			{Devices: 10000, Mode: "native", CPUPercent: 25, RSSMiB: 100, ReadingsPerSec: 20000, WantPerSec: 20000, StartSeconds: 1},
		},
		Goals:    []benchresult.Goal{{Name: "10000 devices: RSS within 2x", Verdict: "FAIL", Measured: "3.00x, 0 skipped"}},
		Profiles: []benchresult.Profile{{Devices: 10000, Kind: "heap", File: "heap-10000.pb.gz", Top: "heap-10000-top.txt"}},
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{benchresult.File: string(b), "heap-10000-top.txt": "Type: inuse_space\n  10MB wazero\n",
		"go-bench.txt": goBench, "runtime.txt": "trivial export call 100 ns\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const doc = `# Performance

Prose stays.

<!-- bench:run -->
old run
<!-- /bench:run -->

<!-- bench:host -->
old table
<!-- /bench:host -->

More prose.

<!-- bench:goals --><!-- /bench:goals -->
<!-- bench:heap --><!-- /bench:heap -->
<!-- bench:cpu --><!-- /bench:cpu -->
<!-- bench:gobench --><!-- /bench:gobench -->
<!-- bench:runtime --><!-- /bench:runtime -->
<!-- bench:cloud --><!-- /bench:cloud -->
End.
`

func TestRewrite(t *testing.T) {
	dir := writeResults(t)
	file := filepath.Join(t.TempDir(), "performance.md")
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rewrite(file, dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{
		"Prose stays.", "More prose.", "End.",
		"Measured on 2026-11-30T10:00:00Z, on 2 CPUs (Test CPU)",
		"| 10000 | standalone | 50.0 | 300.0 | 20000 | 100.0% | 25.00 | 0 | 3.0 | 250 |",
		"| 10000 | standalone ÷ native | 2.00x | 3.00x | 1.00x | | 2.00x | | | |",
		"| 10000 | dmi | failed: not every device started |",
		"| 50000 | standalone | 90.0 | 900.0 | 50000 | 50.0% | 18.00 | 0 | 0.0 | none: no reading within 2m0s |",
		"| 10000 | native | 25.0 | 100.0 | 20000 | 100.0% | 12.50 | - | 1.0 | - |",
		"| 10000 devices: RSS within 2x | **FAIL** | 3.00x, 0 skipped |",
		"10MB wazero",
		"_Not in this run: no cpu profile",
		"| host/runtime | BenchmarkRead/ping | 300000 | 812.5 ns/op, 48 B/op, 2 allocs/op |",
		"| host/dmi | BenchmarkOutbox | 100 | 10000000 ns/op, 5.5 MB/s |",
		"```text\ntrivial export call 100 ns\n```",
		"has no cloud.txt",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	for _, gone := range []string{"old run", "old table"} {
		if strings.Contains(got, gone) {
			t.Errorf("%q left in the document", gone)
		}
	}
	// A second rewrite from the same results changes nothing.
	if err := rewrite(file, dir); err != nil {
		t.Fatal(err)
	}
	again, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != got {
		t.Errorf("second rewrite differs:\n%s", again)
	}
}

func TestReplaceRefusesBadMarkers(t *testing.T) {
	parts := map[string]string{"run": "x"}
	if _, err := replace("<!-- bench:nope --><!-- /bench:nope -->", parts); err == nil || !strings.Contains(err.Error(), "unknown") {
		t.Errorf("unknown part: %v", err)
	}
	if _, err := replace("<!-- bench:run --> no end", parts); err == nil || !strings.Contains(err.Error(), "<!-- /bench:run -->") {
		t.Errorf("unclosed part: %v", err)
	}
}
