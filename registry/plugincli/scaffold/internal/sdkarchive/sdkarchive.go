// Package sdkarchive packs the plugin SDKs (sdk-go with the abi module it
// requires, and sdk-rust) into one txtar archive, and reads it back. The
// archive is what `wapper plugin new` writes into a project, so that a
// plugin builds offline and outside this repository: Go's embed cannot
// reach sdk-go and abi from the wapper module (they are modules of their
// own), so a generated copy is embedded instead.
package sdkarchive

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Header is the archive's comment: what it is and how it is made.
const Header = "The wapper plugin SDKs as `wapper plugin new` writes them into a project.\n" +
	"Generated from sdk-go, abi and sdk-rust; do not edit. Regenerate with\n" +
	"`go generate ./registry/plugincli/scaffold` (make build does it).\n"

// modules are the archived folders, relative to the repository root, with
// the files each contributes: sources (in every subfolder but testdata) and
// module files, never tests or build output.
var modules = []struct {
	dir  string
	keep func(rel string) bool
}{
	{"abi", func(rel string) bool { return goSource(rel) || rel == "go.mod" || rel == "SPEC.md" }},
	{"sdk-go", func(rel string) bool { return goSource(rel) || rel == "go.mod" }},
	{"sdk-rust", func(rel string) bool {
		return rel == "Cargo.toml" || strings.HasPrefix(rel, "src/") && strings.HasSuffix(rel, ".rs")
	}},
}

func goSource(rel string) bool {
	return strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, "_test.go")
}

// File is one archived file.
type File struct {
	// Name is the slash-separated path, such as "sdk-go/io.go".
	Name string
	Data []byte
}

// Collect reads the SDK files from the repository at root, sorted by name.
func Collect(root string) ([]File, error) {
	var files []File
	for _, m := range modules {
		base := filepath.Join(root, m.dir)
		n := 0
		err := filepath.WalkDir(base, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(base, p)
			if err != nil {
				return err
			}
			rel = filepath.ToSlash(rel)
			name := e.Name()
			if e.IsDir() {
				if p != base && (name == "testdata" || name == "target" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
					return filepath.SkipDir
				}
				return nil
			}
			if !e.Type().IsRegular() || !m.keep(rel) {
				return nil
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files = append(files, File{Name: m.dir + "/" + rel, Data: data})
			n++
			return nil
		})
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, fmt.Errorf("%s holds no SDK files: is %s the wapper repository?", base, root)
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	return files, nil
}

// Build returns the archive of the SDKs in the repository at root.
func Build(root string) ([]byte, error) {
	files, err := Collect(root)
	if err != nil {
		return nil, err
	}
	return Format(files)
}

// Format writes files as a txtar archive with Header as its comment.
func Format(files []File) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(Header)
	for _, f := range files {
		if marker(f.Data) >= 0 {
			return nil, fmt.Errorf("%s has a line of the form \"-- NAME --\", which txtar cannot hold", f.Name)
		}
		fmt.Fprintf(&b, "-- %s --\n", f.Name)
		b.Write(f.Data)
		if len(f.Data) > 0 && f.Data[len(f.Data)-1] != '\n' {
			return nil, fmt.Errorf("%s does not end with a newline, which txtar cannot keep", f.Name)
		}
	}
	return b.Bytes(), nil
}

// Parse reads an archive made by Format.
func Parse(data []byte) ([]File, error) {
	i := marker(data)
	if i < 0 {
		return nil, errors.New("sdk archive holds no files")
	}
	data = data[i:]
	var files []File
	for len(data) > 0 {
		end := bytes.IndexByte(data, '\n')
		if end < 0 {
			return nil, errors.New("sdk archive: truncated file marker")
		}
		name := strings.TrimSuffix(strings.TrimPrefix(string(data[:end]), "-- "), " --")
		if name == "" || path.IsAbs(name) || strings.Contains(name, "..") {
			return nil, fmt.Errorf("sdk archive: bad file name %q", name)
		}
		data = data[end+1:]
		next := marker(data)
		if next < 0 {
			next = len(data)
		}
		files = append(files, File{Name: name, Data: data[:next]})
		data = data[next:]
	}
	return files, nil
}

// marker returns the offset of the first line of the form "-- NAME --",
// or -1.
func marker(data []byte) int {
	for off := 0; off < len(data); {
		line := data[off:]
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i]
		}
		s := string(line)
		if len(s) > 6 && strings.HasPrefix(s, "-- ") && strings.HasSuffix(s, " --") {
			return off
		}
		off += len(line) + 1
	}
	return -1
}
