//go:build !wasip1

package wapper

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"wapper.dev/wapper/abi"
)

// Outside wasm the host functions run in-process, so that plugin code can be
// unit-tested with go test: logs go to slog's default logger, the kv store
// is a map, and reports go to ReportHook.

// ReportHook receives reports when the plugin runs natively (not in wasm),
// except those of devices added through package sdktest, which collects
// them itself.
var ReportHook func(dev, prop uint32, v Value)

var native struct {
	sync.Mutex // guards kv
	kv         map[string][]byte
}

// hostSecretGet reads NAME/KEY under the folder in the environment
// variable WAPPER_SECRETS_DIR, the layout of the host's --secrets-dir;
// natively there are no grants.
func hostSecretGet(ref string, dst []byte) int32 {
	name, key, ok := strings.Cut(ref, "/")
	dir := os.Getenv("WAPPER_SECRETS_DIR")
	if !ok || name == "" || key == "" || strings.Contains(key, "/") || name == ".." || key == ".." {
		return -int32(abi.ErrInvalid)
	}
	if dir == "" {
		return -int32(abi.ErrNotFound)
	}
	v, err := os.ReadFile(filepath.Join(dir, name, key))
	if err != nil {
		return -int32(abi.ErrNotFound)
	}
	if len(v) <= len(dst) {
		copy(dst, v)
	}
	return int32(len(v))
}

func hostLog(level int32, msg string) {
	slog.Log(context.Background(), slog.Level(level*4), msg)
}

func hostReport(dev, prop uint32, val []byte) int32 {
	v, err := abi.DecodeValue(val)
	if err != nil {
		return -int32(abi.ErrInvalid)
	}
	if ReportHook != nil {
		ReportHook(dev, prop, v)
	}
	return 0
}

func hostKVGet(key string, dst []byte) int32 {
	native.Lock()
	defer native.Unlock()
	v, ok := native.kv[key]
	if !ok {
		return -int32(abi.ErrNotFound)
	}
	if len(v) <= len(dst) {
		copy(dst, v)
	}
	return int32(len(v))
}

func hostKVSet(key string, val []byte) int32 {
	if len(key) > abi.MaxKVKey || len(val) > abi.MaxKVValue {
		return -int32(abi.ErrTooLarge)
	}
	native.Lock()
	defer native.Unlock()
	if native.kv == nil {
		native.kv = map[string][]byte{}
	}
	native.kv[key] = append([]byte(nil), val...)
	return 0
}

func hostKVDelete(key string) int32 {
	native.Lock()
	defer native.Unlock()
	delete(native.kv, key)
	return 0
}
