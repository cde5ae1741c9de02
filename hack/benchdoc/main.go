// Command benchdoc rewrites the generated parts of docs/performance.md
// from one `make bench` results folder (`make bench-doc`), so that no
// figure or label in the document's tables is typed in by hand.
//
// The document marks each generated part with a pair of HTML comments,
// <!-- bench:NAME --> and <!-- /bench:NAME -->; benchdoc replaces what lies
// between them and leaves the prose around them alone. The parts:
//
//   - run: the run's date and machine (CPU count and model, Go version);
//   - host: hack/bench-host's table (results.json), host rows and their
//     ratios to native;
//   - goals: issue 14's goals with PASS or FAIL;
//   - heap, cpu: the `go tool pprof -top` summaries of the host's profiles;
//   - gobench: every func Benchmark* (go-bench.txt) as a table;
//   - runtime, sdk, modbus, opcua, upgrade, cloud, linkbytes, reconnect,
//     sinks: the output of hack/bench, hack/bench-sdk, the Modbus and OPC
//     UA throughput tests, hack/bench-upgrade, cloudbench, linkbytes,
//     cloudbench -reconnect and the sinks' throughput test, verbatim.
//
// A part whose file is not in the folder says so.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"wapper.dev/wapper/hack/benchresult"
)

func main() {
	results := flag.String("results", "", "results folder of one make bench run")
	doc := flag.String("doc", "docs/performance.md", "document to rewrite")
	flag.Parse()
	if *results == "" {
		fmt.Fprintln(os.Stderr, "benchdoc: -results is required")
		os.Exit(2)
	}
	if err := rewrite(*doc, *results); err != nil {
		fmt.Fprintln(os.Stderr, "benchdoc:", err)
		os.Exit(1)
	}
	fmt.Printf("benchdoc: %s rewritten from %s\n", *doc, *results)
}

// rewrite replaces every generated part of doc from the results in dir.
func rewrite(doc, dir string) error {
	b, err := os.ReadFile(doc)
	if err != nil {
		return err
	}
	parts, err := render(dir)
	if err != nil {
		return err
	}
	out, err := replace(string(b), parts)
	if err != nil {
		return fmt.Errorf("%s: %w", doc, err)
	}
	return os.WriteFile(doc, []byte(out), 0o644)
}

var marker = regexp.MustCompile(`<!-- bench:([a-z]+) -->`)

// replace puts each part between its markers. A marker pair for a part
// benchdoc does not know, or an unclosed one, is an error.
func replace(doc string, parts map[string]string) (string, error) {
	var out strings.Builder
	for {
		loc := marker.FindStringSubmatchIndex(doc)
		if loc == nil {
			out.WriteString(doc)
			return out.String(), nil
		}
		name := doc[loc[2]:loc[3]]
		body, ok := parts[name]
		if !ok {
			return "", fmt.Errorf("unknown generated part %q", name)
		}
		end := "<!-- /bench:" + name + " -->"
		rest := doc[loc[1]:]
		i := strings.Index(rest, end)
		if i < 0 {
			return "", fmt.Errorf("%q has no %s", doc[loc[0]:loc[1]], end)
		}
		out.WriteString(doc[:loc[1]])
		out.WriteString("\n")
		out.WriteString(strings.TrimRight(body, "\n"))
		out.WriteString("\n")
		out.WriteString(end)
		doc = rest[i+len(end):]
	}
}

// render renders every part from the results in dir.
func render(dir string) (map[string]string, error) {
	parts := map[string]string{}
	rep, err := benchresult.Read(filepath.Join(dir, benchresult.File))
	switch {
	case errors.Is(err, os.ErrNotExist):
		for _, p := range []string{"run", "host", "goals", "heap", "cpu"} {
			parts[p] = missing(dir, benchresult.File)
		}
		parts["run"] = fmt.Sprintf("Figures from the results folder `%s` (no %s in it).", filepath.Base(dir), benchresult.File)
	case err != nil:
		return nil, err
	default:
		settle := rep.Settle
		if settle == "" {
			settle = "2s" // before -settle was recorded
		}
		parts["run"] = fmt.Sprintf("Measured on %s, on %s; results folder `%s`; measurement window %s, opened %s after each start; the host benchmark took %.0f s.",
			rep.Date, rep.Machine, filepath.Base(dir), rep.Window, settle, rep.Seconds)
		parts["host"] = hostTable(rep)
		parts["goals"] = goalsTable(rep)
		parts["heap"], parts["cpu"] = profileTop(dir, rep, "heap"), profileTop(dir, rep, "cpu")
	}
	gb, err := os.ReadFile(filepath.Join(dir, "go-bench.txt"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		parts["gobench"] = missing(dir, "go-bench.txt")
	case err != nil:
		return nil, err
	default:
		parts["gobench"] = goBenchTable(string(gb))
	}
	for part, file := range map[string]string{"runtime": "runtime.txt", "sdk": "sdk.txt", "modbus": "modbus.txt", "opcua": "opcua.txt", "cloud": "cloud.txt", "linkbytes": "link-bytes.txt", "reconnect": "reconnect.txt", "upgrade": "upgrade.txt", "sinks": "sinks.txt"} {
		if parts[part], err = verbatim(dir, file); err != nil {
			return nil, err
		}
	}
	return parts, nil
}

func missing(dir, file string) string {
	return fmt.Sprintf("_Not in this run: `%s` has no %s._", filepath.Base(dir), file)
}

// verbatim is a text file of the run as a code block.
func verbatim(dir, file string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if errors.Is(err, os.ErrNotExist) {
		return missing(dir, file), nil
	}
	if err != nil {
		return "", err
	}
	return "```text\n" + strings.TrimRight(string(b), "\n") + "\n```", nil
}

func hostTable(rep *benchresult.Report) string {
	var b strings.Builder
	b.WriteString("| devices | run | CPU % | RSS MiB | readings/s | of those asked | CPU µs/reading | reads skipped | start s | first reading ms |\n")
	b.WriteString("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	natives := map[int]benchresult.Result{}
	for _, r := range rep.Results {
		if r.Mode == benchresult.ModeNative && r.Error == "" {
			natives[r.Devices] = r
		}
	}
	for _, r := range rep.Results {
		if r.Error != "" {
			fmt.Fprintf(&b, "| %d | %s | failed: %s | | | | | | | |\n", r.Devices, r.Mode, strings.ReplaceAll(r.Error, "|", "/"))
			continue
		}
		skipped, first := "-", "-"
		if r.Mode != benchresult.ModeNative {
			skipped = fmt.Sprintf("%.0f", r.Skipped)
		}
		switch {
		case r.FirstReadingMs > 0:
			first = fmt.Sprintf("%.0f", r.FirstReadingMs)
		case r.FirstReadingError != "":
			first = "none: " + strings.ReplaceAll(r.FirstReadingError, "|", "/")
		}
		fmt.Fprintf(&b, "| %d | %s | %.1f | %.1f | %.0f | %.1f%% | %.2f | %s | %.1f | %s |\n", r.Devices, r.Mode, r.CPUPercent, r.RSSMiB,
			r.ReadingsPerSec, 100*r.ReadingsPerSec/r.WantPerSec, r.CPUPerReading(), skipped, r.StartSeconds, first)
		if nat, ok := natives[r.Devices]; ok && r.Mode != benchresult.ModeNative && nat.CPUPercent > 0 {
			fmt.Fprintf(&b, "| %d | %s ÷ native | %.2fx | %.2fx | %.2fx | | %.2fx | | | |\n", r.Devices, r.Mode,
				r.CPUPercent/nat.CPUPercent, r.RSSMiB/nat.RSSMiB, r.ReadingsPerSec/nat.ReadingsPerSec, r.CPUPerReading()/nat.CPUPerReading())
		}
	}
	return b.String()
}

func goalsTable(rep *benchresult.Report) string {
	var b strings.Builder
	b.WriteString("| goal (issue 14) | verdict | measured |\n| --- | --- | --- |\n")
	for _, g := range rep.Goals {
		fmt.Fprintf(&b, "| %s | **%s** | %s |\n", g.Name, g.Verdict, strings.ReplaceAll(g.Measured, "|", "/"))
	}
	return b.String()
}

// profileTop is the first lines of a pprof -top summary of the run.
func profileTop(dir string, rep *benchresult.Report, kind string) string {
	for _, p := range rep.Profiles {
		if p.Kind != kind {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, p.Top))
		if err != nil {
			return missing(dir, p.Top)
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 30 {
			lines = lines[:30]
		}
		return fmt.Sprintf("wapper-host at %d devices (`%s`, first lines of `%s`):\n\n```text\n%s\n```", p.Devices, p.File, p.Top, strings.Join(lines, "\n"))
	}
	return fmt.Sprintf("_Not in this run: no %s profile in `%s`._", kind, filepath.Base(dir))
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+(\d+)\s+(.*)$`)

// goBenchTable turns `go test -bench` output into a table: one row per
// benchmark, its package from the "pkg:" line before it, and every metric
// it reports.
func goBenchTable(out string) string {
	var b strings.Builder
	b.WriteString("| package | benchmark | runs | metrics |\n| --- | --- | ---: | --- |\n")
	pkg, rows := "", 0
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(p, "wapper.dev/wapper/")
			continue
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		f := strings.Fields(m[4])
		var metrics []string
		for i := 0; i+1 < len(f); i += 2 {
			metrics = append(metrics, f[i]+" "+f[i+1])
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", pkg, m[1], m[3], strings.Join(metrics, ", "))
		rows++
	}
	if rows == 0 {
		return "_No benchmark results in go-bench.txt._"
	}
	return b.String()
}
