package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"wapper.dev/wapper/abi"
)

// Read reads one property. A value of another type than the property's is
// converted where nothing is lost, and refused otherwise.
func (p *Plugin) Read(ctx context.Context, dev, prop uint32) (v abi.Value, err error) {
	err = p.withDevice(ctx, dev, func(in *instance, d *device) error {
		pd := d.desc.Property(prop)
		if pd == nil {
			return abi.Errorf(abi.ErrNotFound, "device %s has no property handle %d", d.name(), prop)
		}
		in.stack[0], in.stack[1] = uint64(dev), uint64(prop)
		payload, err := in.call(abi.ExportRead, in.read)
		if err != nil {
			return err
		}
		v, err = decodeFor(pd, payload)
		return err
	})
	return v, err
}

// decodeFor decodes a value returned for property pd and converts it to the
// property's declared type.
func decodeFor(pd *abi.Property, payload []byte) (abi.Value, error) {
	v, err := abi.DecodeValue(payload)
	if err != nil {
		return abi.Value{}, abi.Errorf(abi.ErrInvalid, "property %q: plugin returned a malformed value: %v", pd.Name, err)
	}
	return convertFor(pd, v)
}

// convertFor converts a value from the plugin to pd's declared type.
func convertFor(pd *abi.Property, v abi.Value) (abi.Value, error) {
	t := pd.ValueType()
	if t == abi.TypeInvalid || v.Type() == t {
		return v, nil
	}
	cv, err := abi.Convert(v, t)
	if err != nil {
		return abi.Value{}, abi.Errorf(abi.ErrInvalid, "property %q is %s but the plugin returned %s: %v", pd.Name, t, v.Type(), err)
	}
	return cv, nil
}

// ReadBatch reads several properties of one device, with the plugin's
// wapper_read_batch when it has one (a Modbus plugin merges neighbouring
// registers), else one read after another on the same instance. Each entry
// has a value or its own error; the returned error is for the whole call.
func (p *Plugin) ReadBatch(ctx context.Context, dev uint32, props []uint32) ([]abi.BatchEntry, error) {
	if len(props) == 0 {
		return nil, nil
	}
	return p.ReadBatchTo(ctx, dev, props, nil)
}

// ReadBatchTo is ReadBatch with the entries written to out, resliced to
// len(props) (its array is reused when it is large enough), so that a
// caller reading the same batch every cycle allocates nothing.
func (p *Plugin) ReadBatchTo(ctx context.Context, dev uint32, props []uint32, out []abi.BatchEntry) ([]abi.BatchEntry, error) {
	if len(props) > abi.MaxBatch {
		return out[:0], abi.Errorf(abi.ErrTooLarge, "batch of %d properties exceeds %d", len(props), abi.MaxBatch)
	}
	err := p.withDevice(ctx, dev, func(in *instance, d *device) error {
		for _, h := range props {
			if d.desc.Property(h) == nil {
				return abi.Errorf(abi.ErrNotFound, "device %s has no property handle %d", d.name(), h)
			}
		}
		if in.batch == nil {
			out = slices.Grow(out[:0], len(props))[:len(props)]
			clear(out)
			for i, h := range props {
				in.stack[0], in.stack[1] = uint64(dev), uint64(h)
				payload, err := in.call(abi.ExportRead, in.read)
				if err == nil {
					out[i].Value, err = decodeFor(d.desc.Property(h), payload)
				}
				out[i].Err = clipErr(err)
				if in.dead {
					return err
				}
			}
			return nil
		}
		in.argBuf = abi.AppendHandles(in.argBuf[:0], props)
		in.stack[0] = uint64(dev)
		payload, err := in.callArgs(abi.ExportReadBatch, in.batch, in.argBuf, 1, uint64(len(props)))
		if err != nil {
			return err
		}
		entries, err := abi.ParseBatchAppend(out[:0], payload, len(props))
		if err != nil {
			return abi.Errorf(abi.ErrInvalid, "plugin returned a malformed batch result: %v", err)
		}
		for i := range entries {
			if entries[i].Err == nil {
				entries[i].Value, entries[i].Err = convertFor(d.desc.Property(props[i]), entries[i].Value)
			} else if ae, ok := entries[i].Err.(*abi.Error); ok {
				entries[i].Err = in.withCause(&abi.Error{Code: ae.Code, Message: clipText(ae.Message)})
			}
			entries[i].Err = clipErr(entries[i].Err)
		}
		out = entries
		return nil
	})
	if err != nil {
		return out[:0], err
	}
	return out, nil
}

// Write sets a property. The value is converted to the property's declared
// type first; a read-only property is refused without calling the plugin.
func (p *Plugin) Write(ctx context.Context, dev, prop uint32, v abi.Value) error {
	return p.withDevice(ctx, dev, func(in *instance, d *device) error {
		pd := d.desc.Property(prop)
		if pd == nil {
			return abi.Errorf(abi.ErrNotFound, "device %s has no property handle %d", d.name(), prop)
		}
		if !pd.Writable() {
			return abi.Errorf(abi.ErrReadOnly, "property %q of %s is %s", pd.Name, d.name(), pd.AccessMode)
		}
		if t := pd.ValueType(); t != abi.TypeInvalid {
			cv, err := abi.Convert(v, t)
			if err != nil {
				return abi.Errorf(abi.ErrInvalid, "property %q is %s: %v", pd.Name, t, err)
			}
			v = cv
		}
		in.stack[0], in.stack[1] = uint64(dev), uint64(prop)
		_, err := in.callBuf(abi.ExportWrite, in.write, v.Encode(), 2)
		return err
	})
}

// State asks the plugin for the device state and its reason.
func (p *Plugin) State(ctx context.Context, dev uint32) (st abi.State, reason string, err error) {
	err = p.withDevice(ctx, dev, func(in *instance, d *device) (err error) {
		st, reason, err = in.askState(d)
		return err
	})
	return st, reason, err
}

// askState calls wapper_state for d, which the instance knows.
func (in *instance) askState(d *device) (st abi.State, reason string, err error) {
	in.stack[0] = uint64(d.desc.ID)
	payload, err := in.call(abi.ExportState, in.state)
	if err != nil {
		return 0, "", err
	}
	st, reason, err = abi.ParseStateResult(payload)
	if err != nil {
		return 0, "", abi.Errorf(abi.ErrInvalid, "plugin returned a malformed state: %v", err)
	}
	reason = clipText(reason)
	// A device that is not online because its I/O fails: say why, as
	// the host saw it (the plugin only got a code).
	if cause := d.cause(); cause != "" && st != abi.StateOnline && st != abi.StateOK && !strings.Contains(reason, cause) {
		if reason != "" {
			reason += " "
		}
		reason += "(host: " + cause + ")"
	}
	return st, reason, nil
}

// CallMethod calls a custom device method; args and the result are JSON.
func (p *Plugin) CallMethod(ctx context.Context, dev uint32, method string, args json.RawMessage) (result []byte, err error) {
	if !p.info.Has(abi.ExportMethod) {
		return nil, abi.Errorf(abi.ErrUnsupported, "plugin %s has no custom device methods", p.name)
	}
	req, err := json.Marshal(abi.MethodRequest{Method: method, Args: args})
	if err != nil {
		return nil, fmt.Errorf("encode method request: %w", err)
	}
	err = p.withDevice(ctx, dev, func(in *instance, d *device) error {
		in.stack[0] = uint64(dev)
		payload, err := in.callBuf(abi.ExportMethod, in.method, req, 1)
		result = bytes.Clone(payload)
		return err
	})
	return result, err
}

// Poll lets a push-style device deliver data: the plugin may block in host
// I/O for at most budget and reports readings with the report host
// function. It returns when to poll again; zero means not until the device
// is updated. The budget is capped below the call timeout.
func (p *Plugin) Poll(ctx context.Context, dev uint32, budget time.Duration) (next time.Duration, err error) {
	if !p.HasPoll() {
		return 0, nil
	}
	if limit := p.timeout * 3 / 4; budget > limit {
		budget = limit
	}
	err = p.withDevice(ctx, dev, func(in *instance, d *device) error {
		in.stack[0], in.stack[1] = uint64(dev), uint64(budget.Milliseconds())
		payload, err := in.call(abi.ExportPoll, in.poll)
		if err != nil {
			return err
		}
		ms, err := abi.ParsePollNext(payload)
		if err != nil {
			return abi.Errorf(abi.ErrInvalid, "plugin returned a malformed poll result: %v", err)
		}
		next = time.Duration(ms) * time.Millisecond
		return nil
	})
	return next, err
}

// MaxGuestText bounds the text a plugin can put in an error message or a
// state reason (SPEC.md §10): past it the text is cut, so that one result
// cannot fill the host log, the twin store and every client's screen.
const MaxGuestText = 1024

// clipText cuts s to MaxGuestText bytes on a rune boundary and says how
// much it cut.
func clipText(s string) string { return clipTo(s, MaxGuestText) }

// clipTo cuts s to max bytes on a rune boundary and says how much it cut.
func clipTo(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("… (%d bytes cut)", len(s)-cut)
}

// maxErrText bounds an error's text: the plugin's message, cut to
// MaxGuestText, and the host's cause of a failed I/O call (withCause).
const maxErrText = MaxGuestText + maxCauseText + 64

// clipErr clips the message of an ABI error.
func clipErr(err error) error {
	if ae, ok := err.(*abi.Error); ok && len(ae.Message) > maxErrText {
		return &abi.Error{Code: ae.Code, Message: clipTo(ae.Message, maxErrText)}
	}
	return err
}
