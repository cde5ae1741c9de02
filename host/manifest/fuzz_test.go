package manifest_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"wapper.dev/wapper/host/manifest"
)

// Fuzz target for manifest parsing (issue 11): a Device, DeviceModel or
// MapperPlugin document, good or bad, never crashes the loader; a bad one
// is a Problem naming the file and saying why, a good one is valid and
// survives being written back out as YAML and read again. Run it with
//
//	go test -run '^$' -fuzz '^FuzzParse$' -fuzztime 60s ./host/manifest

const fuzzModel = `apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata:
  name: thermostat-model
  namespace: default
spec:
  protocol: virtual
  properties:
    - {name: temperature, description: room temperature, type: DOUBLE, accessMode: ReadOnly, unit: celsius, minimum: "-40", maximum: "120"}
    - {name: ticks, type: INT, accessMode: ReadOnly}
    - {name: setpoint, type: double, accessMode: ReadWrite}
    - {name: heating, type: BOOLEAN, accessMode: ReadWrite}
`

const fuzzDevice = `apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata:
  name: thermostat
  namespace: default
spec:
  deviceModelRef:
    name: thermostat-model
  nodeName: edge-1
  protocol:
    protocolName: modbus
    configData: {ip: 172.17.0.3, port: 1502, slaveID: 1, timeout: 2.5, tls: false}
  properties:
    - name: temperature
      collectCycle: 1000
      reportCycle: 2000
      reportToCloud: true
      desired: {value: "21.5"}
      visitors:
        protocolName: modbus
        configData: {register: HoldingRegister, offset: 2, limit: 1, scale: 0.1, isSwap: true}
      pushMethod:
        mqtt: {address: "tcp://127.0.0.1:1883", topic: demo/thermostat/temperature, qos: 1, retained: true}
        http: {hostName: "http://127.0.0.1", port: 8080, requestPath: /in, timeout: 1000}
    - name: ticks
  methods:
    - {name: SetTemperature, description: change the setpoint, propertyNames: [temperature]}
  stateReport: {reportCycle: 2000, reportToCloud: true}
status:
  twins: [{propertyName: temperature, reported: {value: "21"}}]
`

const fuzzPlugin = `apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: modbus}
spec:
  protocols: [modbus, modbus-rtu]
  module:
    ref: 127.0.0.1:5000/mappers/modbus:v1
    digest: sha256:0000000000000000000000000000000000000000000000000000000000000000
  grants:
    network: ["tcp://10.0.0.0/24:502", "udp://*.plant.local:1000-2000", "tcp://[::1]:*"]
    serial: ["/dev/ttyUSB*"]
    gpio: ["GPIO17", "GPIO*"]
  limits: {memoryMiB: 64, callTimeout: 2s, instances: 2}
  config: {pollMs: 100, names: [a, b]}
`

// heapAllocs returns the bytes allocated on the heap so far (exact:
// runtime.ReadMemStats flushes every P's cached spans first).
func heapAllocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// FuzzParse checks manifest.Parse on one file's contents.
func FuzzParse(f *testing.F) {
	for _, doc := range []string{
		fuzzModel, fuzzDevice, fuzzPlugin,
		fuzzModel + "---\n" + fuzzDevice + "---\n" + fuzzPlugin,
		fuzzPlugin + "---\n" + fuzzPlugin, // conflict
		"# only a comment\n---\n---\n",
		"kind: Device\n",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
		`{"apiVersion":"devices.kubeedge.io/v1beta1","kind":"DeviceModel","metadata":{"name":"m"},"spec":{"protocol":"virtual","properties":[{"name":"p","type":"INT"}]}}`,
		"apiVersion: devices.kubeedge.io/v1beta1\nkind: DeviceModel\nmetadata: {name: m}\nspec:\n  protocol: virtual\n  propertiez: []\n",
		"apiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata: {name: Bad_Name, namespace: \"-x\"}\nspec:\n  properties: [{name: p, collectCycle: -5}, {name: p}]\n  methods: [{name: m, propertyNames: [q]}]\n",
		"apiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata: {name: d}\nspec:\n  deviceModelRef: {name: m}\n  properties:\n  - name: p\n    pushMethod: {mqtt: {topic: 'a/#', qos: 3}, http: {port: 70000}}\n",
		"apiVersion: mappers.wapper.dev/v1alpha1\nkind: MapperPlugin\nmetadata: {name: v}\nspec:\n  protocols: []\n  module: {}\n  limits: {memoryMiB: 99999, callTimeout: -1s, instances: 0}\n  grants: {network: [\"ftp://x\", \"tcp://1.2.3.4:99999\"], serial: [relative]}\n",
		"a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n",
		"apiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata: {name: d}\nspec: [1, 2\n",
		"\t- :\n",
		"apiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata: {name: d}\nstatus: !!binary aGk=\n",
	} {
		f.Add([]byte(doc))
	}
	// The repository's own examples, when the tree has them.
	for _, pat := range []string{"../../examples/*/*.yaml", "../../internal/k8stest/testdata/*.yaml"} {
		files, _ := filepath.Glob(pat)
		for _, file := range files {
			if b, err := os.ReadFile(file); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		before := heapAllocs()
		s := manifest.Parse("fuzz.yaml", data)
		if used := heapAllocs() - before; used > 64<<20 || (len(data) < 4<<10 && used > 32<<20) {
			t.Fatalf("%d bytes of manifest allocated %d bytes", len(data), used)
		}
		checkSet(t, s)
		n := len(s.Devices) + len(s.Models) + len(s.Plugins)
		if n == 0 {
			return
		}
		// Write the good objects back out and read them again.
		var docs []string
		for _, d := range s.Devices {
			docs = append(docs, mustYAML(t, d))
		}
		for _, m := range s.Models {
			docs = append(docs, mustYAML(t, m))
		}
		for _, p := range s.Plugins {
			docs = append(docs, mustYAML(t, p))
		}
		again := manifest.Parse("again.yaml", []byte(strings.Join(docs, "---\n")))
		if len(again.Problems) > 0 {
			t.Fatalf("good objects written back out are refused: %v\n%s", again.Problems, strings.Join(docs, "---\n"))
		}
		if a, b := mustJSON(t, s.Devices, s.Models, s.Plugins), mustJSON(t, again.Devices, again.Models, again.Plugins); a != b {
			t.Fatalf("objects changed when written back out:\n%s\n%s", a, b)
		}
	})
}

// checkSet checks the invariants of a parsed Set.
func checkSet(t *testing.T, s *manifest.Set) {
	t.Helper()
	for _, p := range s.Problems {
		if p.File != "fuzz.yaml" || p.Reason == "" || p.Doc < 0 {
			t.Fatalf("problem without file or reason: %+v", p)
		}
		if msg := p.Error(); !strings.HasPrefix(msg, "fuzz.yaml") || !strings.Contains(msg, p.Reason) {
			t.Fatalf("problem text %q", msg)
		}
	}
	n := len(s.Devices) + len(s.Models) + len(s.Plugins)
	if len(s.Origin) != n {
		t.Fatalf("%d origins for %d objects", len(s.Origin), n)
	}
	for _, d := range s.Devices {
		if errs := manifest.ValidateDevice(d); len(errs) > 0 || d.Namespace == "" {
			t.Fatalf("invalid device %s/%s accepted: %v", d.Namespace, d.Name, errs)
		}
		if s.Origin[manifest.Key(manifest.KindDevice, d.Namespace, d.Name)] != "fuzz.yaml" {
			t.Fatalf("device %s/%s has no origin", d.Namespace, d.Name)
		}
	}
	for _, m := range s.Models {
		if errs := manifest.ValidateModel(m); len(errs) > 0 || m.Namespace == "" {
			t.Fatalf("invalid model %s/%s accepted: %v", m.Namespace, m.Name, errs)
		}
		if s.Origin[manifest.Key(manifest.KindDeviceModel, m.Namespace, m.Name)] != "fuzz.yaml" {
			t.Fatalf("model %s/%s has no origin", m.Namespace, m.Name)
		}
	}
	for _, p := range s.Plugins {
		if errs := p.Validate(); len(errs) > 0 {
			t.Fatalf("invalid plugin %s accepted: %v", p.Name, errs)
		}
		if s.Origin[manifest.Key(manifest.KindMapperPlugin, "", p.Name)] != "fuzz.yaml" {
			t.Fatalf("plugin %s has no origin", p.Name)
		}
	}
}

func mustYAML(t *testing.T, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatalf("accepted object does not encode as YAML: %v", err)
	}
	return string(b)
}

func mustJSON(t *testing.T, vs ...any) string {
	t.Helper()
	var b strings.Builder
	for _, v := range vs {
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("accepted object does not encode as JSON: %v", err)
		}
		fmt.Fprintf(&b, "%s\n", j)
	}
	return b.String()
}
