package devices_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	"github.com/opencontainers/go-digest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/internal/testenv"
)

// testOthersNotBlocked: while a hot upgrade of plugin virtual is held in
// its canary wait (by a test hook), a Device of another plugin is added
// and runs: the upgrade does not hold other changes up. A change of one
// of virtual's Devices, the removal of the other (which, made beside the
// upgrade, would stop a device it moves) and a second new module, applied
// meanwhile, wait for the upgrade and are made once it ends: the second
// module by a second upgrade, after the first, the device changed on the
// module it ends on.
func testOthersNotBlocked(t *testing.T, cache string) {
	virtual, err := os.ReadFile(testenv.Plugin(t, "virtual"))
	if err != nil {
		t.Fatal(err)
	}
	good2 := withCustomSection(virtual, "upgrade-test", "v2") // compiled by GoodBadGood
	good3 := withCustomSection(virtual, "upgrade-test", "v3")
	f := newUpgradeFixture(t, cache, 2, nil, func(prop string) map[string]any {
		if prop == "n" {
			return map[string]any{"kind": "counter"}
		}
		return map[string]any{"kind": "setpoint"}
	})
	m, ctx := f.m, context.Background()

	// Plugin other (the same module, another protocol) and its model,
	// from another source.
	if err := os.WriteFile(filepath.Join(filepath.Dir(f.module), "other.wasm"), virtual, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.UpsertPlugin(ctx, "test", &v1alpha1.MapperPlugin{ObjectMeta: metav1.ObjectMeta{Name: "other"},
		Spec: v1alpha1.MapperPluginSpec{Protocols: []string{"other"}, Module: v1alpha1.Module{File: "other.wasm"}}}); err != nil {
		t.Fatal(err)
	}
	if err := m.UpsertModel(ctx, "test", &v1beta1.DeviceModel{ObjectMeta: metav1.ObjectMeta{Name: "mo", Namespace: "default"},
		Spec: v1beta1.DeviceModelSpec{Protocol: "other", Properties: []v1beta1.ModelProperty{
			{Name: "n", Type: v1beta1.INT, AccessMode: v1beta1.ReadOnly}}}}); err != nil {
		t.Fatal(err)
	}

	// The first upgrade stops in its canary wait until released; the
	// hook tells when a change of virtual is left to it.
	held, release, deferred := make(chan struct{}), make(chan struct{}), make(chan struct{}, 16)
	var first sync.Once
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // a failed test must not leave the upgrade held
	devices.SetUpgradeHookForTest(m, func(plugin, step string) {
		if plugin != "virtual" {
			return
		}
		switch step {
		case "canary":
			hold := false
			first.Do(func() { hold = true; close(held) })
			if hold {
				<-release
			}
		case "deferred":
			select {
			case deferred <- struct{}{}:
			default:
			}
		}
	})
	guard := func(what string, ch <-chan struct{}) { // a bound, not a speed
		t.Helper()
		select {
		case <-ch:
		case <-time.After(5 * time.Minute):
			t.Fatalf("timed out waiting for %s", what)
		}
	}

	f.install(good2)
	applied := make(chan error, 1)
	go func() { applied <- m.Apply(ctx, "manifests", f.set) }()
	select {
	case <-held:
	case err := <-applied:
		t.Fatalf("the upgrade ended (Apply: %v) without reaching its canary wait", err)
	case <-time.After(5 * time.Minute): // a bound, not a speed
		t.Fatal("timed out waiting for the upgrade's canary wait")
	}

	// A Device of plugin other is added, and runs, while the upgrade is
	// held.
	uctx, cancel := context.WithTimeout(ctx, time.Minute) // a bound, not a speed
	err = m.UpsertDevice(uctx, "test", &v1beta1.Device{ObjectMeta: metav1.ObjectMeta{Name: "o1", Namespace: "default"},
		Spec: v1beta1.DeviceSpec{DeviceModelRef: &corev1.LocalObjectReference{Name: "mo"}, Properties: []v1beta1.DeviceProperty{
			{Name: "n", Visitors: v1beta1.VisitorConfig{ConfigData: &v1beta1.CustomizedValue{Data: map[string]any{"kind": "counter"}}}}}}})
	cancel()
	if err != nil {
		t.Fatalf("a Device of another plugin not added while plugin virtual upgrades: %v", err)
	}
	waitFor(t, "device o1 (plugin other) reading while virtual upgrades", func() bool {
		ds, err := m.Device("default", "o1")
		if err != nil || ds.Phase != devices.PhaseRunning {
			return false
		}
		for _, tw := range ds.Twins {
			if tw.Property == "n" && tw.Reported != "" {
				return true
			}
		}
		return false
	})
	select {
	case err := <-applied:
		t.Fatalf("the upgrade ended (Apply: %v) while held", err)
	default:
	}

	// Meanwhile, a desired value in the spec of virtual's device d00,
	// d01 removed and a second new module: all wait for the upgrade.
	set2 := f.set
	set2.Devices = []*v1beta1.Device{f.set.Devices[0].DeepCopy()}
	set2.Devices[0].Spec.Properties[1].Desired.Value = "42"
	f.install(good3)
	second := make(chan error, 1)
	go func() { second <- m.Apply(ctx, "manifests", set2) }()
	guard("the second change of virtual left to its upgrade", deferred)
	select {
	case err := <-second:
		t.Fatalf("a change of plugin virtual made (Apply: %v) while it upgrades", err)
	default:
	}

	releaseOnce()
	for _, ch := range []chan error{applied, second} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Minute): // a bound, not a speed
			t.Fatal("timed out waiting for the upgrades to end")
		}
	}
	st, _ := m.Plugin("virtual")
	if want := digest.FromBytes(good3).String(); st.Digest != want || st.RejectedDigest != "" || !st.Loaded {
		t.Fatalf("after both upgrades: %+v, want digest %s", st, want)
	}
	if ok, rb := upgrades(t, f.reg, "ok"), upgrades(t, f.reg, "rolled_back"); ok != 2 || rb != 0 {
		t.Errorf("wapper_plugin_upgrades_total: ok %v rolled_back %v, want 2 and 0", ok, rb)
	}
	waitFor(t, "the desired value set in d00's spec meanwhile", func() bool { return setpoint(t, m, devName(0)) == "42" })
	if _, err := m.Device("default", devName(1)); !errors.Is(err, devices.ErrNotFound) {
		t.Fatalf("%s, removed during the upgrade, after it: %v", devName(1), err)
	}
	f.n = 1 // d00 only
	f.readMore("readings on the third module", 3)
	for _, name := range []string{devName(0), "o1"} {
		if ds, err := m.Device("default", name); err != nil || ds.Phase != devices.PhaseRunning {
			t.Fatalf("%s after the upgrades: %+v %v", name, ds, err)
		}
	}
}
