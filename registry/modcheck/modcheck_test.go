package modcheck_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/registry/modcheck"
)

func TestLoaderOnVirtualPlugin(t *testing.T) {
	wasm, err := os.ReadFile(testenv.Plugin(t, "virtual"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := modcheck.Loader(context.Background(), wasm)
	if err != nil {
		t.Fatal(err)
	}
	if m.ABIMajor != abi.Major || m.ABIMinor != abi.Minor || !slices.Contains(m.Exports, "wapper_read") || !slices.Contains(m.Imports, "wapper.log") {
		t.Fatalf("metadata %+v", m)
	}
	// Cut the module short: a clear refusal, no panic.
	if _, err := modcheck.Loader(context.Background(), wasm[:len(wasm)/3]); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("truncated module: %v", err)
	}
}

func TestNames(t *testing.T) {
	got := modcheck.Names([]string{"wapper_read (i32, i32) -> (i64)", "memory", "wapper_read(i32)"})
	if strings.Join(got, ",") != "memory,wapper_read" {
		t.Fatalf("%v", got)
	}
}
