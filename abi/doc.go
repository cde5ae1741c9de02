// Package abi holds the constants and codecs of wapper's plugin ABI, version 1,
// shared by the host (wapper-host) and the Go SDK (sdk-go).
//
// The normative text is SPEC.md beside this file. This package is its Go form:
// export and import names, error codes, device states, limits, the binary
// value encoding, the packed result convention and the JSON device
// description. It has no dependencies outside the standard library, so that
// a plugin's go.mod needs nothing but sdk-go.
package abi
