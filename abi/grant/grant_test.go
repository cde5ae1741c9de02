package grant_test

import (
	"strings"
	"testing"

	"wapper.dev/wapper/abi/grant"
)

func TestNetwork(t *testing.T) {
	cases := []struct {
		grant     string
		canonical string
		allow     []string // scheme|host:port
		deny      []string
	}{
		{"tcp://127.0.0.1:5502", "tcp://127.0.0.1:5502", []string{"tcp|127.0.0.1:5502"}, []string{"udp|127.0.0.1:5502", "tcp|127.0.0.1:5503", "tcp|127.0.0.2:5502", "tcp|localhost:5502"}},
		{"udp://10.0.0.0/8:*", "udp://10.0.0.0/8:*", []string{"udp|10.1.2.3:1", "udp|10.255.0.1:65535"}, []string{"udp|11.0.0.1:53", "tcp|10.0.0.1:53"}},
		{"tcp://*.Plant.local:502-503", "tcp://*.plant.local:502-503", []string{"tcp|a.plant.local:502", "tcp|b.c.PLANT.local:503"}, []string{"tcp|plant.local:502", "tcp|a.plant.local:504", "tcp|a.plant.localx:502"}},
		{"tcp://[::1]:80", "tcp://[::1]:80", []string{"tcp|[::1]:80"}, []string{"tcp|127.0.0.1:80"}},
		{"tcp://[fd00::/8]:1-1024", "tcp://[fd00::/8]:1-1024", []string{"tcp|[fd12::1]:22"}, []string{"tcp|[fe80::1]:22", "tcp|[fd12::1]:2000"}},
		{"tcp://*:502", "tcp://*:502", []string{"tcp|anything:502", "tcp|1.2.3.4:502"}, []string{"tcp|1.2.3.4:503"}},
		{"tcp://plc-1:502", "tcp://plc-1:502", []string{"tcp|PLC-1:502"}, []string{"tcp|plc-2:502"}},
	}
	for _, c := range cases {
		g, err := grant.ParseNetwork(c.grant)
		if err != nil {
			t.Errorf("%s: %v", c.grant, err)
			continue
		}
		if g.String() != c.canonical {
			t.Errorf("%s: canonical %q, want %q", c.grant, g.String(), c.canonical)
		}
		for _, a := range c.allow {
			scheme, addr, _ := strings.Cut(a, "|")
			if !g.AllowsAddr(scheme, addr) {
				t.Errorf("%s should allow %s", c.grant, a)
			}
		}
		for _, a := range c.deny {
			scheme, addr, _ := strings.Cut(a, "|")
			if g.AllowsAddr(scheme, addr) {
				t.Errorf("%s should deny %s", c.grant, a)
			}
		}
	}
}

func TestGlobGrants(t *testing.T) {
	if !grant.MatchGlob("/dev/ttyUSB*", "/dev/ttyUSB0") || grant.MatchGlob("/dev/ttyUSB*", "/dev/ttyACM0") {
		t.Error("serial glob")
	}
	if !grant.MatchGlob("gpiochip0:*", "gpiochip0:17") || grant.MatchGlob("GPIO[", "GPIO[") {
		t.Error("gpio glob")
	}
}

func TestTLSAndSecretGrants(t *testing.T) {
	g, err := grant.ParseNetwork("tls://broker.plant:8883")
	if err != nil || !g.AllowsAddr("tls", "broker.plant:8883") || g.AllowsAddr("tcp", "broker.plant:8883") {
		t.Errorf("tls grant: %v %+v", err, g)
	}
	if _, err := grant.ParseNetwork("ssl://broker.plant:8883"); err == nil || !strings.Contains(err.Error(), "tcp, udp or tls") {
		t.Errorf("ssl scheme: %v", err)
	}
	for _, ok := range []grant.TLS{
		{Endpoint: "tls://broker.plant:8883"},
		{Endpoint: "tls://*:*", CASecret: "plant-ca", ClientSecret: "plant.client-1", ServerName: "Broker.Plant"},
		{Endpoint: "tls://10.0.0.0/8:443", ServerName: "10.0.0.1"},
	} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
	for _, bad := range []grant.TLS{
		{Endpoint: "tcp://broker.plant:8883"},
		{Endpoint: "tls://broker.plant"},
		{Endpoint: "tls://b:1", CASecret: "Plant_CA"},
		{Endpoint: "tls://b:1", ClientSecret: "../x"},
		{Endpoint: "tls://b:1", ServerName: "not a name"},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v: accepted", bad)
		}
	}
	for _, ok := range []string{"plc-login", "cam-*", "a.b", "x[0-9]"} {
		if err := grant.ValidateSecret(ok); err != nil {
			t.Errorf("secret grant %q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Plc", "a/b", "x[", "a_b"} {
		if err := grant.ValidateSecret(bad); err == nil {
			t.Errorf("secret grant %q accepted", bad)
		}
	}
	for name, want := range map[string]bool{"plc-login": true, "a.b": true, "-a": false, "a-": false, "a..b": false, "A": false, "": false} {
		if grant.ValidSecretName(name) != want {
			t.Errorf("ValidSecretName(%q) != %v", name, want)
		}
	}
	for key, want := range map[string]bool{"tls.crt": true, "Pass_word-1": true, ".": false, "..": false, "a/b": false, "": false} {
		if grant.ValidSecretKey(key) != want {
			t.Errorf("ValidSecretKey(%q) != %v", key, want)
		}
	}
}

func TestListenGrants(t *testing.T) {
	for _, ok := range []string{"udp://0.0.0.0:162", "udp://239.255.255.250:3702", "udp://*:*", "udp://[::]:5353", "udp://10.0.0.0/8:1000-2000"} {
		if _, err := grant.ParseListen(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"tcp://0.0.0.0:162", "udp://plc.local:162", "udp://0.0.0.0", "0.0.0.0:162"} {
		if _, err := grant.ParseListen(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
