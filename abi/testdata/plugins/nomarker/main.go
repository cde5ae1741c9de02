// Command nomarker is a wasm module that is not a wapper plugin: it has no
// ABI marker.
package main

//go:wasmexport hello
func hello() int32 { return 1 }

func main() {}
