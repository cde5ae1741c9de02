package wapper

import "wapper.dev/wapper/sdk-go/internal/bridge"

// bridged exposes an instance's dispatch to package sdktest, through
// internal/bridge, so that tests drive a Driver the way the exports do.
type bridged struct{ in *instance }

func init() {
	bridge.New = func(drv any, report func(dev, prop uint32, val []byte) int32) (bridge.Runtime, error) {
		d, _ := drv.(Driver)
		if drv == nil {
			d = global.drv
		}
		if d == nil {
			return nil, Errorf(ErrInternal, "no driver: pass one, or register one with wapper.Register from an init function")
		}
		return bridged{&instance{drv: d, devices: map[uint32]*Device{}, report: report}}, nil
	}
}

func (b bridged) Init(cfg []byte) []byte                    { return b.in.callInit(cfg) }
func (b bridged) Add(dev uint32, desc []byte) []byte        { return b.in.callAdd(dev, desc) }
func (b bridged) Update(dev uint32, desc []byte) []byte     { return b.in.callUpdate(dev, desc) }
func (b bridged) Remove(dev uint32) []byte                  { return b.in.callRemove(dev) }
func (b bridged) Read(dev, prop uint32) []byte              { return b.in.callRead(dev, prop) }
func (b bridged) Write(dev, prop uint32, val []byte) []byte { return b.in.callWrite(dev, prop, val) }
func (b bridged) State(dev uint32) []byte                   { return b.in.callState(dev) }
func (b bridged) ReadBatch(dev uint32, h []byte) []byte     { return b.in.callReadBatch(dev, h) }
func (b bridged) ReadMany(reqs []byte) []byte               { return b.in.callReadMany(reqs) }
func (b bridged) Method(dev uint32, req []byte) []byte      { return b.in.callMethod(dev, req) }
func (b bridged) Poll(dev, budgetMS uint32) []byte          { return b.in.callPoll(dev, budgetMS) }
