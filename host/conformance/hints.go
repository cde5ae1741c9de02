package conformance

import (
	"fmt"
	"slices"
	"strings"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/runtime"
)

// Hints says what to do about the common mistakes a module shows, for
// `wapper plugin inspect` and `wapper plugin test`. loadErr is the error of
// loading the module (or of its wapper_init), if any.
func Hints(info *runtime.ModuleInfo, loadErr error) []string {
	var out []string
	if info != nil && IsCommand(info) {
		out = append(out, "the module is a WASI command (it exports _start and no _initialize), so its exports run before "+
			"the Go runtime is initialized and trap (runtime.notInitialized); rebuild it as a reactor: "+
			"GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared (Rust: crate-type = [\"cdylib\"])")
	}
	if loadErr != nil && strings.Contains(loadErr.Error(), "no driver") {
		out = append(out, NoDriverHint)
	}
	return out
}

// NoDriverHint is the advice for a module that loads but registers no
// driver.
const NoDriverHint = "the module registers no driver: call wapper.Register(yourDriver) from an init function " +
	"(with -buildmode=c-shared, main never runs); in Rust, wapper::export_plugin!(YourDriver)"

// IsCommand reports whether a module was built as a WASI command (Go's
// default buildmode) rather than a reactor: it exports _start and no
// _initialize.
func IsCommand(info *runtime.ModuleInfo) bool {
	has := func(name string) bool {
		return slices.ContainsFunc(info.Exports, func(e string) bool { return strings.HasPrefix(e, name+"(") })
	}
	return has("_start") && !has(abi.ExportInitialize)
}

// grantImports maps the host functions that open a resource to the grant
// kind the open is checked against (SPEC.md §6.5).
var grantImports = []struct{ fn, kind, example string }{
	{abi.ImportSockOpen, "network", "tcp://HOST:PORT"},
	{abi.ImportSerialOpen, "serial", "/dev/ttyUSB*"},
	{abi.ImportGPIOOpen, "gpio", "GPIO17"},
}

// Grants lists the grants a module's device I/O needs, one line each,
// such as "grants.network (imports wapper.sock_open; entries such as
// tcp://HOST:PORT)". A module that imports none needs no grants.
func Grants(info *runtime.ModuleInfo) []string {
	var out []string
	for _, g := range grantImports {
		imp := abi.ImportModule + "." + g.fn
		if slices.ContainsFunc(info.Imports, func(s string) bool { return strings.HasPrefix(s, imp+"(") }) {
			out = append(out, fmt.Sprintf("grants.%s (imports %s; entries such as %s)", g.kind, imp, g.example))
		}
	}
	return out
}
