package manifest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"wapper.dev/wapper/host/manifest"
)

func TestParseProblemsAndGoodDocs(t *testing.T) {
	doc := `# a KubeEdge device, with an exported status that is ignored
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: d}
spec:
  deviceModelRef: {name: m}
  properties:
    - {name: p, collectCycle: 1000}
status:
  twins: [{propertyName: p}]
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: bad}
spec:
  deviceModelRef: {name: m}
  properties:
    - {name: p, collectCycle: -5}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: m}
spec:
  protocol: virtual
  propertiez: []
---
apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: v}
spec:
  protocols: [virtual]
  module: {file: v.wasm}
---
kind: Device
`
	s := manifest.Parse("f.yaml", []byte(doc))
	if len(s.Devices) != 1 || s.Devices[0].Namespace != "default" || len(s.Plugins) != 1 || len(s.Models) != 0 {
		t.Fatalf("good docs: %d devices %d models %d plugins", len(s.Devices), len(s.Models), len(s.Plugins))
	}
	want := []struct {
		doc           int
		field, reason string
	}{
		{2, "spec.properties[0].collectCycle", "zero or more"},
		{3, "", "propertiez"},
		{5, "apiVersion", "needs apiVersion and kind"},
	}
	if len(s.Problems) != len(want) {
		t.Fatalf("problems: %v", s.Problems)
	}
	for i, w := range want {
		p := s.Problems[i]
		if p.File != "f.yaml" || p.Doc != w.doc || p.Field != w.field || !strings.Contains(p.Reason, w.reason) {
			t.Errorf("problem %d = %+v, want doc %d field %q reason ~%q", i, p, w.doc, w.field, w.reason)
		}
	}
}

func TestLoadConflictFirstFileWins(t *testing.T) {
	dir := t.TempDir()
	plugin := "apiVersion: mappers.wapper.dev/v1alpha1\nkind: MapperPlugin\nmetadata: {name: v}\nspec:\n  protocols: [virtual]\n  module: {file: v.wasm}\n"
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(plugin), 0o644)
	os.WriteFile(filepath.Join(dir, "b.yml"), []byte(plugin), 0o644)
	os.WriteFile(filepath.Join(dir, "c.txt"), []byte("ignored"), 0o644)
	s, err := manifest.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Plugins) != 1 || s.Origin["MapperPlugin/v"] != filepath.Join(dir, "a.yaml") {
		t.Fatalf("plugins %d origin %v", len(s.Plugins), s.Origin)
	}
	if len(s.Problems) != 1 || !strings.Contains(s.Problems[0].Reason, "already defined in") || filepath.Base(s.Problems[0].File) != "b.yml" {
		t.Fatalf("problems %v", s.Problems)
	}
	if _, err := manifest.Load(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing folder loaded")
	}
}

// TestMethodPropertyNames: a method's propertyNames are checked against
// spec.properties when the Device lists some; when it lists none it runs
// all of its model's properties, which the host checks against the model.
func TestMethodPropertyNames(t *testing.T) {
	doc := `apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: all}
spec:
  deviceModelRef: {name: m}
  methods: [{name: set, propertyNames: [temperature]}]
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: listed}
spec:
  deviceModelRef: {name: m}
  properties: [{name: humidity}]
  methods: [{name: set, propertyNames: [temperature]}]
`
	s := manifest.Parse("f.yaml", []byte(doc))
	if len(s.Devices) != 1 || s.Devices[0].Name != "all" {
		t.Fatalf("devices %d, problems %v; want only the Device without spec.properties", len(s.Devices), s.Problems)
	}
	if len(s.Problems) != 1 || s.Problems[0].Field != "spec.methods[0].propertyNames[0]" || !strings.Contains(s.Problems[0].Reason, `Not found: "temperature"`) {
		t.Fatalf("problems %+v, want spec.methods[0].propertyNames[0] not found", s.Problems)
	}
}
