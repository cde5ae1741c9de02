package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/manifest"
	"wapper.dev/wapper/host/rest"
	"wapper.dev/wapper/host/runtime"
	"wapper.dev/wapper/host/store"
	"wapper.dev/wapper/registry/fetch"
)

type logSink struct{ strings.Builder }

// TestFailedPullIsAProblem: a MapperPlugin whose module cannot be pulled
// (here: the registry speaks plain HTTP and --registry-plain-http is not
// given) is counted in the "manifests applied" summary, and the error
// names the host's flag, not wapper's --plain-http.
func TestFailedPullIsAProblem(t *testing.T) {
	registry := httptest.NewServer(http.NotFoundHandler()) // plain HTTP on loopback
	defer registry.Close()
	host := strings.TrimPrefix(registry.URL, "http://")

	cmd, o := newCommand()
	if err := cmd.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	st, err := store.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	quiet := slog.New(slog.DiscardHandler)
	eng, err := runtime.NewEngine(runtime.EngineOptions{CacheDir: filepath.Join(state, "cache"), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(context.Background())
	mgr, err := devices.New(devices.Options{Engine: eng, Store: st, Logger: quiet,
		Modules: devices.ModuleLoader{CacheDir: filepath.Join(state, "modules"), Fetch: fetch.Options{Logger: quiet, Client: o.registry}}})
	if err != nil {
		t.Fatal(err)
	}
	defer mgr.Close(context.Background())

	set := manifest.Parse("plugin.yaml", []byte(`apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: pulled}
spec:
  protocols: [virtual]
  module: {image: "`+host+`/plugins/virtual:v1", digest: "sha256:`+strings.Repeat("ab", 32)+`"}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: m, namespace: default}
spec:
  protocol: virtual
  properties:
  - {name: n, type: INT, accessMode: ReadOnly}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: d, namespace: default}
spec:
  deviceModelRef: {name: m}
  protocol: {protocolName: virtual}
  properties:
  - {name: n, visitors: {protocolName: virtual, configData: {kind: counter}}}
`))
	if len(set.Problems) > 0 {
		t.Fatalf("manifest: %+v", set.Problems)
	}
	var logs logSink
	applyManifestSet(context.Background(), mgr, set, rest.NewProblems(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(&logs, nil)))

	var summary string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "manifests applied") {
			summary = l
		}
	}
	if !strings.Contains(summary, "level=WARN") || !strings.Contains(summary, "problems=2") || !strings.Contains(summary, "failed-plugins=pulled") {
		t.Errorf("summary after a failed pull: %q\nwant a warning counting the plugin and its device as problems", summary)
	}
	var reason string
	for _, p := range mgr.Problems() {
		if p.Kind == devices.KindMapperPlugin {
			reason = p.Reason
		}
	}
	if !strings.Contains(reason, "pass --registry-plain-http") || strings.Contains(reason, " --plain-http") {
		t.Errorf("plugin problem: %q\nwant the hint to name --registry-plain-http", reason)
	}
}
