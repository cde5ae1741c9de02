// Package modcheck runs the host's loader checks on a wasm module before
// it is published, and reads the metadata the module itself declares, so
// that `wapper push` refuses exactly the modules wapper-host would refuse.
package modcheck

import (
	"context"
	"slices"
	"strings"

	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/registry/artifact"
)

// Checker checks a module and returns the metadata it declares; it fails
// with an error that says why when the module would not load.
type Checker func(ctx context.Context, wasm []byte) (artifact.Metadata, error)

// Loader is the Checker that runs the host runtime's full load path
// (runtime.Verify): ABI marker and minor version, exports and their
// signatures, imports, compilation and one instantiation.
func Loader(ctx context.Context, wasm []byte) (artifact.Metadata, error) {
	info, err := runtime.Verify(ctx, wasm)
	m := artifact.Metadata{ABIMajor: info.ABIMajor, ABIMinor: info.ABIMinor, Exports: Names(info.Exports), Imports: Names(info.Imports)}
	return m, err
}

// Names strips signatures from names such as "wapper_read(i32, i32) ->
// (i64)", leaving "wapper_read", so they fit a comma-separated annotation.
// The result is sorted, without duplicates.
func Names(items []string) []string {
	out := make([]string, 0, len(items))
	for _, s := range items {
		if i := strings.IndexAny(s, "( "); i >= 0 {
			s = s[:i]
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
