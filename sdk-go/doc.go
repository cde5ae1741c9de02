// Package wapper is the Go SDK for wapper mapper plugins.
//
// A plugin implements [Driver] (plus, optionally, [BatchReader],
// [MethodCaller] and [Poller]), registers it from an init function, and is
// built as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o thermo.wasm .
//
// The SDK provides the ABI exports (marker, alloc/free, init, device
// add/update/remove, read, write, state, batch read, method, poll), keeps
// buffers the host writes into alive until it frees them, encodes values and
// errors, and turns a panic into an error the host can see. Host functions
// are wrapped as [Log], [Report], [KVGet], [KVSet] and [KVDelete]; devices
// are reached with [Dial] (a net.Conn), [OpenSerial] (an io.ReadWriteCloser
// with deadlines) and [OpenGPIO], each checked by the host against the
// MapperPlugin's grants. time.Now and time.Sleep work through WASI.
//
// configData (a Device's protocol config, a visitor) is JSON; decode it
// into a struct, or into a [Config] to read numbers with [Config.Int] and
// [Config.Float], which take KubeEdge's numbers as edgecore sends them (a
// JSON number or a string) and refuse what does not fit. A Driver's State
// gives its state a reason with [Reason].
//
// Outside wasm (go test on your machine) the same functions run
// in-process, sockets and serial ports included, so plugin logic can be
// unit-tested natively. Package [wapper.dev/wapper/sdk-go/sdktest] drives a
// Driver there the way wapper-host drives the wasm module: add a device
// from a description, then read, write, ask the state and remove it, each
// call through the same dispatch as the module's exports.
//
// A complete minimal plugin, a thermometer whose reading is set by a
// visitor field:
//
//	package main
//
//	import wapper "wapper.dev/wapper/sdk-go"
//
//	type thermo struct{ wapper.Base }
//
//	func (thermo) Read(d *wapper.Device, p *wapper.Property) (wapper.Value, error) {
//		var v struct{ Celsius float64 `json:"celsius"` }
//		if err := p.Visit(&v); err != nil {
//			return wapper.Value{}, err
//		}
//		return wapper.Double(v.Celsius), nil
//	}
//
//	func init() { wapper.Register(thermo{}) }
//
//	func main() {}
//
// [Base] supplies defaults for every method but Read: Init, AddDevice,
// UpdateDevice and RemoveDevice accept anything, Write answers
// "unsupported", and State reports "ok". Override what your device needs.
//
// Instances are disposable and there may be several per plugin (see the ABI
// spec, §9): keep state in the device or in the kv store, not only in
// package variables. Goroutines do not run between calls; a device that
// pushes data implements [Poller] and calls [Report].
package wapper
