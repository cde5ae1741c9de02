package main

import (
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	wapper "wapper.dev/wapper/sdk-go"
	"wapper.dev/wapper/sdk-go/sdktest"
)

// agent is a small SNMPv2c agent on a local port, made of gosnmp's
// codec: get, get-next, get-bulk and set of the objects it holds. It
// does not answer a request with another community, as real agents do
// not.
type agent struct {
	community string
	mu        sync.Mutex
	objs      map[string]gosnmp.SnmpPDU // by OID without the leading dot
	writable  map[string]bool
	requests  int
}

func startAgent(t *testing.T, community string, objs []gosnmp.SnmpPDU, writable ...string) (*agent, int) {
	t.Helper()
	a := &agent{community: community, objs: map[string]gosnmp.SnmpPDU{}, writable: map[string]bool{}}
	for _, o := range objs {
		a.objs[objectName(o.Name)] = o
	}
	for _, w := range writable {
		a.writable[w] = true
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := a.answer(buf[:n]); resp != nil {
				pc.WriteTo(resp, from)
			}
		}
	}()
	return a, pc.LocalAddr().(*net.UDPAddr).Port
}

// oidLess orders OIDs as SNMP does: arc by arc, numerically.
func oidLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) && i < len(pb); i++ {
		x, _ := strconv.ParseUint(pa[i], 10, 32)
		y, _ := strconv.ParseUint(pb[i], 10, 32)
		if x != y {
			return x < y
		}
	}
	return len(pa) < len(pb)
}

func (a *agent) answer(msg []byte) []byte {
	req, err := (&gosnmp.GoSNMP{Version: gosnmp.Version2c}).SnmpDecodePacket(msg)
	if err != nil || req.Community != a.community {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.requests++
	resp := &gosnmp.SnmpPacket{Version: gosnmp.Version2c, Community: a.community, PDUType: gosnmp.GetResponse, RequestID: req.RequestID}
	names := make([]string, 0, len(a.objs))
	for n := range a.objs {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return oidLess(names[i], names[j]) })
	next := func(after string) gosnmp.SnmpPDU {
		for _, n := range names {
			if oidLess(after, n) {
				return a.objs[n]
			}
		}
		return gosnmp.SnmpPDU{Name: "." + after, Type: gosnmp.EndOfMibView}
	}
	switch req.PDUType {
	case gosnmp.GetRequest:
		for _, v := range req.Variables {
			o, ok := a.objs[objectName(v.Name)]
			if !ok {
				o = gosnmp.SnmpPDU{Name: v.Name, Type: gosnmp.NoSuchObject}
			}
			resp.Variables = append(resp.Variables, o)
		}
	case gosnmp.GetNextRequest:
		for _, v := range req.Variables {
			resp.Variables = append(resp.Variables, next(objectName(v.Name)))
		}
	case gosnmp.GetBulkRequest: // non-repeaters 0
		after := objectName(req.Variables[0].Name)
		for i := 0; i < int(req.MaxRepetitions); i++ {
			o := next(after)
			resp.Variables = append(resp.Variables, o)
			if o.Type == gosnmp.EndOfMibView {
				break
			}
			after = objectName(o.Name)
		}
	case gosnmp.SetRequest:
		resp.Variables = req.Variables
		for i, v := range req.Variables {
			o, ok := a.objs[objectName(v.Name)]
			if !ok || !a.writable[objectName(v.Name)] {
				resp.Error, resp.ErrorIndex = gosnmp.NotWritable, uint8(i+1)
				break
			}
			if o.Type != v.Type {
				resp.Error, resp.ErrorIndex = gosnmp.WrongType, uint8(i+1)
				break
			}
		}
		if resp.Error == gosnmp.NoError {
			for _, v := range req.Variables {
				a.objs[objectName(v.Name)] = v
			}
		}
	default:
		return nil
	}
	b, err := resp.MarshalMsg()
	if err != nil {
		panic(err)
	}
	return b
}

func (a *agent) value(oid string) any {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.objs[oid].Value
}

// secrets writes NAME/KEY files as the host's --secrets-dir holds them,
// for the SDK's native secret_get.
func secrets(t *testing.T, kv map[string]string) {
	dir := t.TempDir()
	for ref, v := range kv {
		p := filepath.Join(dir, ref)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("WAPPER_SECRETS_DIR", dir)
}

func mustValue(t *testing.T, v wapper.Value, err error, want wapper.Value) {
	t.Helper()
	if err != nil {
		t.Fatalf("got error %v, want %#v", err, want)
	}
	if !v.Equal(want) {
		t.Fatalf("got %#v, want %#v", v, want)
	}
}

func wantErr(t *testing.T, err error, code wapper.Code, text string) {
	t.Helper()
	if err == nil || wapper.CodeOf(err) != code || !strings.Contains(err.Error(), text) {
		t.Fatalf("error %v (code %s), want %s saying %q", err, wapper.CodeOf(err), code, text)
	}
}

// Gets, a batch, a walk and sets against an agent, through the SDK's
// harness as the host calls the plugin, with the community from a
// secret.
func TestAgentThroughHarness(t *testing.T) {
	secrets(t, map[string]string{"snmp-rw/community": "rw-secret\n"})
	ag, port := startAgent(t, "rw-secret", []gosnmp.SnmpPDU{
		{Name: ".1.3.6.1.2.1.1.3.0", Type: gosnmp.TimeTicks, Value: uint32(4711)},
		{Name: ".1.3.6.1.2.1.1.4.0", Type: gosnmp.OctetString, Value: []byte("root")},
		{Name: ".1.3.6.1.2.1.1.5.0", Type: gosnmp.OctetString, Value: []byte("agent-1")},
		{Name: ".1.3.6.1.2.1.2.2.1.2.1", Type: gosnmp.OctetString, Value: []byte("lo")},
		{Name: ".1.3.6.1.2.1.2.2.1.2.2", Type: gosnmp.OctetString, Value: []byte("eth0")},
		{Name: ".1.3.6.1.2.1.2.2.1.5.2", Type: gosnmp.Gauge32, Value: uint(1000000000)},
		{Name: ".1.3.6.1.4.1.99999.2.0", Type: gosnmp.Integer, Value: 215},
		{Name: ".1.3.6.1.4.1.99999.3.0", Type: gosnmp.Integer, Value: 2},
	}, "1.3.6.1.2.1.1.4.0", "1.3.6.1.4.1.99999.2.0", "1.3.6.1.4.1.99999.3.0")
	p, err := sdktest.New(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cfg := map[string]any{"address": "127.0.0.1", "port": strconv.Itoa(port), "communitySecret": "snmp-rw/community", "timeout": 500, "retries": 0}
	props := []sdktest.Property{
		{Name: "sysName", Type: "STRING", Visitor: `{"oid": "1.3.6.1.2.1.1.5.0"}`},
		{Name: "uptime", Type: "INT", Visitor: `{"oid": "1.3.6.1.2.1.1.3.0"}`},
		{Name: "sysContact", Type: "STRING", AccessMode: "ReadWrite", Visitor: `{"oid": ".1.3.6.1.2.1.1.4.0"}`},
		{Name: "temperature", Type: "DOUBLE", AccessMode: "ReadWrite", Visitor: `{"oid": "1.3.6.1.4.1.99999.2.0", "scale": 0.1}`},
		{Name: "enabled", Type: "BOOLEAN", AccessMode: "ReadWrite", Visitor: `{"oid": "1.3.6.1.4.1.99999.3.0"}`},
		{Name: "ifDescr", Type: "STRING", Visitor: `{"oid": "1.3.6.1.2.1.2.2.1.2", "walk": true}`},
		{Name: "missing", Type: "INT", Visitor: `{"oid": "1.3.6.1.4.1.99999.9.0"}`},
		{Name: "sysNameRW", Type: "STRING", AccessMode: "ReadWrite", Visitor: `{"oid": "1.3.6.1.2.1.1.5.0"}`},
	}
	dev, err := p.Add(sdktest.Description{Name: "agent", Protocol: "snmp", ProtocolConfig: cfg, Properties: props})
	if err != nil {
		t.Fatal(err)
	}
	if st, _, _ := dev.State(); st != wapper.StateUnknown {
		t.Errorf("state before any request %s, want unknown", st)
	}
	vals, errs, err := dev.ReadBatch("sysName", "uptime", "temperature", "enabled", "ifDescr", "sysContact")
	if err != nil {
		t.Fatal(err)
	}
	want := []wapper.Value{wapper.String("agent-1"), wapper.Int(4711), wapper.Double(21.5), wapper.Bool(false),
		wapper.String(`{"1.3.6.1.2.1.2.2.1.2.1":"lo","1.3.6.1.2.1.2.2.1.2.2":"eth0"}`), wapper.String("root")}
	for i := range want {
		if errs[i] != nil || !vals[i].Equal(want[i]) {
			t.Errorf("batch reading %d: %#v %v, want %#v", i, vals[i], errs[i], want[i])
		}
	}
	// The five scalars took one get; the walk its own requests.
	ag.mu.Lock()
	reqs := ag.requests
	ag.mu.Unlock()
	if reqs != 2 {
		t.Errorf("batch read took %d requests, want 2 (one get, one get-bulk)", reqs)
	}
	if st, reason, _ := dev.State(); st != wapper.StateOK {
		t.Errorf("state %s %q, want ok", st, reason)
	}

	// Writes, read back by the agent.
	if err := dev.Write("sysContact", wapper.String("ops@example")); err != nil {
		t.Fatal(err)
	}
	if got := string(ag.value("1.3.6.1.2.1.1.4.0").([]byte)); got != "ops@example" {
		t.Errorf("agent's sysContact %q after the write", got)
	}
	if err := dev.Write("temperature", wapper.Double(22.5)); err != nil {
		t.Fatal(err)
	}
	if got := ag.value("1.3.6.1.4.1.99999.2.0"); got != 225 {
		t.Errorf("agent's temperature %v after writing 22.5 with scale 0.1, want 225", got)
	}
	if err := dev.Write("enabled", wapper.Bool(true)); err != nil {
		t.Fatal(err)
	}
	v, err := dev.Read("enabled")
	mustValue(t, v, err, wapper.Bool(true))

	// The agent's refusals and missing objects are device errors.
	wantErr(t, dev.Write("sysNameRW", wapper.String("x")), wapper.ErrDeviceFailed, "the agent refused the set: notWritable (1.3.6.1.2.1.1.5.0)")
	_, err = dev.Read("missing")
	wantErr(t, err, wapper.ErrDeviceFailed, "the agent has no value for 1.3.6.1.4.1.99999.9.0 (noSuchObject)")
	vals, errs, _ = dev.ReadBatch("missing", "sysName")
	if errs[0] == nil || errs[1] != nil || !vals[1].Equal(wapper.String("agent-1")) {
		t.Errorf("a batch with a missing object: %v %v %#v", errs[0], errs[1], vals[1])
	}
	// A walk larger than maxEntries.
	props[5].Visitor = `{"oid": "1.3.6.1.2.1.2.2.1", "walk": true, "maxEntries": 2}`
	if err := dev.Update(sdktest.Description{Name: "agent", Protocol: "snmp", ProtocolConfig: cfg, Properties: props}); err != nil {
		t.Fatal(err)
	}
	_, err = dev.Read("ifDescr")
	wantErr(t, err, wapper.ErrTooLarge, "passed maxEntries (2)")

	// A wrong community gets no answer: a timeout that says what to check.
	secrets(t, map[string]string{"snmp-rw/community": "wrong"})
	bad, err := p.Add(sdktest.Description{Name: "wrong-community", Protocol: "snmp", ProtocolConfig: cfg, Properties: props[:1]})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.Read("sysName")
	wantErr(t, err, wapper.ErrTimeout, "no answer within 500ms (1 tries): check address, port and version, and the community")
	if st, reason, _ := bad.State(); st != wapper.StateUnhealthy || !strings.Contains(reason, "no answer") {
		t.Errorf("state %s %q, want unhealthy with the timeout", st, reason)
	}
	// The secret is read again after a timeout: a rotated community
	// applies at once.
	secrets(t, map[string]string{"snmp-rw/community": "rw-secret"})
	v, err = bad.Read("sysName")
	mustValue(t, v, err, wapper.String("agent-1"))

	// A missing secret says which.
	nosecret, err := p.Add(sdktest.Description{Name: "no-secret", Protocol: "snmp", Properties: props[:1],
		ProtocolConfig: map[string]any{"address": "127.0.0.1", "port": port, "communitySecret": "absent/community"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = nosecret.Read("sysName")
	wantErr(t, err, wapper.ErrNotFound, "communitySecret: read secret absent/community")
}

// freeUDPPort returns a UDP port that was free a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// sender is a trap sender made with gosnmp.
func sender(t *testing.T, port int, g *gosnmp.GoSNMP) *gosnmp.GoSNMP {
	t.Helper()
	g.Target, g.Port, g.Timeout, g.Retries = "127.0.0.1", uint16(port), 2*time.Second, 0
	if err := g.Connect(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Conn.Close() })
	return g
}

var trapVars = []gosnmp.SnmpPDU{
	{Name: ".1.3.6.1.6.3.1.1.4.1.0", Type: gosnmp.ObjectIdentifier, Value: ".1.3.6.1.4.1.99999.0.1"},
	{Name: ".1.3.6.1.4.1.99999.1.0", Type: gosnmp.OctetString, Value: []byte("overheat")},
	{Name: ".1.3.6.1.4.1.99999.2.0", Type: gosnmp.Integer, Value: 873},
}

var trapProps = []sdktest.Property{
	{Name: "alarm", Type: "STRING", Visitor: `{"oid": "1.3.6.1.4.1.99999.1.0", "trapOnly": true}`},
	{Name: "trapOID", Type: "STRING", Visitor: `{"oid": "1.3.6.1.6.3.1.1.4.1.0", "trapOnly": true}`},
	{Name: "temperature", Type: "DOUBLE", Visitor: `{"oid": "1.3.6.1.4.1.99999.2.0", "scale": 0.1}`},
}

// pollFor polls until the device reported n readings or the time is up,
// and returns them by property.
func pollFor(t *testing.T, dev *sdktest.Device, n int, within time.Duration) map[string]wapper.Value {
	t.Helper()
	got := map[string]wapper.Value{}
	count := 0
	for end := time.Now().Add(within); time.Now().Before(end) && count < n; {
		next, err := dev.Poll(200 * time.Millisecond)
		if err != nil {
			t.Fatalf("poll: %v", err)
		}
		if next <= 0 {
			t.Fatalf("poll asked not to be polled again (%v)", next)
		}
		for _, r := range dev.Reports() {
			got[r.Property] = r.Value
			count++
		}
	}
	return got
}

// Traps and informs on a trap port, through the harness: v2c with the
// community of a secret, and SNMPv3 authPriv.
func TestTrapsThroughHarness(t *testing.T) {
	secrets(t, map[string]string{"traps/community": "t-secret", "snmp-v3/auth": "auth-pass-1", "snmp-v3/priv": "priv-pass-1"})
	p, err := sdktest.New(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	port := freeUDPPort(t)
	listen := "127.0.0.1:" + strconv.Itoa(port)
	dev, err := p.Add(sdktest.Description{Name: "trapper", Protocol: "snmp", Properties: trapProps,
		ProtocolConfig: map[string]any{"address": "127.0.0.1", "trapListen": listen, "trapCommunitySecret": "traps/community"}})
	if err != nil {
		t.Fatal(err)
	}
	// A device elsewhere on the same port hears none of it.
	other, err := p.Add(sdktest.Description{Name: "elsewhere", Protocol: "snmp", Properties: trapProps,
		ProtocolConfig: map[string]any{"address": "192.0.2.7", "trapListen": listen}})
	if err != nil {
		t.Fatal(err)
	}
	// The first poll binds the port; before any trap a trapOnly property
	// has no value.
	if got := pollFor(t, dev, 1, 100*time.Millisecond); len(got) != 0 {
		t.Fatalf("reports before any trap: %v", got)
	}
	_, err = dev.Read("alarm")
	wantErr(t, err, wapper.ErrUnavailable, "no trap has carried 1.3.6.1.4.1.99999.1.0 yet")

	v2 := sender(t, port, &gosnmp.GoSNMP{Version: gosnmp.Version2c, Community: "t-secret"})
	if _, err := v2.SendTrap(gosnmp.SnmpTrap{Variables: trapVars}); err != nil {
		t.Fatal(err)
	}
	got := pollFor(t, dev, 3, 5*time.Second)
	if !got["alarm"].Equal(wapper.String("overheat")) || !got["trapOID"].Equal(wapper.String("1.3.6.1.4.1.99999.0.1")) ||
		!got["temperature"].Equal(wapper.Double(87.3)) {
		t.Fatalf("reports of a v2c trap: %v", got)
	}
	v, err := dev.Read("alarm")
	mustValue(t, v, err, wapper.String("overheat"))
	if r := other.Reports(); len(r) != 0 {
		t.Errorf("the device of another address got %v", r)
	}

	// An SNMPv1 trap too.
	v1 := sender(t, port, &gosnmp.GoSNMP{Version: gosnmp.Version1, Community: "t-secret"})
	v1vars := append([]gosnmp.SnmpPDU(nil), trapVars[1:]...)
	v1vars[0].Value = []byte("v1 alarm")
	if _, err := v1.SendTrap(gosnmp.SnmpTrap{Variables: v1vars, Enterprise: ".1.3.6.1.4.1.99999", AgentAddress: "127.0.0.1",
		GenericTrap: 6, SpecificTrap: 1, Timestamp: 300}); err != nil {
		t.Fatal(err)
	}
	got = pollFor(t, dev, 2, 5*time.Second)
	if !got["alarm"].Equal(wapper.String("v1 alarm")) {
		t.Fatalf("reports of a v1 trap: %v", got)
	}

	// A trap with another community is dropped.
	bad := sender(t, port, &gosnmp.GoSNMP{Version: gosnmp.Version2c, Community: "guess"})
	bad.SendTrap(gosnmp.SnmpTrap{Variables: trapVars})
	if got := pollFor(t, dev, 1, 500*time.Millisecond); len(got) != 0 {
		t.Errorf("a trap with a wrong community was reported: %v", got)
	}

	// An inform is acknowledged.
	done := make(chan error, 1)
	go func() {
		vars := append([]gosnmp.SnmpPDU(nil), trapVars...)
		vars[1].Value = []byte("cooling")
		_, err := v2.SendTrap(gosnmp.SnmpTrap{Variables: vars, IsInform: true})
		done <- err
	}()
	got = pollFor(t, dev, 3, 5*time.Second)
	if !got["alarm"].Equal(wapper.String("cooling")) {
		t.Errorf("reports of an inform: %v", got)
	}
	if err := <-done; err != nil {
		t.Errorf("the inform was not acknowledged: %v", err)
	}

	// SNMPv3 authPriv traps, authenticated with the device's user.
	port3 := freeUDPPort(t)
	v3dev, err := p.Add(sdktest.Description{Name: "v3", Protocol: "snmp", Properties: trapProps,
		ProtocolConfig: map[string]any{"address": "127.0.0.1", "version": "3", "user": "ops", "authProtocol": "SHA", "authPasswordSecret": "snmp-v3/auth",
			"privProtocol": "AES", "privPasswordSecret": "snmp-v3/priv", "trapListen": "127.0.0.1:" + strconv.Itoa(port3)}})
	if err != nil {
		t.Fatal(err)
	}
	pollFor(t, v3dev, 1, 50*time.Millisecond) // bind
	usm := func(auth string) *gosnmp.GoSNMP {
		return &gosnmp.GoSNMP{Version: gosnmp.Version3, SecurityModel: gosnmp.UserSecurityModel, MsgFlags: gosnmp.AuthPriv,
			SecurityParameters: &gosnmp.UsmSecurityParameters{UserName: "ops", AuthoritativeEngineID: "\x80\x00\x1f\x88\x80wapper-test",
				AuthenticationProtocol: gosnmp.SHA, AuthenticationPassphrase: auth, PrivacyProtocol: gosnmp.AES, PrivacyPassphrase: "priv-pass-1"}}
	}
	if _, err := sender(t, port3, usm("auth-pass-1")).SendTrap(gosnmp.SnmpTrap{Variables: trapVars}); err != nil {
		t.Fatal(err)
	}
	got = pollFor(t, v3dev, 3, 5*time.Second)
	if !got["alarm"].Equal(wapper.String("overheat")) || !got["temperature"].Equal(wapper.Double(87.3)) {
		t.Fatalf("reports of a v3 trap: %v", got)
	}
	// One with a wrong password is not.
	if _, err := sender(t, port3, usm("not-the-pass")).SendTrap(gosnmp.SnmpTrap{Variables: trapVars}); err != nil {
		t.Fatal(err)
	}
	if got := pollFor(t, v3dev, 1, 500*time.Millisecond); len(got) != 0 {
		t.Errorf("a v3 trap with a wrong password was reported: %v", got)
	}
	// A device without trapListen is not polled.
	quiet, err := p.Add(sdktest.Description{Name: "quiet", Protocol: "snmp", Properties: trapProps[2:],
		ProtocolConfig: map[string]any{"address": "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if next, err := quiet.Poll(time.Second); next != 0 || err != nil {
		t.Errorf("poll of a device without trapListen: %v %v, want 0", next, err)
	}
	// Removing the devices closes the port.
	for _, d := range []*sdktest.Device{dev, other, v3dev} {
		if err := d.Remove(); err != nil {
			t.Fatal(err)
		}
	}
	if len(trapSockets) != 0 {
		t.Errorf("trap sockets left open: %v", trapSockets)
	}
}

// A trap port the host cannot bind makes the device unhealthy, with the
// reason.
func TestTrapPortInUse(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	p, err := sdktest.New(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dev, err := p.Add(sdktest.Description{Name: "busy", Protocol: "snmp", Properties: trapProps,
		ProtocolConfig: map[string]any{"address": "127.0.0.1", "trapListen": pc.LocalAddr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dev.Poll(100 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "traps on udp "+pc.LocalAddr().String()) {
		t.Fatalf("poll on a port in use: %v", err)
	}
	if st, reason, _ := dev.State(); st != wapper.StateUnhealthy || !strings.Contains(reason, "traps on udp") {
		t.Errorf("state %s %q, want unhealthy naming the trap port", st, reason)
	}
}
