// Command bench is the plugin the runtime benchmarks call: "noop" returns
// at once, "hostcalls" calls the clock host function visitor.n times.
package main

import wapper "wapper.dev/wapper/sdk-go"

//go:wasmimport wapper clock_ns
func clockNS(clock int32) int64

type bench struct{ wapper.Base }

func (bench) Read(_ *wapper.Device, p *wapper.Property) (wapper.Value, error) {
	if p.Name != "hostcalls" {
		return wapper.Int(0), nil
	}
	var v struct {
		N int `json:"n"`
	}
	if err := p.Visit(&v); err != nil {
		return wapper.Value{}, err
	}
	var sum int64
	for range v.N {
		sum += clockNS(1)
	}
	return wapper.Int(sum), nil
}

func init() { wapper.Register(bench{}) }

func main() {}
