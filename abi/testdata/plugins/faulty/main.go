// Command faulty is a test plugin that misbehaves on request: each
// property's visitor {"fault": ...} picks what its read does. "none"
// returns the number of reads so far, so tests see it work before and after
// a fault.
//
// Faults of a read:
//
//   - loop: spins forever (the host's deadline ends it)
//   - trap: a wasm trap (a memory access far out of bounds)
//   - panic: a Go panic (the SDK returns code 13)
//   - oom: allocates until memory runs out, in chunks of "mb" MiB
//     (default 1); a chunk larger than limits.memoryMiB fails at once
//   - exit: os.Exit(3)
//   - sleep: sleeps "ms" milliseconds (WASI poll_oneoff)
//   - error: fails with code 14, "device said no"
//   - badvalue: returns a STRING for an INT property
//   - hold: sets kv key "key"+"/held", then waits until kv key
//     "key"+"/release" exists, checking every millisecond: the host test
//     decides when the call ends, without timing
//   - instance: returns this instance's identity, a random INT chosen
//     when the instance first needs it
//   - log: logs a line of "n" bytes through the host log function: "line:"
//     followed by 'x's
//   - stdout: writes such a line, then a newline, to stdout
//   - wasi: returns, as a JSON STRING, what WASI gives the plugin: its
//     arguments, environment, stdin, and the errors of opening, reading,
//     creating and listing files
//
// Method "blob" with {"n": N} returns N bytes: a JSON string of N-2 'x's.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"time"
	"unsafe"

	wapper "wapper.dev/wapper/sdk-go"
)

type faulty struct{ wapper.Base }

var reads int64

var hoard [][]byte

var instanceID int64

func (faulty) Read(d *wapper.Device, p *wapper.Property) (wapper.Value, error) {
	var v struct {
		Fault string `json:"fault"`
		Ms    int    `json:"ms"`
		MB    int    `json:"mb"`
		N     int    `json:"n"`
		Key   string `json:"key"`
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
		chunk := max(v.MB, 1) << 20
		for {
			hoard = append(hoard, make([]byte, chunk))
		}
	case "exit":
		os.Exit(3)
	case "sleep":
		time.Sleep(time.Duration(v.Ms) * time.Millisecond)
	case "error":
		return wapper.Value{}, wapper.Errorf(wapper.ErrDeviceFailed, "device said no")
	case "badvalue":
		return wapper.String("not a number"), nil
	case "hold":
		if err := wapper.KVSet(v.Key+"/held", []byte{1}); err != nil {
			return wapper.Value{}, err
		}
		for {
			_, ok, err := wapper.KVGet(v.Key + "/release")
			if err != nil {
				return wapper.Value{}, err
			}
			if ok {
				break
			}
			time.Sleep(time.Millisecond)
		}
	case "instance":
		for instanceID == 0 {
			instanceID = rand.Int64()
		}
		return wapper.Int(instanceID), nil
	case "log":
		wapper.Log.Info(line(v.N))
	case "stdout":
		fmt.Println(line(v.N))
	case "wasi":
		return wapper.String(wasi()), nil
	}
	return wapper.Int(reads), nil
}

// line is "line:" followed by 'x's, n bytes in all.
func line(n int) string { return "line:" + strings.Repeat("x", max(n-5, 0)) }

// wasi reports what the WASI environment gives the plugin.
func wasi() string {
	errText := func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	}
	var r struct {
		Args    []string `json:"args"`
		Env     []string `json:"env"`
		Stdin   int      `json:"stdin"`
		Open    string   `json:"open"`
		Read    string   `json:"read"`
		Create  string   `json:"create"`
		ReadDir string   `json:"readDir"`
	}
	r.Args, r.Env = os.Args, os.Environ()
	in, _ := io.ReadAll(os.Stdin)
	r.Stdin = len(in)
	f, err := os.Open("/")
	if err == nil {
		f.Close()
	}
	r.Open = errText(err)
	_, err = os.ReadFile("/etc/hostname")
	r.Read = errText(err)
	f, err = os.Create("/tmp/wapper-faulty")
	if err == nil {
		f.Close()
	}
	r.Create = errText(err)
	_, err = os.ReadDir(".")
	r.ReadDir = errText(err)
	b, _ := json.Marshal(r)
	return string(b)
}

func (faulty) CallMethod(_ *wapper.Device, method string, args []byte) ([]byte, error) {
	if method != "blob" {
		return nil, wapper.Errorf(wapper.ErrNotFound, "unknown method %q", method)
	}
	var a struct {
		N int `json:"n"`
	}
	if err := json.Unmarshal(args, &a); err != nil || a.N < 2 {
		return nil, wapper.Errorf(wapper.ErrInvalid, "blob wants {\"n\": N}, N >= 2")
	}
	b := make([]byte, a.N)
	for i := range b {
		b[i] = 'x'
	}
	b[0], b[a.N-1] = '"', '"'
	return b, nil
}

func init() { wapper.Register(faulty{}) }

func main() {}
