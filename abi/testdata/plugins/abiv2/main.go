// Command abiv2 claims an ABI major version this host does not speak.
package main

//go:wasmexport wapper_abi_v2
func marker() int32 { return 0 }

func main() {}
