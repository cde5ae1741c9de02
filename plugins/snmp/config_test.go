package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"wapper.dev/wapper/abi"
	wapper "wapper.dev/wapper/sdk-go"
)

// device makes a device with protocol configData cfg (JSON).
func device(cfg string) *wapper.Device {
	d := &wapper.Device{}
	d.Namespace, d.Name = "default", "agent"
	d.Device.ProtocolConfig = json.RawMessage(cfg)
	return d
}

// propOf makes a property "p" of a device built by hand.
func propOf(typ, access, visitor string) *wapper.Property {
	d := device(`{}`)
	d.Device.Properties = []abi.Property{{Name: "p", Type: typ, AccessMode: access, Visitor: json.RawMessage(visitor)}}
	return d.Properties()[0]
}

func protocolOf(t *testing.T, cfg string) (*protocolConfig, error) {
	t.Helper()
	return parseProtocol(device(cfg))
}

func TestProtocolConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  string
		want func(*protocolConfig) bool
	}{
		{`{"address": "10.0.0.5"}`, func(c *protocolConfig) bool {
			return c.target() == "10.0.0.5:161" && c.version == gosnmp.Version2c && c.community == "public" &&
				c.timeout == time.Second && c.retries == 1 && c.maxOids == 60 && c.maxRepetitions == 25
		}},
		// KubeEdge passes numbers as strings, and YAML writes version 3 as a number.
		{`{"address": "agent.plant.local", "port": "1161", "version": "1", "community": "public", "timeout": "2s", "retries": "3"}`, func(c *protocolConfig) bool {
			return c.target() == "agent.plant.local:1161" && c.version == gosnmp.Version1 && c.timeout == 2*time.Second && c.retries == 3
		}},
		{`{"address": "::1", "timeout": 250}`, func(c *protocolConfig) bool { return c.target() == "[::1]:161" && c.timeout == 250*time.Millisecond }},
		{`{"address": "10.0.0.5", "communitySecret": "snmp-rw/community"}`, func(c *protocolConfig) bool {
			return c.community == "" && c.communitySecret == "snmp-rw/community"
		}},
		{`{"address": "10.0.0.5", "version": 3, "user": "ops", "authPasswordSecret": "snmp-v3/auth", "privPasswordSecret": "snmp-v3/priv"}`, func(c *protocolConfig) bool {
			return c.version == gosnmp.Version3 && c.level == gosnmp.AuthPriv && c.authProto == gosnmp.SHA && c.privProto == gosnmp.AES &&
				c.authSecret == "snmp-v3/auth" && c.privSecret == "snmp-v3/priv"
		}},
		{`{"address": "10.0.0.5", "version": "v3", "user": "ops", "securityLevel": "authNoPriv", "authProtocol": "sha-256", "authPasswordSecret": "snmp-v3/auth"}`, func(c *protocolConfig) bool {
			return c.level == gosnmp.AuthNoPriv && c.authProto == gosnmp.SHA256 && c.privProto == gosnmp.NoPriv
		}},
		{`{"address": "10.0.0.5", "version": "3", "user": "monitor"}`, func(c *protocolConfig) bool {
			return c.level == gosnmp.NoAuthNoPriv && c.authProto == gosnmp.NoAuth
		}},
		{`{"address": "10.0.0.5", "version": "3", "user": "ops", "authProtocol": "MD5", "authPasswordSecret": "a/b", "privProtocol": "AES256", "privPasswordSecret": "a/c"}`, func(c *protocolConfig) bool {
			return c.authProto == gosnmp.MD5 && c.privProto == gosnmp.AES256
		}},
		{`{"address": "10.0.0.5", "trapListen": ":1162", "trapCommunitySecret": "traps/community"}`, func(c *protocolConfig) bool {
			return c.trapListen == ":1162" && c.trapCommunitySecret == "traps/community"
		}},
	} {
		c, err := protocolOf(t, tc.cfg)
		if err != nil {
			t.Errorf("%s: %v", tc.cfg, err)
			continue
		}
		if !tc.want(c) {
			t.Errorf("%s: got %+v", tc.cfg, *c)
		}
	}
}

func TestProtocolConfigErrors(t *testing.T) {
	for _, tc := range []struct{ cfg, want string }{
		{`{}`, "set address"},
		{`{"address": "10.0.0.5:161"}`, `set address "10.0.0.5" and port 161`},
		{`{"address": "10.0.0.5", "port": 70000}`, "port 70000 is outside 1-65535"},
		{`{"address": "10.0.0.5", "port": "x"}`, "port"},
		{`{"address": "10.0.0.5", "version": "2"}`, ""}, // 2 is v2c
		{`{"address": "10.0.0.5", "version": "4"}`, `version "4": want 1, 2c or 3`},
		{`{"address": "10.0.0.5", "timeout": "soon"}`, "timeout"},
		{`{"address": "10.0.0.5", "timeout": 0}`, "timeout must be positive"},
		{`{"address": "10.0.0.5", "retries": 11}`, "retries 11 is outside 0-10"},
		// Passwords never go in plain configData.
		{`{"address": "10.0.0.5", "community": "private"}`, "a community string is a password"},
		{`{"address": "10.0.0.5", "community": "public", "communitySecret": "a/b"}`, "not both"},
		{`{"address": "10.0.0.5", "communitySecret": "plain-text"}`, "is not a secret reference: want NAME/KEY"},
		{`{"address": "10.0.0.5", "communitySecret": "Bad_Name/key"}`, "must be a Kubernetes object name"},
		{`{"address": "10.0.0.5", "version": 3, "user": "ops", "authPassword": "hunter22"}`, "authPassword would put a password in plain configData"},
		{`{"address": "10.0.0.5", "version": 3, "user": "ops", "privPassphrase": "hunter22"}`, "privPassphrase would put a password in plain configData: store it in a secret"},
		{`{"address": "10.0.0.5", "trapCommunity": "traps"}`, "trapCommunitySecret"},
		{`{"address": "10.0.0.5", "password": "x"}`, "password would put a password"},
		// SNMPv3.
		{`{"address": "10.0.0.5", "version": 3}`, "SNMPv3 needs user"},
		{`{"address": "10.0.0.5", "version": 3, "user": "ops", "communitySecret": "a/b"}`, "community and communitySecret are for SNMPv1 and v2c"},
		{`{"address": "10.0.0.5", "version": 3, "user": "ops", "securityLevel": "authPriv", "authPasswordSecret": "a/b"}`, "authPriv needs privPasswordSecret"},
		{`{"address": "10.0.0.5", "version": 3, "user": "ops", "securityLevel": "authNoPriv"}`, "authNoPriv needs authPasswordSecret"},
		{`{"address": "10.0.0.5", "version": 3, "user": "ops", "securityLevel": "noAuthNoPriv", "authPasswordSecret": "a/b"}`, "need securityLevel authNoPriv or authPriv"},
		{`{"address": "10.0.0.5", "version": 3, "user": "ops", "securityLevel": "secret"}`, `securityLevel "secret"`},
		{`{"address": "10.0.0.5", "version": 3, "user": "ops", "authProtocol": "SHA3", "authPasswordSecret": "a/b"}`, `authProtocol "SHA3"`},
		{`{"address": "10.0.0.5", "version": 3, "user": "ops", "privProtocol": "3DES", "authPasswordSecret": "a/b", "privPasswordSecret": "a/c"}`, `privProtocol "3DES"`},
		{`{"address": "10.0.0.5", "user": "ops"}`, "user is for SNMPv3"},
		// Traps.
		{`{"address": "10.0.0.5", "trapListen": "1162"}`, `trapListen "1162": want :PORT or IP:PORT`},
		{`{"address": "10.0.0.5", "trapListen": "host:1162"}`, "trapListen"},
		{`{"address": "10.0.0.5", "trapCommunitySecret": "a/b"}`, "trapCommunitySecret needs trapListen"},
		{`{"address": 5}`, "protocol configData"},
	} {
		_, err := protocolOf(t, tc.cfg)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.cfg, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to say %q", tc.cfg, err, tc.want)
			continue
		}
		if wapper.CodeOf(err) != wapper.ErrInvalid {
			t.Errorf("%s: code %s, want invalid argument", tc.cfg, wapper.CodeOf(err))
		}
		if !strings.Contains(err.Error(), "default/agent") {
			t.Errorf("%s: error %q does not name the device", tc.cfg, err)
		}
	}
}

// The DeviceModel's protocolConfigData gives defaults that the Device's
// configData overrides.
func TestProtocolConfigFromModel(t *testing.T) {
	d := device(`{"address": "10.0.0.7"}`)
	d.ModelConfig = json.RawMessage(`{"version": "3", "user": "ops", "authPasswordSecret": "snmp-v3/auth", "port": 1161}`)
	c, err := parseProtocol(d)
	if err != nil {
		t.Fatal(err)
	}
	if c.target() != "10.0.0.7:1161" || c.version != gosnmp.Version3 || c.level != gosnmp.AuthNoPriv {
		t.Errorf("got %+v", *c)
	}
}

func TestVisitor(t *testing.T) {
	for _, tc := range []struct {
		typ, access, visitor string
		want                 func(*visitor) bool
	}{
		{"STRING", "ReadOnly", `{"oid": "1.3.6.1.2.1.1.5.0"}`, func(v *visitor) bool { return v.oid == "1.3.6.1.2.1.1.5.0" && !v.walk && v.scale == 1 }},
		{"STRING", "ReadOnly", `{"oid": ".1.3.6.1.2.1.1"}`, func(v *visitor) bool { return v.oid == "1.3.6.1.2.1.1" }},
		{"STRING", "ReadOnly", `{"oid": "1.3.6.1.2.1.2.2.1.2", "walk": "true", "maxEntries": 50}`, func(v *visitor) bool { return v.walk && v.max == 50 }},
		{"STRING", "ReadOnly", `{"oid": "1.3.6.1.6.3.1.1.4.1.0", "trapOnly": true}`, func(v *visitor) bool { return v.trapOnly }},
		{"DOUBLE", "ReadWrite", `{"oid": "1.3.6.1.4.1.99999.2.0", "scale": 0.1}`, func(v *visitor) bool { return v.scale == 0.1 }},
		{"INT", "ReadWrite", `{"oid": "1.3.6.1.4.1.99999.2.0", "snmpType": "Gauge32"}`, func(v *visitor) bool { return v.setType == gosnmp.Gauge32 }},
		{"FLOAT", "ReadWrite", `{"oid": "1.3.6.1.4.1.99999.2.0", "snmpType": "opaque-float"}`, func(v *visitor) bool { return v.setType == gosnmp.OpaqueFloat }},
		{"STRING", "ReadOnly", `{"oid": "1.3.6.1.2.1.2.2.1.6.1", "format": "hex"}`, func(v *visitor) bool { return v.hex }},
		{"BOOLEAN", "ReadWrite", `{"oid": "1.3.6.1.4.1.99999.3.0"}`, func(v *visitor) bool { return v.setType == 0 }},
	} {
		p := propOf(tc.typ, tc.access, tc.visitor)
		v, err := parseVisitor(p)
		if err != nil {
			t.Errorf("%s: %v", tc.visitor, err)
			continue
		}
		if !tc.want(v) {
			t.Errorf("%s: got %+v", tc.visitor, *v)
		}
	}
}

func TestVisitorErrors(t *testing.T) {
	for _, tc := range []struct{ typ, access, visitor, want string }{
		{"STRING", "ReadOnly", `{}`, "set oid"},
		{"STRING", "ReadOnly", `{"oid": "sysName.0"}`, "is not a numeric OID"},
		{"STRING", "ReadOnly", `{"oid": "1"}`, "is not a numeric OID"},
		{"STRING", "ReadOnly", `{"oid": "1.3.6..1"}`, "is not a numeric OID"},
		{"STRING", "ReadOnly", `{"oid": "4.3.6"}`, "is not a numeric OID"},
		{"STRING", "ReadOnly", `{"oid": "1.3.06"}`, "is not a numeric OID"},
		{"INT", "ReadOnly", `{"oid": "1.3.6.1.2.1.2.2", "walk": true}`, "declare the property as STRING"},
		{"STRING", "ReadWrite", `{"oid": "1.3.6.1.2.1.2.2", "walk": true}`, "a walk cannot be written"},
		{"STRING", "ReadOnly", `{"oid": "1.3.6.1.2.1.2.2", "walk": true, "trapOnly": true}`, "exclude each other"},
		{"STRING", "ReadWrite", `{"oid": "1.3.6.1.2.1.2.2", "trapOnly": true}`, "cannot be written"},
		{"STRING", "ReadOnly", `{"oid": "1.3.6.1.2.1.2.2", "walk": "yes"}`, "not true or false"},
		{"DOUBLE", "ReadWrite", `{"oid": "1.3.6.1.4.1.99999.2.0"}`, "needs snmpType"},
		{"INT", "ReadWrite", `{"oid": "1.3.6.1.4.1.99999.2.0", "snmpType": "Float"}`, `snmpType "Float"`},
		{"INT", "ReadOnly", `{"oid": "1.3.6.1.4.1.99999.2.0", "scale": 0}`, "scale must not be 0"},
		{"STRING", "ReadOnly", `{"oid": "1.3.6.1.4.1.99999.2.0", "format": "base64"}`, `format "base64"`},
		{"STRING", "ReadOnly", `{"oid": "1.3.6.1.2.1.2.2", "walk": true, "maxEntries": 0}`, "maxEntries 0"},
	} {
		_, err := parseVisitor(propOf(tc.typ, tc.access, tc.visitor))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to say %q", tc.visitor, err, tc.want)
			continue
		}
		if wapper.CodeOf(err) != wapper.ErrInvalid || !strings.Contains(err.Error(), `property "p"`) {
			t.Errorf("%s: %v (code %s): want invalid argument naming the property", tc.visitor, err, wapper.CodeOf(err))
		}
	}
}
