package conformance

import (
	"fmt"
	"slices"
	"strings"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/runtime"
)

// Hints says what to do about the common mistakes a module shows, for
// `wapper plugin inspect` and `wapper plugin test`, beyond what the loader
// says itself (it refuses a WASI command build, naming the fix). loadErr is
// the error of loading the module (or of its wapper_init), if any.
func Hints(info *runtime.ModuleInfo, loadErr error) []string {
	if loadErr != nil && strings.Contains(loadErr.Error(), "no driver") {
		return []string{NoDriverHint}
	}
	return nil
}

// NoDriverHint is the advice for a module that loads but registers no
// driver.
const NoDriverHint = "the module registers no driver: call wapper.Register(yourDriver) from an init function " +
	"(with -buildmode=c-shared, main never runs); in Rust, wapper::export_plugin!(YourDriver)"

// grantImports maps the host functions that open a resource to the grant
// kind the open is checked against (SPEC.md §6.5 and §6.6).
var grantImports = []struct{ fn, kind, example string }{
	{abi.ImportSockOpen, "network", "tcp://HOST:PORT or tls://HOST:PORT"},
	{abi.ImportSerialOpen, "serial", "/dev/ttyUSB*"},
	{abi.ImportGPIOOpen, "gpio", "GPIO17"},
	{abi.ImportSecretGet, "secrets", "plc-login"},
	{abi.ImportDgramSend, "network", "udp://HOST:PORT, also for what a datagram socket hears"},
	{abi.ImportDgramOpen, "listen", "udp://0.0.0.0:162, only to bind a fixed port or join a group"},
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
