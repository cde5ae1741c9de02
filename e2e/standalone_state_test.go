package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStandaloneKill9 kills the host in the middle of its cycles, with
// desired values accepted but maybe not applied, and restarts it: state comes
// back from bbolt before the manifests are read, every accepted desired
// value is applied, and none is applied twice.
func TestStandaloneKill9(t *testing.T) {
	state := t.TempDir()
	extra := map[string]string{}
	for i := range 5 {
		extra[fmt.Sprintf("dev%d.yaml", i)] = saVirtualDevice(fmt.Sprintf("dev%d", i), fmt.Sprintf("model%d", i), 50)
	}
	dir := saManifests(t, extra)
	h1 := saStart(t, state, "--manifests", dir, "--flush-interval", "200ms")
	saEventually(t, "devices running", 60*time.Second, func() error {
		for i := range 5 {
			d, err := h1.device(fmt.Sprintf("default/dev%d", i))
			if err != nil || d.twin("count").Reported == "" {
				return fmt.Errorf("dev%d: %v %+v", i, err, d)
			}
		}
		return nil
	})
	// Desired values: the first waited for, the rest only accepted (202),
	// then kill -9 at once, in the middle of the 50 ms cycles.
	if code, err := h1.do("PUT", "/api/v1/device/default/dev0/level?wait=20s", `{"value": 1}`, nil); err != nil || code != 200 {
		t.Fatalf("PUT: %d %v", code, err)
	}
	for i := range 5 {
		for v := 2; v <= 4; v++ {
			if code, err := h1.do("PUT", fmt.Sprintf("/api/v1/device/default/dev%d/level", i), fmt.Sprintf(`{"value": %d}`, v*10+i), nil); err != nil || code != 202 {
				t.Fatalf("PUT: %d %v", code, err)
			}
		}
	}
	h1.kill9()
	applied1 := appliedSeqs(t, h1)
	time.Sleep(300 * time.Millisecond)

	// Restart. The manifests folder is made unreadable for the first
	// moments so that only the restored state can bring devices up.
	hidden := dir + ".hidden"
	if err := os.Rename(dir, hidden); err != nil {
		t.Fatal(err)
	}
	h2 := saStart(t, state, "--manifests", dir)
	ds := h2.devices()
	if len(ds) != 6 {
		t.Fatalf("after restart without manifests, %d devices restored, want 6: %v", len(ds), ds)
	}
	if !strings.Contains(h2.Logs(), `"msg":"restored from state"`) {
		t.Fatalf("no restore logged")
	}
	saEventually(t, "restored devices applying every desired value", 60*time.Second, func() error {
		for i := range 5 {
			d, err := h2.device(fmt.Sprintf("default/dev%d", i))
			if err != nil {
				return err
			}
			want := fmt.Sprint(40 + i)
			if tw := d.twin("level"); tw.Desired != want || tw.Reported != want || tw.AppliedSeq != tw.DesiredSeq {
				return fmt.Errorf("dev%d level %+v, want %s applied", i, tw, want)
			}
		}
		return nil
	})
	applied2 := appliedSeqs(t, h2)
	for seq := range applied2 {
		if applied1[seq] {
			t.Errorf("desired seq %v applied before the kill and again after the restart", seq)
		}
	}
	// The first write had completed before the kill: the journal knows it.
	if len(applied1) == 0 {
		t.Errorf("no desired value applied before the kill (log:\n%s)", h1.Logs())
	}
	h2.stop()
	if err := os.Rename(hidden, dir); err != nil {
		t.Fatal(err)
	}
	// A third run re-reads the same manifests: nothing is applied again,
	// and the spec's desired value (21.5) does not overwrite later writes.
	h3 := saStart(t, state, "--manifests", dir)
	time.Sleep(time.Second)
	if a := appliedSeqs(t, h3); len(a) != 0 {
		t.Errorf("third run applied %v again", a)
	}
	d, _ := h3.device("default/dev4")
	if tw := d.twin("level"); tw.Reported != "44" {
		t.Errorf("dev4 level after third start %+v", tw)
	}
	if strings.Contains(h3.Logs(), `"msg":"desired value set"`) {
		t.Errorf("third run set desired values again from the unchanged manifests")
	}
}

// appliedSeqs returns the desired sequence numbers a host run applied, and
// fails on one applied twice in the run.
func appliedSeqs(t *testing.T, h *saHost) map[float64]bool {
	t.Helper()
	out := map[float64]bool{}
	for _, rec := range h.Logged("desired value applied") {
		seq, _ := rec["seq"].(float64)
		if out[seq] {
			t.Errorf("seq %v applied twice in one run", seq)
		}
		out[seq] = true
	}
	return out
}

const badYAML = `apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: broken
  spec: [
`

const unknownKind = `apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceInstance
metadata: {name: x}
`

const badField = `apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: typo-model, namespace: default}
spec:
  protocol: virtual
  properties:
    - {name: p, type: INTEGER, accessMode: ReadOnly}
`

const missingPlugin = `apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: nowhere-model, namespace: default}
spec:
  protocol: nosuchproto
  properties:
    - {name: p, type: INT, accessMode: ReadOnly}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: orphan, namespace: default}
spec:
  deviceModelRef: {name: nowhere-model}
  properties:
    - {name: p, visitors: {protocolName: nosuchproto, configData: {kind: counter}}}
`

const badDigest = `apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: tampered}
spec:
  protocols: [tampered]
  module:
    file: virtual.wasm
    digest: sha256:0000000000000000000000000000000000000000000000000000000000000000
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: tampered-model, namespace: default}
spec:
  protocol: tampered
  properties:
    - {name: p, type: INT, accessMode: ReadOnly}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: victim, namespace: default}
spec:
  deviceModelRef: {name: tampered-model}
  properties:
    - {name: p, visitors: {protocolName: tampered, configData: {kind: counter}}}
`

// TestStandaloneBadManifests: malformed, unknown, invalid and conflicting
// documents, a device whose plugin is missing and a plugin whose digest does
// not match are all reported, and the good device runs regardless.
func TestStandaloneBadManifests(t *testing.T) {
	conflict := strings.Replace(saVirtualDevice("thermostat", "other-model", 1000), "kind: DeviceModel", "kind: DeviceModel", 1)
	dir := saManifests(t, map[string]string{
		"a-broken.yaml": badYAML, "b-unknown.yaml": unknownKind, "c-typo.yaml": badField,
		"d-orphan.yaml": missingPlugin, "e-tampered.yaml": badDigest, "z-conflict.yaml": conflict,
		"notes.txt": "not a manifest",
	})
	h := saStart(t, t.TempDir(), "--manifests", dir)
	saEventually(t, "good device running", 60*time.Second, func() error {
		d, err := h.device("default/thermostat")
		if err == nil && (d.Phase != "Running" || d.twin("temperature").Reported == "") {
			err = fmt.Errorf("%+v", d)
		}
		return err
	})
	var probs struct {
		Manifests []struct{ File, Kind, Name, Field, Reason string }
		Devices   []struct{ Source, Kind, Name, Reason string }
	}
	if _, err := h.get("/api/v1/manifests/errors", &probs); err != nil {
		t.Fatal(err)
	}
	find := func(file, field, reason string) {
		t.Helper()
		for _, p := range probs.Manifests {
			if filepath.Base(p.File) == file && p.Field == field && strings.Contains(p.Reason, reason) {
				return
			}
		}
		t.Errorf("no problem for %s field %q reason ~%q in %+v", file, field, reason, probs.Manifests)
	}
	find("a-broken.yaml", "", "YAML")
	find("b-unknown.yaml", "kind", `unknown kind "DeviceInstance"`)
	find("c-typo.yaml", "spec.properties[0].type", "INTEGER")
	find("z-conflict.yaml", "metadata.name", "already defined in")
	if len(probs.Manifests) != 4 {
		t.Errorf("%d manifest problems, want 4: %+v", len(probs.Manifests), probs.Manifests)
	}
	ds := h.devices()
	if d := ds["default/orphan"]; d.Phase != "Error" || !strings.Contains(d.Reason, `no MapperPlugin provides protocol "nosuchproto"`) {
		t.Errorf("orphan: %+v", d)
	}
	if d := ds["default/victim"]; d.Phase != "Error" || !strings.Contains(d.Reason, "digest mismatch") {
		t.Errorf("victim: %+v", d)
	}
	foundPlugin := false
	for _, p := range probs.Devices {
		foundPlugin = foundPlugin || (p.Kind == "MapperPlugin" && p.Name == "tampered" && strings.Contains(p.Reason, "refusing to run it"))
	}
	if !foundPlugin {
		t.Errorf("tampered plugin not listed: %+v", probs.Devices)
	}
	// Bad manifests are in the log with file, field and reason.
	found := false
	for _, rec := range h.Logged("bad manifest") {
		found = found || (strings.HasSuffix(fmt.Sprint(rec["file"]), "c-typo.yaml") && rec["field"] == "spec.properties[0].type")
	}
	if !found {
		t.Errorf("bad manifest not logged with file and field")
	}
	// The good device kept working through all of this.
	d1, _ := h.device("default/thermostat")
	time.Sleep(1500 * time.Millisecond)
	d2, _ := h.device("default/thermostat")
	if !d2.twin("ticks").ReportedTime.After(d1.twin("ticks").ReportedTime) {
		t.Errorf("good device stopped reading")
	}
}

// TestStandaloneLiveChanges adds, updates and deletes manifest files while
// the host runs.
func TestStandaloneLiveChanges(t *testing.T) {
	dir := saManifests(t, nil)
	h := saStart(t, t.TempDir(), "--manifests", dir)
	saEventually(t, "thermostat", 60*time.Second, func() error { _, err := h.device("default/thermostat"); return err })

	saWrite(t, filepath.Join(dir, "live.yaml"), saVirtualDevice("live", "live-model", 100))
	saEventually(t, "added device reading", 30*time.Second, func() error {
		d, err := h.device("default/live")
		if err == nil && d.twin("count").Reported == "" {
			err = errors.New("no reading yet")
		}
		return err
	})
	// Update: the device gains a property with a desired value.
	upd := strings.Replace(saVirtualDevice("live", "live-model", 100), "    - {name: level, type: INT, accessMode: ReadWrite}",
		"    - {name: level, type: INT, accessMode: ReadWrite}\n    - {name: mode, type: STRING, accessMode: ReadWrite}", 1) +
		"    - name: mode\n      desired: {value: eco}\n      visitors: {protocolName: virtual, configData: {kind: setpoint}}\n"
	saWrite(t, filepath.Join(dir, "live.yaml"), upd)
	saEventually(t, "updated device with the new property applied", 30*time.Second, func() error {
		d, err := h.device("default/live")
		if err == nil && d.twin("mode").Reported != "eco" {
			err = fmt.Errorf("mode %+v", d.twin("mode"))
		}
		return err
	})
	// A broken edit keeps nothing of the file, and is reported; fixing it
	// brings the device back.
	saWrite(t, filepath.Join(dir, "live.yaml"), badYAML)
	saEventually(t, "device of the broken file removed", 30*time.Second, func() error {
		if _, err := h.device("default/live"); err == nil {
			return errors.New("still there")
		}
		return nil
	})
	if _, ok := h.devices()["default/thermostat"]; !ok {
		t.Fatal("a broken file affected another device")
	}
	if err := os.Remove(filepath.Join(dir, "live.yaml")); err != nil {
		t.Fatal(err)
	}
	saEventually(t, "problem cleared after delete", 30*time.Second, func() error {
		var probs struct{ Manifests []any }
		h.get("/api/v1/manifests/errors", &probs)
		if len(probs.Manifests) != 0 {
			return fmt.Errorf("%v", probs.Manifests)
		}
		return nil
	})
}
