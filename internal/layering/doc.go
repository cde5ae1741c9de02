// Package layering holds no code: its test checks the module's dependency
// rules (DESIGN.md): abi depends on nothing else of wapper, and host and
// cloud never import each other. Tests and hack/ may use both sides.
package layering
