// Package scaffold writes new plugin projects for `wapper plugin new`: a
// driver for a line-based TCP instrument in Go or Rust, its native tests,
// a Makefile, MapperPlugin and KubeEdge Device YAML, and a copy of the SDK,
// so that the project builds and tests offline, outside the wapper
// repository.
//
// The SDK copy comes from sdk.txtar, an archive of sdk-go, abi and
// sdk-rust generated from this repository (package
// internal/sdkarchive): Go's embed cannot reach those folders from here,
// and sdk-go and abi are modules of their own, which embed refuses even
// from the repository root.
package scaffold

//go:generate go run ./internal/gensdk -root ../../.. -out sdk.txtar

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"go/format"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"wapper.dev/wapper/registry/plugincli/scaffold/internal/sdkarchive"
)

//go:embed templates
var templates embed.FS

//go:embed sdk.txtar
var sdkArchive []byte

// Lang is a plugin project's language.
type Lang string

// Languages.
const (
	Go   Lang = "go"
	Rust Lang = "rust"
)

// SDKDir is the folder of a project that holds its copy of the SDK.
const SDKDir = "wapper-sdk"

// DefaultAddr is the instrument address the sample YAML and grants name:
// port 5025, SCPI's raw socket port.
const DefaultAddr = "127.0.0.1:5025"

// Options says what to generate.
type Options struct {
	// Lang is Go or Rust.
	Lang Lang
	// Name names the project, the plugin, its module and its .wasm: a DNS
	// label (lower-case letters, digits and '-').
	Name string
	// Protocol is the protocol the plugin provides (DeviceModel
	// spec.protocol); empty means Name.
	Protocol string
	// Dir is the project folder; empty means Name. It must not exist or
	// be empty, unless SDKOnly is set.
	Dir string
	// SDKOnly rewrites only Dir/wapper-sdk, to bring an existing
	// project's SDK copy up to date.
	SDKOnly bool
	// Repo, when set, is a wapper checkout whose sdk-go, abi and sdk-rust
	// the project uses in place instead of a copy (for examples inside the
	// repository).
	Repo string
	// Addr is the instrument's host:port in the sample YAML and grants;
	// empty means DefaultAddr.
	Addr string
}

var (
	nameRE     = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)
	protocolRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]{0,62}$`)
)

// rustReserved are crate names that do not work: keywords, and the crates
// every crate sees.
var rustReserved = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`as async await break const continue crate dyn else enum extern false fn for if impl in
		let loop match mod move mut pub ref return self static struct super trait true type unsafe use where while
		abstract become box do final macro override priv try typeof unsized virtual yield
		alloc core proc_macro std test wapper`) {
		rustReserved[w] = true
	}
}

// data is what the templates see.
type data struct {
	Name, Protocol, Lib    string
	GoVersion              string
	SDKGo, SDKABI, SDKRust string
	Vendored               bool
	Addr, IP               string
	Port                   int
}

// Generate writes the project and returns the paths it wrote, relative to
// opts.Dir, sorted.
func Generate(opts Options) ([]string, error) {
	if opts.Lang != Go && opts.Lang != Rust {
		return nil, fmt.Errorf("language %q: want go or rust", opts.Lang)
	}
	if !nameRE.MatchString(opts.Name) {
		return nil, fmt.Errorf("name %q: use lower-case letters, digits and '-', starting with a letter (it names the MapperPlugin, the module and the .wasm)", opts.Name)
	}
	if lib := strings.ReplaceAll(opts.Name, "-", "_"); opts.Lang == Rust && rustReserved[lib] {
		return nil, fmt.Errorf("name %q: %s is a Rust keyword or a standard crate, which the crate cannot be called", opts.Name, lib)
	}
	if opts.Protocol == "" {
		opts.Protocol = opts.Name
	}
	if !protocolRE.MatchString(opts.Protocol) {
		return nil, fmt.Errorf("protocol %q: use letters, digits, '.', '_' and '-', starting with a letter", opts.Protocol)
	}
	if opts.Dir == "" {
		opts.Dir = opts.Name
	}
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	ip, portText, err := net.SplitHostPort(opts.Addr)
	port, perr := strconv.Atoi(portText)
	if err != nil || perr != nil || ip == "" || port < 1 || port > 65535 {
		return nil, fmt.Errorf("instrument address %q: want HOST:PORT", opts.Addr)
	}
	sdk, err := sdkFiles()
	if err != nil {
		return nil, err
	}
	d := data{
		Name: opts.Name, Protocol: opts.Protocol, Lib: strings.ReplaceAll(opts.Name, "-", "_"),
		GoVersion: goVersion(sdk), Addr: opts.Addr, IP: ip, Port: port,
		SDKGo: "./" + SDKDir + "/sdk-go", SDKABI: "./" + SDKDir + "/abi", SDKRust: SDKDir + "/sdk-rust",
		Vendored: opts.Repo == "",
	}
	if opts.Repo != "" {
		if opts.SDKOnly {
			return nil, errors.New("--sdk-only writes the SDK copy; it makes no sense with a wapper checkout in place of the copy")
		}
		rel, err := repoPath(opts.Dir, opts.Repo, opts.Lang)
		if err != nil {
			return nil, err
		}
		d.SDKGo, d.SDKABI, d.SDKRust = rel+"/sdk-go", rel+"/abi", rel+"/sdk-rust"
	}

	var files []sdkarchive.File
	if !opts.SDKOnly {
		if err := checkEmpty(opts.Dir); err != nil {
			return nil, err
		}
		if files, err = render(opts.Lang, d); err != nil {
			return nil, err
		}
	} else if _, err := os.Stat(opts.Dir); err != nil {
		return nil, fmt.Errorf("--sdk-only updates an existing project: %w", err)
	}
	if d.Vendored {
		files = append(files, sdkFor(opts.Lang, sdk)...)
		if opts.SDKOnly {
			for _, sub := range sdkModules(opts.Lang) {
				if err := os.RemoveAll(filepath.Join(opts.Dir, SDKDir, sub)); err != nil {
					return nil, err
				}
			}
		}
	}
	var written []string
	for _, f := range files {
		p := filepath.Join(opts.Dir, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			return nil, err
		}
		written = append(written, f.Name)
	}
	sort.Strings(written)
	return written, nil
}

// checkEmpty refuses a folder that exists and holds anything.
func checkEmpty(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case len(entries) > 0:
		return fmt.Errorf("%s exists and is not empty: choose another --dir (or use --sdk-only to update its SDK)", dir)
	}
	return nil
}

// repoPath checks that repo is a wapper checkout with the SDK lang needs
// and returns it relative to dir, as go.mod's replace and Cargo's path
// want it.
func repoPath(dir, repo string, lang Lang) (string, error) {
	need := "sdk-go/go.mod"
	if lang == Rust {
		need = "sdk-rust/Cargo.toml"
	}
	if _, err := os.Stat(filepath.Join(repo, need)); err != nil {
		return "", fmt.Errorf("--sdk %s: not a wapper checkout (%w)", repo, err)
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	absRepo, err := filepath.Abs(repo)
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(absDir, absRepo)
	if err != nil {
		return "", err
	}
	rel = filepath.ToSlash(rel)
	if !strings.HasPrefix(rel, "../") && rel != ".." {
		rel = "./" + rel
	}
	return rel, nil
}

// render fills in the templates of lang and the common ones.
func render(lang Lang, d data) ([]sdkarchive.File, error) {
	var out []sdkarchive.File
	for _, root := range []string{"templates/" + string(lang), "templates/common"} {
		err := fs.WalkDir(templates, root, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			src, err := templates.ReadFile(p)
			if err != nil {
				return err
			}
			t, err := template.New(p).Option("missingkey=error").Parse(string(src))
			if err != nil {
				return err
			}
			var b bytes.Buffer
			if err := t.Execute(&b, d); err != nil {
				return err
			}
			name := outName(strings.TrimPrefix(p, root+"/"))
			text := b.Bytes()
			if strings.HasSuffix(name, ".go") {
				if text, err = format.Source(text); err != nil {
					return fmt.Errorf("template %s: %w", p, err)
				}
			}
			out = append(out, sdkarchive.File{Name: name, Data: text})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// outName maps a template path to the file it writes: no .tmpl, and
// dot-names spelled out (embed skips files starting with a dot).
func outName(p string) string {
	p = strings.TrimSuffix(p, ".tmpl")
	parts := strings.Split(p, "/")
	for i, s := range parts {
		switch {
		case s == "gitignore":
			parts[i] = ".gitignore"
		case strings.HasPrefix(s, "dot-"):
			parts[i] = "." + strings.TrimPrefix(s, "dot-")
		}
	}
	return path.Join(parts...)
}

// sdkFiles returns the embedded SDK archive's files.
func sdkFiles() ([]sdkarchive.File, error) {
	files, err := sdkarchive.Parse(sdkArchive)
	if err != nil {
		return nil, fmt.Errorf("the SDK embedded in this wapper binary: %w", err)
	}
	return files, nil
}

// SDKFiles lists the embedded SDK's file names (such as "sdk-go/io.go").
func SDKFiles() ([]string, error) {
	files, err := sdkFiles()
	if err != nil {
		return nil, err
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.Name
	}
	return names, nil
}

// sdkModules are the SDK folders a project of lang carries.
func sdkModules(lang Lang) []string {
	if lang == Rust {
		return []string{"sdk-rust"}
	}
	return []string{"abi", "sdk-go"}
}

// sdkFor returns the SDK files a project of lang needs, placed under
// SDKDir, with a README saying where they came from.
func sdkFor(lang Lang, sdk []sdkarchive.File) []sdkarchive.File {
	var out []sdkarchive.File
	for _, f := range sdk {
		for _, m := range sdkModules(lang) {
			if strings.HasPrefix(f.Name, m+"/") {
				out = append(out, sdkarchive.File{Name: SDKDir + "/" + f.Name, Data: f.Data})
			}
		}
	}
	spec := ""
	if lang == Go {
		spec = " (a copy is in abi/)"
	}
	readme := fmt.Sprintf(`# wapper-sdk

The wapper plugin SDK (%s), written here by `+"`wapper plugin new`"+`
from wapper %s. It is a copy, not a download: the SDK has no
dependencies and no registry serves it, so the project builds offline.
Do not edit it; refresh it with a newer wapper:

    wapper plugin new %s NAME --dir . --sdk-only

The ABI both SDKs speak is specified in the wapper repository's
abi/SPEC.md%s.
`, strings.Join(sdkModules(lang), ", "), wapperVersion(), lang, spec)
	return append(out, sdkarchive.File{Name: SDKDir + "/README.md", Data: []byte(readme)})
}

// goVersion is the go line of the embedded sdk-go/go.mod, which a project
// must not go below.
func goVersion(sdk []sdkarchive.File) string {
	for _, f := range sdk {
		if f.Name != "sdk-go/go.mod" {
			continue
		}
		for _, line := range strings.Split(string(f.Data), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "go "); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return "1.26"
}

// wapperVersion names this binary's build: its module version or VCS
// revision.
func wapperVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown version)"
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	switch {
	case rev != "" && dirty:
		return "commit " + rev[:min(12, len(rev))] + " (with local changes)"
	case rev != "":
		return "commit " + rev[:min(12, len(rev))]
	case bi.Main.Version != "" && bi.Main.Version != "(devel)":
		return bi.Main.Version
	}
	return "(development build)"
}
