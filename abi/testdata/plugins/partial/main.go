// Command partial has the ABI marker but lacks the other required exports,
// and exports wapper_read with the wrong signature.
package main

//go:wasmexport wapper_abi_v1
func marker() int32 { return 0 }

//go:wasmexport wapper_read
func read(dev int32) int32 { return dev }

func main() {}
