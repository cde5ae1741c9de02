package wapper

import (
	"context"
	"log/slog"

	"wapper.dev/wapper/abi"
)

// Log is a logger whose records go to the host's log, tagged there with the
// plugin, instance and device of the current call. Attributes are appended
// to the message as key=value.
var Log = slog.New(hostHandler{})

type hostHandler struct{ attrs []slog.Attr }

func (hostHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h hostHandler) Handle(_ context.Context, r slog.Record) error {
	msg := r.Message
	add := func(a slog.Attr) bool {
		msg += " " + a.Key + "=" + a.Value.String()
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	hostLog(int32(r.Level)/4, msg)
	return nil
}

func (h hostHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return hostHandler{attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h hostHandler) WithGroup(string) slog.Handler { return h }

// Report pushes a reading of p now, for devices that push data (from
// Poller.Poll) or for readings a plugin learns outside Read.
func Report(p *Property, v Value) error {
	d := p.dev
	if d == nil {
		return Errorf(ErrInvalid, "report %q: the property belongs to no device (take it from Device.Properties)", p.Name)
	}
	var c int32
	if d.in != nil && d.in.report != nil {
		c = d.in.report(d.ID, p.Handle, v.Encode())
	} else {
		c = hostReport(d.ID, p.Handle, v.Encode())
	}
	if c < 0 {
		return Errorf(Code(-c), "report %s/%s", d, p.Name)
	}
	return nil
}

// KVGet reads a key from the plugin's persistent store. ok is false when
// the key is absent.
func KVGet(key string) (val []byte, ok bool, err error) {
	buf := make([]byte, 256)
	for {
		n := hostKVGet(key, buf)
		switch {
		case n == -int32(ErrNotFound):
			return nil, false, nil
		case n < 0:
			return nil, false, Errorf(Code(-n), "kv get %q", key)
		case int(n) <= len(buf):
			return buf[:n], true, nil
		}
		buf = make([]byte, n)
	}
}

// KVSet stores a key in the plugin's persistent store.
func KVSet(key string, val []byte) error {
	if c := hostKVSet(key, val); c < 0 {
		return Errorf(Code(-c), "kv set %q (%d bytes; limits: key %d, value %d)", key, len(val), abi.MaxKVKey, abi.MaxKVValue)
	}
	return nil
}

// KVDelete removes a key from the plugin's persistent store.
func KVDelete(key string) error {
	if c := hostKVDelete(key); c < 0 {
		return Errorf(Code(-c), "kv delete %q", key)
	}
	return nil
}

// Secret reads one key of a secret, ref being "NAME/KEY" (such as
// "plc-login/password"): a Kubernetes Secret delivered by wapper-cloud,
// or a file under the host's --secrets-dir. The MapperPlugin's
// grants.secrets must name the secret, or the error has code ErrDenied;
// a secret or key that does not exist is ErrNotFound. Keep the value in
// memory only: never log, report or store it.
func Secret(ref string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n := hostSecretGet(ref, buf)
		switch {
		case n < 0:
			return nil, &IOError{Op: "read", Target: "secret " + ref, Code: Code(-n)}
		case int(n) <= len(buf):
			return buf[:n], nil
		}
		clear(buf)
		buf = make([]byte, n)
	}
}
