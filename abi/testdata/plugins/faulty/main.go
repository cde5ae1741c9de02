// Command faulty is a test plugin that misbehaves on request: each
// property's visitor {"fault": ...} picks what its read does. "none"
// returns the number of reads so far, so tests see it work before and after
// a fault.
package main

import (
	"os"
	"time"
	"unsafe"

	wapper "wapper.dev/wapper/sdk-go"
)

type faulty struct{ wapper.Base }

var reads int64

var hoard [][]byte

func (faulty) Read(d *wapper.Device, p *wapper.Property) (wapper.Value, error) {
	var v struct {
		Fault string `json:"fault"`
		Ms    int    `json:"ms"`
	}
	if err := p.Visit(&v); err != nil {
		return wapper.Value{}, err
	}
	reads++
	switch v.Fault {
	case "loop":
		for {
		}
	case "trap":
		// An access far outside linear memory: a real wasm trap, not a Go panic.
		return wapper.Int(int64(*(*byte)(unsafe.Pointer(uintptr(0xfffffff0))))), nil
	case "panic":
		panic("faulty plugin panics on purpose")
	case "oom":
		for {
			hoard = append(hoard, make([]byte, 1<<20))
		}
	case "exit":
		os.Exit(3)
	case "sleep":
		time.Sleep(time.Duration(v.Ms) * time.Millisecond)
	case "error":
		return wapper.Value{}, wapper.Errorf(wapper.ErrDeviceFailed, "device said no")
	case "badvalue":
		return wapper.String("not a number"), nil
	}
	return wapper.Int(reads), nil
}

func init() { wapper.Register(faulty{}) }

func main() {}
