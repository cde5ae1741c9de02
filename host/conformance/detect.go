package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/host/runtime"
)

// ErrNotConformance is wrapped by Detect's error for a module that loads
// but is not a conformance plugin.
var ErrNotConformance = errors.New("not a conformance plugin (abi/CONFORMANCE.md)")

// probeMessage is what the detection probe asks the plugin to fail with.
const (
	probeCode    = 201
	probeMessage = "wapper conformance probe"
)

// Detect tells whether a module is a conformance plugin before Run fails it
// case by case. It loads the module with the config {}, adds a device with
// one property of visitor kind "error", code 201 and message "wapper
// conformance probe", and reads it: a conformance plugin fails the read
// with exactly that code and message. A plugin whose errors are broken
// passes when the method "echo" answers its arguments instead. Detect
// returns nil for a conformance plugin, an error wrapping
// ErrNotConformance that says what the module answered instead, or the
// loader's error for a module the host cannot load.
func Detect(ctx context.Context, wasm []byte) error {
	if _, err := runtime.Check(ctx, wasm); err != nil {
		return err
	}
	eng, err := runtime.NewEngine(runtime.EngineOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer eng.Close(context.Background())
	p, err := eng.Load(ctx, runtime.Config{Name: "detect", Wasm: wasm, KV: &MemKV{}, Instances: 1, CallTimeout: 5 * time.Second})
	var ae *abi.Error
	switch {
	case errors.As(err, &ae):
		return fmt.Errorf("%w: wapper_init({}) failed (%w), and a conformance plugin accepts any config object", ErrNotConformance, err)
	case err != nil:
		return err
	}
	defer p.Close(context.Background())
	d := device(1, "", prop(0, "probe", "INT", "ReadOnly", fmt.Sprintf(`{"kind": "error", "code": %d, "message": %q}`, probeCode, probeMessage)))
	if err := p.AddDevice(ctx, d); err != nil {
		return fmt.Errorf("%w: it refused a conformance device (%w)", ErrNotConformance, err)
	}
	_, err = p.Read(ctx, 1, 0)
	if errors.As(err, &ae) && ae.Code == probeCode && ae.Message == probeMessage {
		return nil
	}
	if p.Info().Has(abi.ExportMethod) {
		args := json.RawMessage(`{"probe": "wapper conformance"}`)
		if got, merr := p.CallMethod(ctx, 1, "echo", args); merr == nil && jsonEqual(got, args) {
			return nil
		}
	}
	return fmt.Errorf("%w: a read of a property with visitor {\"kind\": \"error\", \"code\": %d, \"message\": %q} answered %s, where a conformance plugin fails with exactly that code and message",
		ErrNotConformance, probeCode, probeMessage, answer(err))
}

// answer describes the outcome of a read for a message.
func answer(err error) string {
	if err == nil {
		return "a value"
	}
	return fmt.Sprintf("code %d, %q", abi.CodeOf(err), err.Error())
}
