package main

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/gosnmp/gosnmp"

	wapper "wapper.dev/wapper/sdk-go"
)

// text is a string in configData that may also be given as a number
// (version: 3, as YAML writes it).
type text string

func (t *text) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*t = text(strings.TrimSpace(s))
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("%s is not a string", b)
	}
	*t = text(n.String())
	return nil
}

// rawProtocol is the protocol configData's text fields. Numbers are read
// from a wapper.Config, which takes them as JSON numbers or numeric
// strings, as KubeEdge passes them.
type rawProtocol struct {
	Address string `json:"address"`
	Version text   `json:"version"`
	// Community is accepted in plain text only as "public", the
	// well-known read-only community; any other one is a password.
	Community       string `json:"community"`
	CommunitySecret string `json:"communitySecret"`

	User               string `json:"user"`
	SecurityLevel      string `json:"securityLevel"`
	AuthProtocol       string `json:"authProtocol"`
	AuthPasswordSecret string `json:"authPasswordSecret"`
	PrivProtocol       string `json:"privProtocol"`
	PrivPasswordSecret string `json:"privPasswordSecret"`
	ContextName        string `json:"contextName"`

	TrapListen          string `json:"trapListen"`
	TrapCommunitySecret string `json:"trapCommunitySecret"`

	// Timeout is milliseconds (a number) or a duration string ("2s").
	Timeout json.RawMessage `json:"timeout"`
}

// plainSecrets are configData members that would carry a password in
// clear text. They are refused, naming the member to use instead.
var plainSecrets = map[string]string{
	"authpassword":   "authPasswordSecret",
	"authpassphrase": "authPasswordSecret",
	"authkey":        "authPasswordSecret",
	"privpassword":   "privPasswordSecret",
	"privpassphrase": "privPasswordSecret",
	"privkey":        "privPasswordSecret",
	"password":       "authPasswordSecret or privPasswordSecret",
	"trapcommunity":  "trapCommunitySecret",
}

// protocolConfig is a device's checked settings. Secrets are references
// ("NAME/KEY"), read when a session is made.
type protocolConfig struct {
	address string // host
	port    int
	version gosnmp.SnmpVersion

	community       string // "public" when neither community nor communitySecret is set
	communitySecret string

	user       string
	level      gosnmp.SnmpV3MsgFlags // NoAuthNoPriv, AuthNoPriv or AuthPriv
	authProto  gosnmp.SnmpV3AuthProtocol
	authSecret string
	privProto  gosnmp.SnmpV3PrivProtocol
	privSecret string
	context    string

	timeout        time.Duration
	retries        int
	maxOids        int
	maxRepetitions uint32

	trapListen          string
	trapCommunitySecret string
}

// target is the agent's address as host:port.
func (c *protocolConfig) target() string {
	return net.JoinHostPort(c.address, strconv.Itoa(c.port))
}

// Defaults. One request waits defaultTimeout and is sent defaultRetries
// more times, so that a silent agent fails a call (v3 included, whose
// first request also discovers the agent's engine) well before the
// host's default call deadline of 5 s.
const (
	defaultTimeout        = time.Second
	defaultRetries        = 1
	defaultMaxOids        = gosnmp.MaxOids
	defaultMaxRepetitions = 25
)

// timeoutOf reads a timeout: a Go duration string ("500ms", "2s"), else
// milliseconds.
func timeoutOf(b json.RawMessage) (time.Duration, error) {
	var s string
	if json.Unmarshal(b, &s) == nil {
		if d, err := time.ParseDuration(strings.TrimSpace(s)); err == nil {
			return d, nil
		}
	}
	ms, err := wapper.Config{"timeout": b}.Float("timeout", 0)
	if err != nil {
		return 0, fmt.Errorf("%v: want milliseconds or a duration such as \"2s\"", err)
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}

// checkSecretRef checks a secret reference: NAME/KEY, NAME a Kubernetes
// object name, KEY a Secret key.
func checkSecretRef(ref string) error {
	name, key, ok := strings.Cut(ref, "/")
	if !ok || name == "" || key == "" || strings.Contains(key, "/") {
		return fmt.Errorf("%q is not a secret reference: want NAME/KEY, such as snmp-v3/auth", ref)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return fmt.Errorf("%q: secret name %q must be a Kubernetes object name (a-z, 0-9, - and .)", ref, name)
		}
	}
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("%q: secret key %q may hold letters, digits, -, _ and . only", ref, key)
		}
	}
	return nil
}

// parseProtocol reads the DeviceModel's protocolConfigData, then the
// Device's configData over it.
func parseProtocol(d *wapper.Device) (*protocolConfig, error) {
	var raw rawProtocol
	cfg := wapper.Config{}
	if err := d.ProtocolConfigs(&raw, &cfg); err != nil {
		return nil, err
	}
	bad := func(format string, args ...any) error {
		return wapper.Errorf(wapper.ErrInvalid, "device %s: protocol configData: "+format, append([]any{d}, args...)...)
	}
	return checkProtocol(raw, cfg, bad)
}

func checkProtocol(raw rawProtocol, cfg wapper.Config, bad func(string, ...any) error) (*protocolConfig, error) {
	for k := range cfg {
		if use, ok := plainSecrets[strings.ToLower(k)]; ok {
			return nil, bad("%s would put a password in plain configData: store it in a secret (granted by the MapperPlugin's grants.secrets) and set %s to its NAME/KEY", k, use)
		}
	}
	c := &protocolConfig{address: strings.TrimSpace(raw.Address), timeout: defaultTimeout, context: raw.ContextName}
	if c.address == "" {
		return nil, bad("set address, the agent's host name or IP address")
	}
	if h, p, err := net.SplitHostPort(c.address); err == nil {
		return nil, bad("address %q holds a port: set address %q and port %s", c.address, h, p)
	}
	c.address = strings.TrimSuffix(strings.TrimPrefix(c.address, "["), "]")
	port, err := cfg.Int("port", 161)
	if err != nil {
		return nil, bad("%v", err)
	}
	if port < 1 || port > 65535 {
		return nil, bad("port %d is outside 1-65535", port)
	}
	c.port = int(port)
	switch strings.ToLower(string(raw.Version)) {
	case "", "2c", "v2c", "2":
		c.version = gosnmp.Version2c
	case "1", "v1":
		c.version = gosnmp.Version1
	case "3", "v3":
		c.version = gosnmp.Version3
	default:
		return nil, bad("version %q: want 1, 2c or 3", raw.Version)
	}
	if len(raw.Timeout) > 0 {
		if c.timeout, err = timeoutOf(raw.Timeout); err != nil {
			return nil, bad("%v", err)
		}
		if c.timeout <= 0 {
			return nil, bad("timeout must be positive")
		}
	}
	retries, err := cfg.Int("retries", defaultRetries)
	if err != nil {
		return nil, bad("%v", err)
	}
	if retries < 0 || retries > 10 {
		return nil, bad("retries %d is outside 0-10", retries)
	}
	c.retries = int(retries)
	maxOids, err := cfg.Int("maxOids", defaultMaxOids)
	if err != nil {
		return nil, bad("%v", err)
	}
	if maxOids < 1 || maxOids > 1000 {
		return nil, bad("maxOids %d is outside 1-1000", maxOids)
	}
	c.maxOids = int(maxOids)
	reps, err := cfg.Int("maxRepetitions", defaultMaxRepetitions)
	if err != nil {
		return nil, bad("%v", err)
	}
	if reps < 1 || reps > 1000 {
		return nil, bad("maxRepetitions %d is outside 1-1000", reps)
	}
	c.maxRepetitions = uint32(reps)

	if c.version == gosnmp.Version3 {
		if err := c.checkV3(raw); err != nil {
			return nil, bad("%v", err)
		}
	} else {
		for name, v := range map[string]string{"user": raw.User, "securityLevel": raw.SecurityLevel, "authProtocol": raw.AuthProtocol,
			"authPasswordSecret": raw.AuthPasswordSecret, "privProtocol": raw.PrivProtocol, "privPasswordSecret": raw.PrivPasswordSecret} {
			if v != "" {
				return nil, bad("%s is for SNMPv3: set version 3, or leave it out", name)
			}
		}
		switch {
		case raw.CommunitySecret != "" && raw.Community != "":
			return nil, bad("set community (only \"public\") or communitySecret, not both")
		case raw.CommunitySecret != "":
			if err := checkSecretRef(raw.CommunitySecret); err != nil {
				return nil, bad("communitySecret: %v", err)
			}
			c.communitySecret = raw.CommunitySecret
		case raw.Community == "" || raw.Community == "public":
			c.community = "public"
		default:
			return nil, bad("community: a community string is a password; only the well-known read-only \"public\" may be written in configData. Store the community in a secret (granted by the MapperPlugin's grants.secrets) and set communitySecret to its NAME/KEY")
		}
	}
	if raw.TrapListen != "" {
		host, p, err := net.SplitHostPort(raw.TrapListen)
		n, perr := strconv.Atoi(p)
		if err != nil || perr != nil || n < 0 || n > 65535 || (host != "" && net.ParseIP(host) == nil) {
			return nil, bad("trapListen %q: want :PORT or IP:PORT, such as :1162", raw.TrapListen)
		}
		c.trapListen = raw.TrapListen
	}
	if raw.TrapCommunitySecret != "" {
		if raw.TrapListen == "" {
			return nil, bad("trapCommunitySecret needs trapListen")
		}
		if err := checkSecretRef(raw.TrapCommunitySecret); err != nil {
			return nil, bad("trapCommunitySecret: %v", err)
		}
		c.trapCommunitySecret = raw.TrapCommunitySecret
	}
	return c, nil
}

// checkV3 reads the USM settings of an SNMPv3 device.
func (c *protocolConfig) checkV3(raw rawProtocol) error {
	if raw.Community != "" || raw.CommunitySecret != "" {
		return fmt.Errorf("community and communitySecret are for SNMPv1 and v2c; SNMPv3 authenticates with user, authPasswordSecret and privPasswordSecret")
	}
	c.user = strings.TrimSpace(raw.User)
	if c.user == "" {
		return fmt.Errorf("SNMPv3 needs user, the USM user name")
	}
	// The level: as given, else from the secrets that are set.
	level := strings.ToLower(raw.SecurityLevel)
	switch {
	case level == "" && raw.PrivPasswordSecret != "":
		level = "authpriv"
	case level == "" && raw.AuthPasswordSecret != "":
		level = "authnopriv"
	case level == "":
		level = "noauthnopriv"
	}
	switch level {
	case "noauthnopriv":
		c.level = gosnmp.NoAuthNoPriv
	case "authnopriv":
		c.level = gosnmp.AuthNoPriv
	case "authpriv":
		c.level = gosnmp.AuthPriv
	default:
		return fmt.Errorf("securityLevel %q: want noAuthNoPriv, authNoPriv or authPriv", raw.SecurityLevel)
	}
	auth := c.level&gosnmp.AuthNoPriv != 0
	priv := c.level&gosnmp.AuthPriv == gosnmp.AuthPriv
	switch {
	case auth && raw.AuthPasswordSecret == "":
		return fmt.Errorf("securityLevel %s needs authPasswordSecret, the NAME/KEY of the secret holding the authentication password", levelNames[c.level])
	case !auth && (raw.AuthPasswordSecret != "" || raw.AuthProtocol != ""):
		return fmt.Errorf("authPasswordSecret and authProtocol need securityLevel authNoPriv or authPriv")
	case priv && raw.PrivPasswordSecret == "":
		return fmt.Errorf("securityLevel authPriv needs privPasswordSecret, the NAME/KEY of the secret holding the privacy password")
	case !priv && (raw.PrivPasswordSecret != "" || raw.PrivProtocol != ""):
		return fmt.Errorf("privPasswordSecret and privProtocol need securityLevel authPriv")
	}
	c.authProto, c.privProto = gosnmp.NoAuth, gosnmp.NoPriv
	if auth {
		p, ok := authProtocols[strings.ToUpper(strings.ReplaceAll(raw.AuthProtocol, "-", ""))]
		if !ok {
			return fmt.Errorf("authProtocol %q: want MD5, SHA, SHA224, SHA256, SHA384 or SHA512", raw.AuthProtocol)
		}
		if err := checkSecretRef(raw.AuthPasswordSecret); err != nil {
			return fmt.Errorf("authPasswordSecret: %v", err)
		}
		c.authProto, c.authSecret = p, raw.AuthPasswordSecret
	}
	if priv {
		p, ok := privProtocols[strings.ToUpper(strings.ReplaceAll(raw.PrivProtocol, "-", ""))]
		if !ok {
			return fmt.Errorf("privProtocol %q: want DES, AES, AES192, AES256, AES192C or AES256C", raw.PrivProtocol)
		}
		if err := checkSecretRef(raw.PrivPasswordSecret); err != nil {
			return fmt.Errorf("privPasswordSecret: %v", err)
		}
		c.privProto, c.privSecret = p, raw.PrivPasswordSecret
	}
	return nil
}

// levelNames spell the security levels as configData does.
var levelNames = map[gosnmp.SnmpV3MsgFlags]string{
	gosnmp.NoAuthNoPriv: "noAuthNoPriv", gosnmp.AuthNoPriv: "authNoPriv", gosnmp.AuthPriv: "authPriv",
}

// Protocols by name; the empty name is the default (SHA, AES).
var (
	authProtocols = map[string]gosnmp.SnmpV3AuthProtocol{
		"": gosnmp.SHA, "MD5": gosnmp.MD5, "SHA": gosnmp.SHA, "SHA1": gosnmp.SHA,
		"SHA224": gosnmp.SHA224, "SHA256": gosnmp.SHA256, "SHA384": gosnmp.SHA384, "SHA512": gosnmp.SHA512,
	}
	privProtocols = map[string]gosnmp.SnmpV3PrivProtocol{
		"": gosnmp.AES, "DES": gosnmp.DES, "AES": gosnmp.AES, "AES128": gosnmp.AES,
		"AES192": gosnmp.AES192, "AES256": gosnmp.AES256, "AES192C": gosnmp.AES192C, "AES256C": gosnmp.AES256C,
	}
)

// rawVisitor is a property's visitor configData.
type rawVisitor struct {
	OID      string      `json:"oid"`
	Walk     wapper.Flag `json:"walk"`
	TrapOnly wapper.Flag `json:"trapOnly"`
	SNMPType string      `json:"snmpType"`
	Format   string      `json:"format"`
}

// visitor is a property's checked mapping.
type visitor struct {
	oid      string // dotted, without a leading dot
	walk     bool
	trapOnly bool
	setType  gosnmp.Asn1BER // 0: from the property type
	hex      bool           // OCTET STRINGs as hex text
	scale    float64
	max      int // entries of a walk
}

// defaultMaxEntries bounds a walk.
const defaultMaxEntries = 1000

// setTypes are the SNMP types a write can send, by name.
var setTypes = map[string]gosnmp.Asn1BER{
	"integer": gosnmp.Integer, "integer32": gosnmp.Integer, "int": gosnmp.Integer,
	"octetstring": gosnmp.OctetString, "string": gosnmp.OctetString,
	"gauge32": gosnmp.Gauge32, "gauge": gosnmp.Gauge32, "unsigned32": gosnmp.Gauge32,
	"counter32": gosnmp.Counter32, "counter64": gosnmp.Counter64,
	"timeticks": gosnmp.TimeTicks, "uinteger32": gosnmp.Uinteger32,
	"ipaddress": gosnmp.IPAddress, "objectidentifier": gosnmp.ObjectIdentifier, "oid": gosnmp.ObjectIdentifier,
	"opaquefloat": gosnmp.OpaqueFloat, "opaquedouble": gosnmp.OpaqueDouble,
}

// normOID checks a dotted OID and returns it without a leading dot.
func normOID(s string) (string, error) {
	o := strings.TrimPrefix(strings.TrimSpace(s), ".")
	parts := strings.Split(o, ".")
	if o == "" || len(parts) < 2 {
		return "", fmt.Errorf("%q is not a numeric OID such as 1.3.6.1.2.1.1.5.0 (MIB names are not resolved)", s)
	}
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil || (i == 0 && n > 2) || (p != "0" && p[0] == '0') {
			return "", fmt.Errorf("%q is not a numeric OID such as 1.3.6.1.2.1.1.5.0 (MIB names are not resolved)", s)
		}
	}
	return o, nil
}

func parseVisitor(p *wapper.Property) (*visitor, error) {
	var raw rawVisitor
	var cfg wapper.Config
	if err := p.Visit(&raw); err != nil {
		return nil, err
	}
	if err := p.Visit(&cfg); err != nil {
		return nil, err
	}
	bad := func(format string, args ...any) error {
		return wapper.Errorf(wapper.ErrInvalid, "property %q visitor: "+format, append([]any{p.Name}, args...)...)
	}
	if raw.OID == "" {
		return nil, bad("set oid, the object's numeric OID (such as 1.3.6.1.2.1.1.5.0 for sysName.0)")
	}
	oid, err := normOID(raw.OID)
	if err != nil {
		return nil, bad("oid %v", err)
	}
	v := &visitor{oid: oid, walk: bool(raw.Walk), trapOnly: bool(raw.TrapOnly), scale: 1}
	scale, err := cfg.Float("scale", 1)
	if err != nil {
		return nil, bad("%v", err)
	}
	if scale == 0 {
		return nil, bad("scale must not be 0")
	}
	v.scale = scale
	maxEntries, err := cfg.Int("maxEntries", defaultMaxEntries)
	if err != nil {
		return nil, bad("%v", err)
	}
	if maxEntries < 1 || maxEntries > 100000 {
		return nil, bad("maxEntries %d is outside 1-100000", maxEntries)
	}
	v.max = int(maxEntries)
	switch strings.ToLower(raw.Format) {
	case "", "text":
	case "hex":
		v.hex = true
	default:
		return nil, bad("format %q: want text or hex", raw.Format)
	}
	if raw.SNMPType != "" {
		t, ok := setTypes[strings.ToLower(strings.ReplaceAll(raw.SNMPType, "-", ""))]
		if !ok {
			return nil, bad("snmpType %q: want Integer, OctetString, Gauge32, Counter32, Counter64, TimeTicks, Unsigned32, IpAddress, ObjectIdentifier, OpaqueFloat or OpaqueDouble", raw.SNMPType)
		}
		v.setType = t
	}
	switch {
	case v.walk && v.trapOnly:
		return nil, bad("walk and trapOnly exclude each other")
	case v.walk && p.Type() != wapper.TypeString:
		return nil, bad("a walk reads a subtree as a JSON object of OID to value: declare the property as STRING, not %s", p.Type())
	case v.walk && p.Writable():
		return nil, bad("a walk cannot be written: make the property ReadOnly")
	case v.trapOnly && p.Writable():
		return nil, bad("a trapOnly property takes its value from traps and cannot be written: make it ReadOnly")
	case p.Writable() && v.setType == 0:
		if _, err := v.snmpTypeFor(p.Type()); err != nil {
			return nil, bad("%v", err)
		}
	}
	return v, nil
}
