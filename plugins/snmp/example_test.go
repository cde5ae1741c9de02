package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"wapper.dev/wapper/host/manifest"
	"wapper.dev/wapper/sdk-go/sdktest"
)

// The manifests of examples/snmp (and docs/snmp.md) load without
// problems, the plugin accepts their devices, and the MapperPlugin grants
// what they need.
func TestExampleManifests(t *testing.T) {
	set, err := manifest.Load("../../examples/snmp")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range set.Problems {
		t.Errorf("examples/snmp: %v", p)
	}
	if len(set.Devices) == 0 || len(set.Plugins) != 1 {
		t.Fatalf("examples/snmp has %d devices and %d MapperPlugins", len(set.Devices), len(set.Plugins))
	}
	grants := set.Plugins[0].Spec.Grants
	p, err := sdktest.New(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, dv := range set.Devices {
		var model *struct{}
		desc := sdktest.Description{Namespace: dv.Namespace, Name: dv.Name, Protocol: "snmp"}
		for _, m := range set.Models {
			if m.Name != dv.Spec.DeviceModelRef.Name {
				continue
			}
			model = &struct{}{}
			for _, dp := range dv.Spec.Properties {
				for _, mp := range m.Spec.Properties {
					if mp.Name != dp.Name {
						continue
					}
					var visitor any
					if dp.Visitors.ConfigData != nil {
						visitor = dp.Visitors.ConfigData.Data
					}
					desc.Properties = append(desc.Properties, sdktest.Property{
						Name: dp.Name, Type: string(mp.Type), AccessMode: string(mp.AccessMode), Visitor: visitor,
					})
				}
			}
		}
		if model == nil {
			t.Fatalf("device %s: no model", dv.Name)
		}
		b, err := json.Marshal(dv.Spec.Protocol.ConfigData.Data)
		if err != nil {
			t.Fatal(err)
		}
		desc.ProtocolConfig = b
		if _, err := p.Add(desc); err != nil {
			t.Fatalf("device %s: %v", dv.Name, err)
		}
		cfg, err := parseProtocol(device(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		if want := "udp://" + cfg.target(); !slices.Contains(grants.Network, want) {
			t.Errorf("device %s: grants.network %v does not hold %s", dv.Name, grants.Network, want)
		}
		if cfg.trapListen != "" && !slices.Contains(grants.Listen, "udp://0.0.0.0"+cfg.trapListen) {
			t.Errorf("device %s: grants.listen %v does not cover trapListen %s", dv.Name, grants.Listen, cfg.trapListen)
		}
		for _, s := range []string{cfg.authSecret, cfg.privSecret, cfg.communitySecret} {
			if name, _, _ := strings.Cut(s, "/"); s != "" && !slices.Contains(grants.Secrets, name) {
				t.Errorf("device %s: grants.secrets %v does not name %s", dv.Name, grants.Secrets, name)
			}
		}
	}
}
