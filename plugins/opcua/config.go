package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"

	wapper "wapper.dev/wapper/sdk-go"
)

// protocolConfig is a device's checked connection settings. It is
// comparable: an update that leaves it equal keeps the connection.
type protocolConfig struct {
	url  string // opc.tcp://HOST:PORT[/PATH], the endpoint URL
	addr string // HOST:PORT, what the plugin dials
	// policy is the SecurityPolicy URI, mode the message security mode.
	policy string
	mode   ua.MessageSecurityMode
	// Secret names: the client's application certificate (tls.crt,
	// tls.key), the server's certificate to pin (tls.crt) or the CA that
	// issued it (ca.crt), and the user's password (NAME/KEY) or
	// certificate (tls.crt, tls.key).
	certSecret       string
	serverCertSecret string
	caSecret         string
	userName         string
	passwordSecret   string
	userCertSecret   string

	timeout            time.Duration // one request
	publishingInterval time.Duration
	sessionTimeout     time.Duration
	channelLifetime    time.Duration
}

const (
	defaultPort               = 4840
	defaultTimeout            = 2 * time.Second
	defaultPublishingInterval = 500 * time.Millisecond
	defaultSessionTimeout     = time.Minute
	defaultChannelLifetime    = time.Hour
)

// rawProtocol is the protocol configData's text fields. The names follow
// KubeEdge's OPC UA mapper (url, securityPolicy, securityMode, userName)
// where they mean the same; secrets replace its file paths and password.
type rawProtocol struct {
	URL                     string          `json:"url"`
	SecurityPolicy          string          `json:"securityPolicy"`
	SecurityMode            string          `json:"securityMode"`
	CertificateSecret       string          `json:"certificateSecret"`
	ServerCertificateSecret string          `json:"serverCertificateSecret"`
	CASecret                string          `json:"caSecret"`
	UserName                string          `json:"userName"`
	PasswordSecret          string          `json:"passwordSecret"`
	UserCertificateSecret   string          `json:"userCertificateSecret"`
	Timeout                 json.RawMessage `json:"timeout"`
	PublishingInterval      json.RawMessage `json:"publishingInterval"`
	SessionTimeout          json.RawMessage `json:"sessionTimeout"`
	ChannelLifetime         json.RawMessage `json:"channelLifetime"`
}

// durationOf reads a duration: a Go duration string ("500ms", "2s"), else
// milliseconds. Absent is 0.
func durationOf(name string, b json.RawMessage) (time.Duration, error) {
	if len(b) == 0 || string(b) == "null" {
		return 0, nil
	}
	var s string
	if json.Unmarshal(b, &s) == nil {
		if d, err := time.ParseDuration(strings.TrimSpace(s)); err == nil {
			return d, nil
		}
	}
	ms, err := wapper.Config{name: b}.Float(name, 0)
	if err != nil {
		return 0, fmt.Errorf("%v: want milliseconds or a duration such as \"2s\"", err)
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}

// forbidden are configData keys that would put a secret, or a file the
// plugin cannot read, in plain YAML; the error says what to use instead.
var forbidden = []struct{ key, instead string }{
	{"password", "put the password in a Secret and name it with passwordSecret: \"NAME/KEY\" (and grants.secrets)"},
	{"privateKey", "put the key in a Secret (tls.crt, tls.key) and name it with certificateSecret"},
	{"certificate", "put the certificate and key in a Secret (tls.crt, tls.key) and name it with certificateSecret"},
}

// policies are the security policies the plugin speaks.
var policies = map[string]string{
	"none":           ua.SecurityPolicyURINone,
	"basic256sha256": ua.SecurityPolicyURIBasic256Sha256,
}

// parseProtocol reads the DeviceModel's protocolConfigData, then the
// Device's configData over it.
func parseProtocol(d *wapper.Device) (*protocolConfig, error) {
	var raw rawProtocol
	keys := map[string]json.RawMessage{}
	if err := d.ProtocolConfigs(&raw, &keys); err != nil {
		return nil, err
	}
	bad := func(format string, args ...any) error {
		return wapper.Errorf(wapper.ErrInvalid, "device %s: protocol configData: "+format, append([]any{d}, args...)...)
	}
	for k := range keys {
		for _, f := range forbidden {
			if strings.EqualFold(k, f.key) {
				return nil, bad("%q must not be in configData: %s", k, f.instead)
			}
		}
	}
	c := &protocolConfig{
		certSecret: raw.CertificateSecret, serverCertSecret: raw.ServerCertificateSecret, caSecret: raw.CASecret,
		userName: raw.UserName, passwordSecret: raw.PasswordSecret, userCertSecret: raw.UserCertificateSecret,
	}
	var err error
	if c.url, c.addr, err = parseURL(raw.URL); err != nil {
		return nil, bad("%v", err)
	}
	durs := []struct {
		name string
		raw  json.RawMessage
		dst  *time.Duration
		def  time.Duration
	}{
		{"timeout", raw.Timeout, &c.timeout, defaultTimeout},
		{"publishingInterval", raw.PublishingInterval, &c.publishingInterval, defaultPublishingInterval},
		{"sessionTimeout", raw.SessionTimeout, &c.sessionTimeout, defaultSessionTimeout},
		{"channelLifetime", raw.ChannelLifetime, &c.channelLifetime, defaultChannelLifetime},
	}
	for _, x := range durs {
		v, err := durationOf(x.name, x.raw)
		if err != nil {
			return nil, bad("%s: %v", x.name, err)
		}
		if v < 0 {
			return nil, bad("%s must be positive", x.name)
		}
		if v == 0 {
			v = x.def
		}
		*x.dst = v
	}
	switch {
	case c.publishingInterval < 10*time.Millisecond:
		return nil, bad("publishingInterval %s is below 10ms", c.publishingInterval)
	case c.sessionTimeout < time.Second:
		return nil, bad("sessionTimeout %s is below 1s", c.sessionTimeout)
	case c.channelLifetime < 10*time.Second:
		return nil, bad("channelLifetime %s is below 10s", c.channelLifetime)
	}

	pol := strings.TrimPrefix(strings.TrimSpace(raw.SecurityPolicy), ua.SecurityPolicyURIPrefix)
	if pol == "" {
		pol = "None"
	}
	if c.policy = policies[strings.ToLower(pol)]; c.policy == "" {
		return nil, bad("securityPolicy %q: this plugin speaks None and Basic256Sha256", raw.SecurityPolicy)
	}
	secure := c.policy != ua.SecurityPolicyURINone
	switch strings.ToLower(strings.TrimSpace(raw.SecurityMode)) {
	case "":
		c.mode = ua.MessageSecurityModeNone
		if secure {
			c.mode = ua.MessageSecurityModeSignAndEncrypt
		}
	case "none":
		c.mode = ua.MessageSecurityModeNone
	case "sign":
		c.mode = ua.MessageSecurityModeSign
	case "signandencrypt":
		c.mode = ua.MessageSecurityModeSignAndEncrypt
	default:
		return nil, bad("securityMode %q: want None, Sign or SignAndEncrypt", raw.SecurityMode)
	}
	switch {
	case secure && c.mode == ua.MessageSecurityModeNone:
		return nil, bad("securityMode None does not go with securityPolicy %s: set Sign or SignAndEncrypt", policyName(c.policy))
	case !secure && c.mode != ua.MessageSecurityModeNone:
		return nil, bad("securityMode %s needs a securityPolicy such as Basic256Sha256", modeName(c.mode))
	case secure && c.certSecret == "":
		return nil, bad("securityPolicy %s needs certificateSecret: the Secret with the client's application certificate (%s, %s)", policyName(c.policy), keyCert, keyKey)
	case secure && c.serverCertSecret == "" && c.caSecret == "":
		return nil, bad("securityPolicy %s needs a trust for the server's certificate: serverCertificateSecret (the certificate itself, %s) or caSecret (the CA that issued it, %s)", policyName(c.policy), keyCert, keyCA)
	case c.serverCertSecret != "" && c.caSecret != "":
		return nil, bad("set serverCertificateSecret or caSecret, not both")
	case c.userName != "" && c.passwordSecret == "":
		return nil, bad("userName %q needs passwordSecret: \"NAME/KEY\", the Secret key that holds the password", c.userName)
	case c.userName == "" && c.passwordSecret != "":
		return nil, bad("passwordSecret needs a userName")
	case c.userName != "" && c.userCertSecret != "":
		return nil, bad("set userName (with passwordSecret) or userCertificateSecret, not both")
	}
	for _, s := range []struct{ key, v string }{
		{"certificateSecret", c.certSecret}, {"serverCertificateSecret", c.serverCertSecret},
		{"caSecret", c.caSecret}, {"userCertificateSecret", c.userCertSecret},
	} {
		if s.v != "" && !secretName(s.v) {
			return nil, bad("%s %q is not a Secret name", s.key, s.v)
		}
	}
	if c.passwordSecret != "" {
		if _, _, ok := cutRef(c.passwordSecret); !ok {
			return nil, bad("passwordSecret %q: want NAME/KEY, such as plc-login/password", c.passwordSecret)
		}
	}
	return c, nil
}

// parseURL checks an opc.tcp URL and returns it and the address to dial.
func parseURL(s string) (string, string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", "", fmt.Errorf("url is missing: want opc.tcp://HOST:PORT, such as opc.tcp://10.0.0.5:4840")
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", "", fmt.Errorf("url %q: %v", s, err)
	}
	switch {
	case !strings.EqualFold(u.Scheme, "opc.tcp"):
		return "", "", fmt.Errorf("url %q: the scheme must be opc.tcp", s)
	case u.User != nil:
		return "", "", fmt.Errorf("url %q: credentials do not go in the URL: set userName and passwordSecret", s)
	case u.Hostname() == "":
		return "", "", fmt.Errorf("url %q has no host", s)
	}
	port := defaultPort
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", "", fmt.Errorf("url %q: port %q is outside 1-65535", s, p)
		}
		port = n
	}
	return s, net.JoinHostPort(u.Hostname(), strconv.Itoa(port)), nil
}

// secretName checks a Kubernetes object name (a DNS subdomain).
func secretName(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// cutRef splits a secret reference NAME/KEY.
func cutRef(ref string) (name, key string, ok bool) {
	name, key, ok = strings.Cut(ref, "/")
	if !ok || !secretName(name) || key == "" || strings.ContainsAny(key, "/") {
		return "", "", false
	}
	return name, key, true
}

// rawVisitor is a property's visitor configData.
type rawVisitor struct {
	// NodeID is KubeEdge's field ("nodeID"; "nodeId" works too).
	NodeID     string      `json:"nodeID"`
	BrowsePath string      `json:"browsePath"`
	Subscribe  wapper.Flag `json:"subscribe"`
	DataType   string      `json:"dataType"`
}

// visitor is a property's checked node mapping.
type visitor struct {
	nodeID    *ua.NodeID // nil when the node is found by its browse path
	path      string
	elems     []*ua.RelativePathElement
	subscribe bool
	sampling  time.Duration // -1: the publishing interval
	dataType  ua.TypeID     // 0: learned from the node's value
	// key identifies the mapping, to tell whether an update changed it.
	key string
}

// node names the property's node for errors.
func (v *visitor) node() string {
	if v.nodeID != nil {
		return v.nodeID.String()
	}
	return v.path
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
	v := &visitor{subscribe: bool(raw.Subscribe), sampling: -1}
	switch {
	case raw.NodeID != "" && raw.BrowsePath != "":
		return nil, bad("set nodeID or browsePath, not both")
	case raw.NodeID != "":
		id, err := parseNodeID(raw.NodeID)
		if err != nil {
			return nil, bad("nodeID %q: %v", raw.NodeID, err)
		}
		v.nodeID = id
	case raw.BrowsePath != "":
		elems, err := parseBrowsePath(raw.BrowsePath)
		if err != nil {
			return nil, bad("browsePath %q: %v", raw.BrowsePath, err)
		}
		v.path, v.elems = raw.BrowsePath, elems
	default:
		return nil, bad("set nodeID (such as \"ns=2;s=Temperature\") or browsePath (such as \"/Objects/2:Boiler/2:Temperature\")")
	}
	if b, ok := cfg["samplingInterval"]; ok {
		d, err := durationOf("samplingInterval", b)
		if err != nil {
			return nil, bad("samplingInterval: %v", err)
		}
		if d < 0 {
			return nil, bad("samplingInterval must not be negative")
		}
		v.sampling = d
	}
	if raw.DataType != "" {
		t, ok := typeByName[strings.ToLower(raw.DataType)]
		if !ok {
			return nil, bad("dataType %q: want one of %s", raw.DataType, typeNames())
		}
		v.dataType = t
	}
	v.key = fmt.Sprintf("%s|%s|%t|%d|%d", v.node(), raw.BrowsePath, v.subscribe, v.sampling, v.dataType)
	return v, nil
}

// parseNodeID reads a NodeId in its text form: ns=2;s=Temperature,
// i=2258, ns=3;g=..., ns=1;b=... (ns=0 when left out).
func parseNodeID(s string) (*ua.NodeID, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "nsu=") {
		return nil, fmt.Errorf("namespace URIs (nsu=) are not supported: use the namespace index, ns=N")
	}
	if !strings.Contains(s, "=") {
		// gopcua would take it as a string id in namespace 0: say so.
		return nil, fmt.Errorf("want a NodeId such as ns=2;s=Temperature or i=2258 (a string id in namespace 0 is s=%s)", s)
	}
	id, err := ua.ParseNodeID(s)
	if err != nil {
		return nil, fmt.Errorf("want a NodeId such as ns=2;s=Temperature or i=2258 (%v)", err)
	}
	return id, nil
}

// Well-known nodes of namespace 0.
const (
	rootFolder             = 84
	hierarchicalReferences = 33
)

// parseBrowsePath reads an absolute browse path: "/" then browse names
// separated by "/", each "NS:Name" or "Name" (namespace 0), following
// hierarchical references from the Root folder, such as
// /Objects/2:Boiler/2:Temperature. "&" escapes the next character
// ("&/" is a slash in a name).
func parseBrowsePath(s string) ([]*ua.RelativePathElement, error) {
	if !strings.HasPrefix(s, "/") {
		return nil, fmt.Errorf("a browse path starts at the Root folder with \"/\", such as /Objects/2:Boiler/2:Temperature")
	}
	// Split at the slashes that are not escaped; remember where the
	// first unescaped colon of each element is.
	type elem struct {
		text  []rune
		colon int // -1: none
	}
	cur := elem{colon: -1}
	var raw []elem
	escaped := false
	for _, r := range s[1:] {
		switch {
		case escaped:
			escaped = false
			cur.text = append(cur.text, r)
		case r == '&':
			escaped = true
		case r == '/':
			raw = append(raw, cur)
			cur = elem{colon: -1}
		case r == ':' && cur.colon < 0:
			cur.colon = len(cur.text)
			cur.text = append(cur.text, r)
		default:
			cur.text = append(cur.text, r)
		}
	}
	if escaped {
		return nil, fmt.Errorf("it ends with the escape character &")
	}
	raw = append(raw, cur)
	elems := make([]*ua.RelativePathElement, 0, len(raw))
	for i, e := range raw {
		ns, name := uint16(0), string(e.text)
		if e.colon > 0 {
			prefix := string(e.text[:e.colon])
			if n, err := strconv.ParseUint(prefix, 10, 16); err == nil {
				ns, name = uint16(n), string(e.text[e.colon+1:])
			} else if isDigits(prefix) {
				return nil, fmt.Errorf("element %d: namespace index %s is above 65535", i+1, prefix)
			}
		}
		if name == "" {
			return nil, fmt.Errorf("element %d is empty", i+1)
		}
		elems = append(elems, &ua.RelativePathElement{
			ReferenceTypeID: ua.NewNumericNodeID(0, hierarchicalReferences),
			IncludeSubtypes: true,
			TargetName:      &ua.QualifiedName{NamespaceIndex: ns, Name: name},
		})
	}
	return elems, nil
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}
