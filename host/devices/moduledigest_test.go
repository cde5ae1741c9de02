package devices_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/host/devices"
)

// TestFileDigestIsTheFilesOwn: spec.module.digest with a module file is
// the file's sha256; another digest (such as a manifest digest from
// `wapper push`) is refused with the one expected.
func TestFileDigestIsTheFilesOwn(t *testing.T) {
	dir := t.TempDir()
	wasm := []byte("\x00asm\x01\x00\x00\x00")
	if err := os.WriteFile(filepath.Join(dir, "m.wasm"), wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(wasm)
	own := "sha256:" + hex.EncodeToString(sum[:])
	plugin := func(d string) *v1alpha1.MapperPlugin {
		return &v1alpha1.MapperPlugin{ObjectMeta: metav1.ObjectMeta{Name: "m"},
			Spec: v1alpha1.MapperPluginSpec{Module: v1alpha1.Module{File: "m.wasm", Digest: d}}}
	}
	l := devices.ModuleLoader{PluginDir: dir}
	if _, err := l.Module(context.Background(), plugin(own)); err != nil {
		t.Fatal(err)
	}
	other := "sha256:" + strings.Repeat("ab", 32)
	_, err := l.Module(context.Background(), plugin(other))
	if err == nil || !strings.Contains(err.Error(), own) || !strings.Contains(err.Error(), "the file's own sha256, not the manifest digest") {
		t.Fatalf("file pinned by another digest: %v", err)
	}
}
