package runtime

import (
	"bytes"
	"context"
	"fmt"

	"github.com/tetratelabs/wazero/api"
)

// Lent is an instance lent out by Plugin.Lend, for calls the host itself
// never makes: `wapper plugin test` checks how a plugin answers a device or
// property handle it was never given, a description that is not JSON, or
// several live wapper_alloc buffers. Calls run under the plugin's deadline
// and sandbox; a trap, an exit, the deadline or a malformed result throws
// the instance away as any call does, after which every call fails. The
// instance's devices are not tracked: a device added through Lent is the
// guest's business only.
type Lent struct{ in *instance }

// Lend runs fn with one idle instance of the plugin and returns fn's error.
func (p *Plugin) Lend(ctx context.Context, fn func(Lent) error) error {
	s, err := p.acquire(ctx, nil)
	if err != nil {
		return err
	}
	defer p.release(s)
	return fn(Lent{s.in})
}

// Has reports whether the module exports the function.
func (l Lent) Has(export string) bool { return l.in.mod.ExportedFunction(export) != nil }

// Memory returns the instance's linear memory.
func (l Lent) Memory() api.Memory { return l.in.mem }

// Call calls an export with args and returns its first result (0 when it
// has none).
func (l Lent) Call(export string, args ...uint64) (uint64, error) {
	f, err := l.export(export, args)
	if err != nil {
		return 0, err
	}
	if err := l.in.rawCall(export, f); err != nil {
		return 0, err
	}
	return l.in.stack[0], nil
}

// Result calls an export that returns an i64 result and decodes it as the
// host does: the payload, or the plugin's *abi.Error. A buf that is not nil
// is passed, as the host passes its buffers, in a buffer from wapper_alloc
// whose pointer and length follow args, and freed after the call.
func (l Lent) Result(export string, buf []byte, args ...uint64) ([]byte, error) {
	f, err := l.export(export, args)
	if err != nil {
		return nil, err
	}
	if buf == nil {
		payload, err := l.in.call(export, f)
		return bytes.Clone(payload), err // it aliases guest memory
	}
	return l.in.callBuf(export, f, buf, len(args))
}

func (l Lent) export(name string, args []uint64) (api.Function, error) {
	switch {
	case l.in.dead:
		return nil, fmt.Errorf("%s: the instance was thrown away by an earlier call", name)
	case len(args)+2 > len(l.in.stack):
		return nil, fmt.Errorf("%s: %d arguments", name, len(args))
	}
	f := l.in.mod.ExportedFunction(name)
	if f == nil {
		return nil, fmt.Errorf("the module does not export %s", name)
	}
	copy(l.in.stack[:], args)
	return f, nil
}
