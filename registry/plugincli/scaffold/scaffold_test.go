package scaffold

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"wapper.dev/wapper/host/manifest"
	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/registry/plugincli/scaffold/internal/sdkarchive"
)

// The embedded SDK is the repository's: a stale copy would hand plugin
// authors an SDK that differs from the one the host is tested with.
func TestSDKArchiveCurrent(t *testing.T) {
	want, err := sdkarchive.Build(testenv.Root())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sdkArchive, want) {
		got, _ := sdkarchive.Parse(sdkArchive)
		cur, _ := sdkarchive.Parse(want)
		t.Fatalf("registry/plugincli/scaffold/sdk.txtar is stale (%s); run `go generate ./registry/plugincli/scaffold` (make build does it)", diffNames(got, cur))
	}
}

func diffNames(old, cur []sdkarchive.File) string {
	m := map[string][]byte{}
	for _, f := range old {
		m[f.Name] = f.Data
	}
	var d []string
	for _, f := range cur {
		o, ok := m[f.Name]
		switch {
		case !ok:
			d = append(d, "new "+f.Name)
		case !bytes.Equal(o, f.Data):
			d = append(d, "changed "+f.Name)
		}
		delete(m, f.Name)
	}
	for n := range m {
		d = append(d, "removed "+n)
	}
	return strings.Join(d, ", ")
}

func TestArchiveRoundTrip(t *testing.T) {
	files := []sdkarchive.File{{Name: "a/x.go", Data: []byte("package x\n")}, {Name: "b/y.rs", Data: []byte("// -- not a marker\nfn f() {}\n")}, {Name: "c/empty", Data: nil}}
	data, err := sdkarchive.Format(files)
	if err != nil {
		t.Fatal(err)
	}
	back, err := sdkarchive.Parse(data)
	if err != nil || len(back) != len(files) {
		t.Fatalf("Parse = %d files, %v", len(back), err)
	}
	for i := range files {
		if back[i].Name != files[i].Name || !bytes.Equal(back[i].Data, files[i].Data) {
			t.Errorf("file %d = %q %q, want %q %q", i, back[i].Name, back[i].Data, files[i].Name, files[i].Data)
		}
	}
	if _, err := sdkarchive.Format([]sdkarchive.File{{Name: "m", Data: []byte("-- x --\n")}}); err == nil {
		t.Error("a file holding a marker line was archived")
	}
}

func TestGenerate(t *testing.T) {
	for _, lang := range []Lang{Go, Rust} {
		t.Run(string(lang), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "p")
			files, err := Generate(Options{Lang: lang, Name: "bench-meter", Protocol: "scpi", Dir: dir, Addr: "192.0.2.7:5025"})
			if err != nil {
				t.Fatal(err)
			}
			want := map[Lang][]string{
				Go:   {"go.mod", "main.go", "main_test.go", "Makefile", "README.md", ".gitignore", "wapper-sdk/sdk-go/go.mod", "wapper-sdk/abi/go.mod", "wapper-sdk/README.md"},
				Rust: {"Cargo.toml", ".cargo/config.toml", "src/lib.rs", "tests/instrument.rs", "Makefile", "README.md", ".gitignore", "wapper-sdk/sdk-rust/Cargo.toml", "wapper-sdk/sdk-rust/src/lib.rs"},
			}[lang]
			want = append(want, "manifests/plugin.yaml", "manifests/device.yaml")
			for _, f := range want {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("%s not written: %v (wrote %v)", f, err, files)
				}
			}
			for _, f := range files {
				b, err := os.ReadFile(filepath.Join(dir, f))
				if err != nil {
					t.Fatal(err)
				}
				if strings.HasPrefix(f, SDKDir+"/") {
					continue
				}
				if bytes.Contains(b, []byte("{{")) || bytes.Contains(b, []byte("<no value>")) {
					t.Errorf("%s has an unexpanded template action", f)
				}
				if lang == Rust && strings.Contains(f, "sdk-go") || lang == Go && strings.Contains(f, "sdk-rust") {
					t.Errorf("%s: the other language's SDK", f)
				}
			}
			// The YAML is what wapper-host accepts: one MapperPlugin
			// granting the instrument, a DeviceModel of the protocol, a
			// Device pointing at the instrument.
			set, err := manifest.Load(filepath.Join(dir, "manifests"))
			if err != nil {
				t.Fatal(err)
			}
			if len(set.Problems) > 0 {
				t.Fatalf("manifests refused: %v", set.Problems)
			}
			if len(set.Plugins) != 1 || len(set.Models) != 1 || len(set.Devices) != 1 {
				t.Fatalf("manifests: %d plugins, %d models, %d devices", len(set.Plugins), len(set.Models), len(set.Devices))
			}
			p := set.Plugins[0]
			if p.Name != "bench-meter" || p.Spec.Module.File != "bench-meter.wasm" || len(p.Spec.Protocols) != 1 || p.Spec.Protocols[0] != "scpi" ||
				len(p.Spec.Grants.Network) != 1 || p.Spec.Grants.Network[0] != "tcp://192.0.2.7:5025" {
				t.Errorf("MapperPlugin = %+v", p.Spec)
			}
			if m := set.Models[0]; m.Spec.Protocol != "scpi" {
				t.Errorf("DeviceModel protocol = %q", m.Spec.Protocol)
			}
			cfg := fmt.Sprint(set.Devices[0].Spec.Protocol.ConfigData.Data["ip"], " ", set.Devices[0].Spec.Protocol.ConfigData.Data["port"])
			if !strings.Contains(cfg, "192.0.2.7") || !strings.Contains(cfg, "5025") {
				t.Errorf("Device configData ip, port = %s", cfg)
			}
		})
	}
}

func TestGenerateRefuses(t *testing.T) {
	tmp := t.TempDir()
	full := filepath.Join(tmp, "full")
	if err := os.MkdirAll(full, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(full, "main.go"), []byte("package main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"language", Options{Lang: "zig", Name: "x"}, "want go or rust"},
		{"upper-case name", Options{Lang: Go, Name: "Thermo"}, "lower-case"},
		{"name with a slash", Options{Lang: Go, Name: "a/b"}, "lower-case"},
		{"protocol", Options{Lang: Go, Name: "x", Protocol: "a b"}, "protocol"},
		{"rust keyword", Options{Lang: Rust, Name: "match"}, "Rust keyword"},
		{"the SDK's crate name", Options{Lang: Rust, Name: "wapper"}, "Rust keyword"},
		{"address", Options{Lang: Go, Name: "x", Addr: "nowhere"}, "HOST:PORT"},
		{"non-empty dir", Options{Lang: Go, Name: "x", Dir: full}, "not empty"},
		{"sdk-only without a project", Options{Lang: Go, Name: "x", Dir: filepath.Join(tmp, "none"), SDKOnly: true}, "existing project"},
		{"not a checkout", Options{Lang: Go, Name: "x", Dir: filepath.Join(tmp, "y"), Repo: tmp}, "not a wapper checkout"},
	} {
		if tc.opts.Dir == "" {
			tc.opts.Dir = filepath.Join(tmp, "unused")
		}
		_, err := Generate(tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one saying %q", tc.name, err, tc.want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(full, "main.go")); string(b) != "package main\n" {
		t.Error("a refused generate touched the existing project")
	}
}

// --sdk-only brings the SDK copy back to this binary's and leaves the
// author's files alone.
func TestSDKOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "p")
	if _, err := Generate(Options{Lang: Go, Name: "p", Dir: dir}); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(dir, "main.go")
	if err := os.WriteFile(mine, []byte("package main // mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, SDKDir, "sdk-go", "gone.go")
	if err := os.WriteFile(stale, []byte("package wapper\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	edited := filepath.Join(dir, SDKDir, "sdk-go", "go.mod")
	orig, _ := os.ReadFile(edited)
	if err := os.WriteFile(edited, []byte("module edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(Options{Lang: Go, Name: "p", Dir: dir, SDKOnly: true}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(mine); string(b) != "package main // mine\n" {
		t.Errorf("--sdk-only rewrote main.go: %q", b)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Error("--sdk-only kept a file the SDK no longer has")
	}
	if b, _ := os.ReadFile(edited); !bytes.Equal(b, orig) {
		t.Errorf("--sdk-only left the SDK's go.mod as %q", b)
	}
}

// With a wapper checkout, the project uses its SDK in place (the examples
// in this repository do).
func TestRepoSDK(t *testing.T) {
	root := t.TempDir() // a stand-in checkout: only what Generate looks for
	for _, f := range []string{"sdk-go/go.mod", "sdk-rust/Cargo.toml"} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, lang := range []Lang{Go, Rust} {
		dir := filepath.Join(root, "examples", string(lang))
		files, err := Generate(Options{Lang: lang, Name: "zz", Dir: dir, Repo: root})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasPrefix(f, SDKDir) {
				t.Errorf("%s: wrote an SDK copy beside a checkout", f)
			}
		}
		file, want := "go.mod", "wapper.dev/wapper/sdk-go => ../../sdk-go"
		if lang == Rust {
			file, want = "Cargo.toml", `wapper = { path = "../../sdk-rust" }`
		}
		if b, _ := os.ReadFile(filepath.Join(dir, file)); !strings.Contains(string(b), want) {
			t.Errorf("%s:\n%s\nwant %q", file, b, want)
		}
	}
}

// The examples are what `wapper plugin new --sdk .` writes today, plus
// their own README and simulator: a template change must reach them.
func TestExamplesCurrent(t *testing.T) {
	repo := testenv.Root()
	fake := t.TempDir() // the same layout, so that ../../sdk-go comes out alike
	for _, f := range []string{"sdk-go/go.mod", "sdk-rust/Cargo.toml"} {
		if err := os.MkdirAll(filepath.Join(fake, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(fake, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, lang := range []Lang{Go, Rust} {
		name := "tcp-instrument-" + string(lang)
		dir := filepath.Join(fake, "examples", name)
		files, err := Generate(Options{Lang: lang, Name: name, Protocol: "tcp-instrument", Dir: dir, Repo: fake})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if f == "README.md" {
				continue
			}
			want, _ := os.ReadFile(filepath.Join(dir, f))
			got, err := os.ReadFile(filepath.Join(repo, "examples", name, f))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("examples/%s/%s differs from what `wapper plugin new %s %s --protocol tcp-instrument --dir examples/%s --sdk .` writes (%v)", name, f, lang, name, name, err)
			}
		}
	}
}
