package e2e

// The SNMP plugin through the standalone host (bin/wapper-host) against
// Debian's net-snmp: snmpd as the agent (v2c communities and an SNMPv3
// authPriv SHA/AES user), snmpget and snmpset as independent clients, and
// snmptrap sending a trap to the plugin's trap port. The community and
// the v3 passwords reach the plugin as secrets; a MapperPlugin without
// the network grant, and a v3 device with a wrong password, show why in
// their status.

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wapper.dev/wapper/internal/testenv"
	"wapper.dev/wapper/internal/testproc"
)

// snmpAgent is a running snmpd and what its clients need.
type snmpAgent struct {
	port                            int
	sysName, sysDescr               string
	rwCommunity, authPass, privPass string
	persist                         string // SNMP_PERSISTENT_DIR, for the tools too
}

// freeUDPPort returns a loopback port below the ephemeral range that is
// free for TCP and UDP a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	for range 100 {
		p := freePort(t)
		c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			c.Close()
			return p
		}
	}
	t.Fatal("no free UDP port")
	return 0
}

// startSNMPD runs snmpd in the foreground on 127.0.0.1:port, unprivileged
// on a high port, with a configuration of the test's own: the read-only
// community public, a read-write community, and an SNMPv3 user with
// SHA and AES. sysContact and sysLocation are not set in it, so that
// they stay writable.
func startSNMPD(t *testing.T, dir string) *snmpAgent {
	t.Helper()
	bin := testenv.Bin(t, "snmpd")
	for _, tool := range []string{"snmpget", "snmpset", "snmptrap"} {
		testenv.Bin(t, tool)
	}
	n := time.Now().UnixNano() % 1_000_000
	a := &snmpAgent{
		port: freeUDPPort(t), sysName: fmt.Sprintf("wapper-e2e-%d", n), sysDescr: fmt.Sprintf("wapper e2e agent %d", n),
		rwCommunity: fmt.Sprintf("rw-%d", n), authPass: fmt.Sprintf("auth-pass-%d", n), privPass: fmt.Sprintf("priv-pass-%d", n),
		persist: filepath.Join(dir, "persist"),
	}
	if err := os.MkdirAll(a.persist, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "snmpd.conf")
	body := fmt.Sprintf(`rocommunity public 127.0.0.1
rwcommunity %s 127.0.0.1
sysName %s
sysDescr %s
createUser wapper SHA %s AES %s
rwuser wapper priv
`, a.rwCommunity, a.sysName, a.sysDescr, a.authPass, a.privPass)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := testproc.Start("snmpd", bin, filepath.Join(dir, "snmpd.log"),
		testproc.Options{Env: []string{"SNMP_PERSISTENT_DIR=" + a.persist, "MIBS="}},
		"-f", "-C", "-c", conf, "-Lo", fmt.Sprintf("udp:127.0.0.1:%d", a.port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("snmpd log:\n%s", p.Tail(40))
		}
	})
	saEventually(t, "snmpd answering", 30*time.Second, func() error {
		if ok, err := p.Exited(); ok {
			t.Fatalf("snmpd exited: %v\n%s", err, p.Tail(20))
		}
		_, err := a.tool("snmpget", []string{"-v2c", "-c", "public", "-t", "0.5", "-r", "0"}, "1.3.6.1.2.1.1.5.0")
		return err
	})
	return a
}

// tool runs a net-snmp tool with options opts against the agent, then
// the OIDs and values of args, and returns its output, trimmed.
func (a *snmpAgent) tool(name string, opts []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append(append(append([]string{"-m", "", "-On", "-Oqv"}, opts...), fmt.Sprintf("udp:127.0.0.1:%d", a.port)), args...)
	cmd := exec.CommandContext(ctx, name, full...)
	cmd.Env = append(os.Environ(), "SNMP_PERSISTENT_DIR="+a.persist, "MIBS=")
	out, err := cmd.CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil {
		return s, fmt.Errorf("%s %s: %v: %s", name, strings.Join(full, " "), err, s)
	}
	return s, nil
}

// v3 returns the snmpget/snmpset options of the agent's SNMPv3 user.
func (a *snmpAgent) v3() []string {
	return []string{"-v", "3", "-u", "wapper", "-l", "authPriv", "-a", "SHA", "-A", a.authPass, "-x", "AES", "-X", a.privPass}
}

func snmpManifests(a *snmpAgent, trapPort, trapSrcPort int) string {
	return fmt.Sprintf(`apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: snmp}
spec:
  protocols: [snmp]
  module: {file: snmp.wasm}
  grants:
    # the agent, and the source port its traps come from (snmptrap's
    # clientaddr here; an agent's own traps usually need udp://AGENT:*)
    network: ["udp://127.0.0.1:%[1]d", "udp://127.0.0.1:%[3]d"]
    listen: ["udp://0.0.0.0:%[2]d"]
    secrets: [snmp-rw, snmp-v3, snmp-v3-wrong]
  limits: {instances: 1}
---
apiVersion: mappers.wapper.dev/v1alpha1
kind: MapperPlugin
metadata: {name: snmp-nogrant}
spec:
  protocols: [snmp-nogrant]
  module: {file: snmp.wasm}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: snmp-agent-traps, namespace: default}
spec:
  protocol: snmp
  properties:
    - {name: sysDescr, type: STRING, accessMode: ReadOnly}
    - {name: sysName, type: STRING, accessMode: ReadOnly}
    - {name: sysContact, type: STRING, accessMode: ReadWrite}
    - {name: uptime, type: INT, accessMode: ReadOnly}
    - {name: system, type: STRING, accessMode: ReadOnly}
    - {name: alarm, type: STRING, accessMode: ReadOnly}
    - {name: trapOID, type: STRING, accessMode: ReadOnly}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: snmp-agent, namespace: default}
spec:
  protocol: snmp
  properties:
    - {name: sysName, type: STRING, accessMode: ReadOnly}
    - {name: sysLocation, type: STRING, accessMode: ReadWrite}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata:
  name: snmp-agent-nogrant
  namespace: default
  annotations: {mappers.wapper.dev/plugin: snmp-nogrant}
spec:
  protocol: snmp
  properties:
    - {name: sysName, type: STRING, accessMode: ReadOnly}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: agent-v2c, namespace: default}
spec:
  deviceModelRef: {name: snmp-agent-traps}
  protocol:
    protocolName: snmp
    configData: {address: 127.0.0.1, port: %[1]d, version: 2c, communitySecret: snmp-rw/community, trapListen: ":%[2]d"}
  properties:
    - {name: sysDescr, collectCycle: 500, reportCycle: 500, visitors: {protocolName: snmp, configData: {oid: 1.3.6.1.2.1.1.1.0}}}
    - {name: sysName, collectCycle: 500, reportCycle: 500, visitors: {protocolName: snmp, configData: {oid: 1.3.6.1.2.1.1.5.0}}}
    - {name: sysContact, collectCycle: 500, reportCycle: 500, visitors: {protocolName: snmp, configData: {oid: 1.3.6.1.2.1.1.4.0}}}
    - {name: uptime, collectCycle: 500, reportCycle: 500, visitors: {protocolName: snmp, configData: {oid: 1.3.6.1.2.1.1.3.0}}}
    - {name: system, collectCycle: 2000, reportCycle: 2000, visitors: {protocolName: snmp, configData: {oid: 1.3.6.1.2.1.1, walk: true}}}
    - {name: alarm, collectCycle: 500, reportCycle: 500, visitors: {protocolName: snmp, configData: {oid: 1.3.6.1.4.1.99999.1.0, trapOnly: true}}}
    - {name: trapOID, collectCycle: 500, reportCycle: 500, visitors: {protocolName: snmp, configData: {oid: 1.3.6.1.6.3.1.1.4.1.0, trapOnly: true}}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: agent-v3, namespace: default}
spec:
  deviceModelRef: {name: snmp-agent}
  protocol:
    protocolName: snmp
    configData:
      address: 127.0.0.1
      port: %[1]d
      version: 3
      user: wapper
      securityLevel: authPriv
      authProtocol: SHA
      authPasswordSecret: snmp-v3/auth
      privProtocol: AES
      privPasswordSecret: snmp-v3/priv
  properties:
    - {name: sysName, collectCycle: 500, reportCycle: 500, visitors: {protocolName: snmp, configData: {oid: 1.3.6.1.2.1.1.5.0}}}
    - {name: sysLocation, collectCycle: 500, reportCycle: 500, visitors: {protocolName: snmp, configData: {oid: 1.3.6.1.2.1.1.6.0}}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: agent-v3-wrong, namespace: default}
spec:
  deviceModelRef: {name: snmp-agent}
  protocol:
    protocolName: snmp
    configData: {address: 127.0.0.1, port: %[1]d, version: 3, user: wapper, authPasswordSecret: snmp-v3-wrong/auth, privPasswordSecret: snmp-v3/priv}
  properties:
    - {name: sysName, collectCycle: 1000, reportCycle: 1000, visitors: {protocolName: snmp, configData: {oid: 1.3.6.1.2.1.1.5.0}}}
    - {name: sysLocation, collectCycle: 1000, reportCycle: 1000, visitors: {protocolName: snmp, configData: {oid: 1.3.6.1.2.1.1.6.0}}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: agent-denied, namespace: default}
spec:
  deviceModelRef: {name: snmp-agent-nogrant}
  protocol:
    protocolName: snmp
    configData: {address: 127.0.0.1, port: %[1]d, community: public}
  properties:
    - {name: sysName, collectCycle: 1000, reportCycle: 1000, visitors: {protocolName: snmp, configData: {oid: 1.3.6.1.2.1.1.5.0}}}
`, a.port, trapPort, trapSrcPort)
}

func TestSNMPThroughHost(t *testing.T) {
	testenv.Plugin(t, "snmp")
	a := startSNMPD(t, t.TempDir())
	trapPort, trapSrcPort := freeUDPPort(t), freeUDPPort(t)

	secrets := t.TempDir()
	for ref, v := range map[string]string{
		"snmp-rw/community":  a.rwCommunity + "\n",
		"snmp-v3/auth":       a.authPass,
		"snmp-v3/priv":       a.privPass,
		"snmp-v3-wrong/auth": "not-" + a.authPass,
	} {
		p := filepath.Join(secrets, ref)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	saWrite(t, filepath.Join(dir, "snmp.yaml"), snmpManifests(a, trapPort, trapSrcPort))
	h := saStart(t, t.TempDir(), "--manifests", dir, "--secrets-dir", secrets)

	// A read matches what snmpget answers.
	public := []string{"-v2c", "-c", "public"}
	descr, err := a.tool("snmpget", public, "1.3.6.1.2.1.1.1.0")
	if err != nil {
		t.Fatal(err)
	}
	descr = strings.Trim(descr, `"`)
	if descr != a.sysDescr {
		t.Fatalf("snmpget sysDescr %q, want %q", descr, a.sysDescr)
	}
	saEventually(t, "agent-v2c twins from snmpd", 60*time.Second, func() error {
		d, err := h.device("default/agent-v2c")
		if err != nil {
			return err
		}
		if tw := d.twin("sysDescr"); tw.Reported != descr {
			return fmt.Errorf("sysDescr twin %+v, snmpget says %q (device %s %s %s)", tw, descr, d.Phase, d.State, d.Reason)
		}
		if tw := d.twin("sysName"); tw.Reported != a.sysName {
			return fmt.Errorf("sysName twin %+v", tw)
		}
		if tw := d.twin("uptime"); tw.Reported == "" || tw.Reported == "0" {
			return fmt.Errorf("uptime twin %+v", tw)
		}
		if tw := d.twin("system"); !strings.Contains(tw.Reported, fmt.Sprintf(`"1.3.6.1.2.1.1.5.0":%q`, a.sysName)) {
			return fmt.Errorf("system walk twin %+v", tw)
		}
		return nil
	})

	// A desired value through the host's REST API reaches the agent;
	// snmpget, an independent client, reads it back.
	contact := fmt.Sprintf("ops-%d@example.org", time.Now().UnixNano()%1000)
	var tw struct {
		Twin saTwin `json:"twin"`
	}
	code, err := h.do("PUT", "/api/v1/device/default/agent-v2c/sysContact?wait=20s", fmt.Sprintf(`{"value": %q}`, contact), &tw)
	if err != nil || code != 200 || tw.Twin.Reported != contact {
		t.Fatalf("PUT sysContact: %d %v %+v", code, err, tw.Twin)
	}
	if got, err := a.tool("snmpget", public, "1.3.6.1.2.1.1.4.0"); err != nil || strings.Trim(got, `"`) != contact {
		t.Errorf("snmpget sysContact = %q (%v) after the host wrote %q", got, err, contact)
	}

	// snmpset writes; the host's twin follows at the collect cycle.
	if _, err := a.tool("snmpset", []string{"-v2c", "-c", a.rwCommunity}, "1.3.6.1.2.1.1.4.0", "s", "noc@example.org"); err != nil {
		t.Fatal(err)
	}
	saEventually(t, "sysContact twin after snmpset", 30*time.Second, func() error {
		d, err := h.device("default/agent-v2c")
		if err == nil && d.twin("sysContact").Reported != "noc@example.org" {
			err = fmt.Errorf("sysContact twin %+v", d.twin("sysContact"))
		}
		return err
	})

	// SNMPv3 authPriv (SHA, AES): a read, and a write that snmpget sees.
	v3name, err := a.tool("snmpget", a.v3(), "1.3.6.1.2.1.1.5.0")
	if err != nil {
		t.Fatal(err)
	}
	saEventually(t, "agent-v3 sysName", 60*time.Second, func() error {
		d, err := h.device("default/agent-v3")
		if err == nil && d.twin("sysName").Reported != strings.Trim(v3name, `"`) {
			err = fmt.Errorf("sysName twin %+v, snmpget -v3 says %s (device %s %s %q)", d.twin("sysName"), v3name, d.Phase, d.State, d.Reason)
		}
		return err
	})
	location := fmt.Sprintf("rack-%d", time.Now().UnixNano()%1000)
	code, err = h.do("PUT", "/api/v1/device/default/agent-v3/sysLocation?wait=20s", fmt.Sprintf(`{"value": %q}`, location), &tw)
	if err != nil || code != 200 || tw.Twin.Reported != location {
		t.Fatalf("PUT sysLocation over v3: %d %v %+v", code, err, tw.Twin)
	}
	if got, err := a.tool("snmpget", a.v3(), "1.3.6.1.2.1.1.6.0"); err != nil || strings.Trim(got, `"`) != location {
		t.Errorf("snmpget -v3 sysLocation = %q (%v) after the host wrote %q", got, err, location)
	}

	// A trap from snmptrap (a fixed source port, which grants.network
	// names) to the plugin's trap port becomes reported values.
	saEventually(t, "the trap's varbinds in agent-v2c's twins", 60*time.Second, func() error {
		if _, err := a.trap(trapPort, trapSrcPort); err != nil {
			return err
		}
		time.Sleep(300 * time.Millisecond)
		d, err := h.device("default/agent-v2c")
		if err != nil {
			return err
		}
		if tw := d.twin("alarm"); tw.Reported != "overheat" {
			return fmt.Errorf("alarm twin %+v (device %s %s %q)", tw, d.Phase, d.State, d.Reason)
		}
		if tw := d.twin("trapOID"); tw.Reported != "1.3.6.1.4.1.99999.0.1" {
			return fmt.Errorf("trapOID twin %+v", tw)
		}
		return nil
	})

	// The MapperPlugin without the network grant: the denial, with the
	// address, in the device's status.
	saEventually(t, "the denial in agent-denied's status", 60*time.Second, func() error {
		d, status, err := snmpStatus(h, "default/agent-denied")
		if err != nil {
			return err
		}
		if d.State != "unhealthy" || strings.Count(status, fmt.Sprintf("denied: udp://127.0.0.1:%d is not in grants.network", a.port)) < 2 {
			return fmt.Errorf("want the denial in the state reason and the twin: %s", status)
		}
		return nil
	})
	if !strings.Contains(h.Logs(), "refused by grants") {
		t.Errorf("the host log does not show the refusal")
	}

	// A wrong SNMPv3 password: a clear error in the device's status.
	saEventually(t, "the authentication failure in agent-v3-wrong's status", 60*time.Second, func() error {
		d, status, err := snmpStatus(h, "default/agent-v3-wrong")
		if err != nil {
			return err
		}
		const want = `SNMPv3 user "wapper": authentication failed (wrong digest): the password in secret snmp-v3-wrong/auth or authProtocol SHA does not match the agent's`
		if d.State != "unhealthy" || strings.Count(status, want) < 2 {
			return fmt.Errorf("want the failure in the state reason and the twin: %s", status)
		}
		return nil
	})
	// No secret reached the host's log.
	logs := h.Logs()
	for _, s := range []string{a.rwCommunity, a.authPass, a.privPass} {
		if strings.Contains(logs, s) {
			t.Errorf("the host log holds the secret %q", s)
		}
	}
}

// snmpStatus returns a device's status as REST shows it, with the
// reason of its state, and its status in one line: the reasons and the
// errors of its twins.
func snmpStatus(h *saHost, key string) (saDevice, string, error) {
	var resp struct {
		Device struct {
			saDevice
			StateReason string `json:"stateReason"`
		} `json:"device"`
	}
	if _, err := h.get("/api/v1/device/"+key, &resp); err != nil {
		return saDevice{}, "", err
	}
	d := resp.Device
	all := []string{d.Reason, d.StateReason}
	for _, tw := range d.Twins {
		all = append(all, tw.Error)
	}
	return d.saDevice, fmt.Sprintf("state %s: %s", d.State, strings.Join(all, " | ")), nil
}

// trap sends an SNMPv2c trap with snmptrap from 127.0.0.1:srcPort to the
// plugin's trap port: snmpTrapOID 1.3.6.1.4.1.99999.0.1 and an alarm
// string.
func (a *snmpAgent) trap(port, srcPort int) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "snmptrap", "-m", "", "-v", "2c", "-c", "public",
		fmt.Sprintf("--clientaddr=127.0.0.1:%d", srcPort), "--clientaddrUsesPort=yes",
		fmt.Sprintf("udp:127.0.0.1:%d", port), "", "1.3.6.1.4.1.99999.0.1", "1.3.6.1.4.1.99999.1.0", "s", "overheat")
	cmd.Env = append(os.Environ(), "SNMP_PERSISTENT_DIR="+a.persist, "MIBS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("snmptrap: %v: %s", err, out)
	}
	return string(out), nil
}
