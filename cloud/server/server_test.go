package server

import (
	"strings"
	"testing"
)

// TestWorkers: the number of reconcile workers is the one given (issue
// 14: 1 became 4), zero means DefaultWorkers and a negative one is
// refused.
func TestWorkers(t *testing.T) {
	for _, tc := range []struct{ in, want int }{{1, 1}, {2, 2}, {7, 7}, {0, DefaultWorkers}} {
		cfg, err := Config{Workers: tc.in, ModuleCacheDir: t.TempDir(), TLSHosts: []string{"localhost"}}.withDefaults()
		if err != nil || cfg.Workers != tc.want {
			t.Errorf("Workers %d: got %d, %v; want %d", tc.in, cfg.Workers, err, tc.want)
		}
	}
	if _, err := (Config{Workers: -1}).withDefaults(); err == nil || !strings.Contains(err.Error(), "want 1 or more") {
		t.Errorf("Workers -1: %v, want a refusal", err)
	}
}

// TestDefaults: an empty Config gets the documented defaults.
func TestDefaults(t *testing.T) {
	cfg, err := Config{ModuleCacheDir: t.TempDir()}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != DefaultListen || cfg.Namespace != DefaultNamespace || cfg.TLSSecret != DefaultTLSSecret || cfg.Logger == nil || len(cfg.TLSHosts) < 3 {
		t.Fatalf("defaults %+v", cfg)
	}
}

// TestPluginSecretsNamespace: the namespace of plugin Secrets may not be
// the one that holds the node tokens.
func TestPluginSecretsNamespace(t *testing.T) {
	if _, err := (Config{PluginSecretsNamespace: DefaultNamespace, ModuleCacheDir: t.TempDir()}).withDefaults(); err == nil || !strings.Contains(err.Error(), "node tokens") {
		t.Fatalf("the token namespace as plugin secrets namespace: %v", err)
	}
	if _, err := (Config{Namespace: "a", PluginSecretsNamespace: "b", ModuleCacheDir: t.TempDir()}).withDefaults(); err != nil {
		t.Fatal(err)
	}
}
