// Package bridge connects package sdktest to the SDK's export dispatch,
// which is unexported in package wapper: wapper sets New when it is
// initialised, and sdktest calls it.
package bridge

// Runtime is one plugin instance as the exports see it. Each method is one
// export of the ABI (abi/SPEC.md §3) and returns its result buffer (§3.1):
// nil for success without a payload, else a status byte and the payload or
// the error message. The buffer is valid until the next call.
type Runtime interface {
	Init(cfg []byte) []byte
	Add(dev uint32, desc []byte) []byte
	Update(dev uint32, desc []byte) []byte
	Remove(dev uint32) []byte
	Read(dev, prop uint32) []byte
	Write(dev, prop uint32, val []byte) []byte
	State(dev uint32) []byte
	ReadBatch(dev uint32, handles []byte) []byte
	ReadMany(reqs []byte) []byte
	Method(dev uint32, req []byte) []byte
	Poll(dev, budgetMS uint32) []byte
}

// New returns a new instance around drv, a wapper.Driver, or around the
// driver registered with wapper.Register when drv is nil. report receives
// what the plugin reports (the host function report: device, property,
// encoded value) and returns 0 or a negated status code. Package wapper
// sets New.
var New func(drv any, report func(dev, prop uint32, val []byte) int32) (Runtime, error)
