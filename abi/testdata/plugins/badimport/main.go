// Command badimport is a plugin that imports a host function the host does
// not have.
package main

import wapper "wapper.dev/wapper/sdk-go"

//go:wasmimport wapper teleport
func teleport(x int32) int32

type p struct{ wapper.Base }

func (p) Read(*wapper.Device, *wapper.Property) (wapper.Value, error) {
	return wapper.Int(int64(teleport(1))), nil
}

func init() { wapper.Register(p{}) }

func main() {}
