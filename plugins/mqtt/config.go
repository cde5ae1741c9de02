package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	wapper "wapper.dev/wapper/sdk-go"
)

// rawProtocol is the protocol configData's text fields, in the spelling
// of KubeEdge's MQTT mapper (mappers-go, mappers/device-v1beta1/
// mqtt-mapper: driver/devicetype.go ConfigData, and the ip and port of
// its example Device) plus wapper's commandTopic and passwordSecret.
// encoding/json matches names ignoring case, so "clientId" works too.
// Numbers (port, keepAlive, qos) are read from a wapper.Config, which
// takes them as JSON numbers or numeric strings, as KubeEdge passes them.
type rawProtocol struct {
	BrokerURL      string          `json:"brokerURL"`
	IP             string          `json:"ip"`
	ClientID       *string         `json:"clientID"`
	Topic          string          `json:"topic"`
	CommandTopic   string          `json:"commandTopic"`
	Username       *string         `json:"username"`
	PasswordSecret string          `json:"passwordSecret"`
	Password       json.RawMessage `json:"password"`
	CleanSession   *wapper.Flag    `json:"cleanSession"`
	ConnectionTTL  json.RawMessage `json:"connectionTTL"`
	FileType       string          `json:"fileType"`
}

// rawVisitor is a property's visitor configData. Besides the property's
// own fields, KubeEdge's example Device puts connection settings in the
// visitor (clientId, username, password, cleanSession, keepAlive); they
// are taken as the device's when its protocol configData does not set
// them, and must then agree across properties.
type rawVisitor struct {
	Topic        string          `json:"topic"`
	CommandTopic string          `json:"commandTopic"`
	JSONPath     *string         `json:"jsonPath"`
	Retain       wapper.Flag     `json:"retain"`
	FileType     string          `json:"fileType"`
	ClientID     *string         `json:"clientID"`
	Username     *string         `json:"username"`
	Password     json.RawMessage `json:"password"`
	CleanSession *wapper.Flag    `json:"cleanSession"`
}

// protocolConfig is a device's checked broker settings.
type protocolConfig struct {
	// network is "tcp" or "tls", addr host:port, url their normal form.
	network, addr, url string
	// clientID is empty for one of the plugin's own per connection.
	clientID       string
	username       string
	passwordSecret string
	keepAlive      time.Duration
	cleanSession   bool
	connectTimeout time.Duration
	// qos is the default QoS of subscriptions and writes.
	qos          byte
	topic        string
	commandTopic string
}

// sessionKey names the connection a device shares with the other devices
// of the instance that reach the same broker the same way.
func (c *protocolConfig) sessionKey() string {
	return strings.Join([]string{c.url, c.clientID, c.username, c.passwordSecret,
		c.keepAlive.String(), strconv.FormatBool(c.cleanSession), c.connectTimeout.String()}, "\x00")
}

// propConfig is a property's checked topic and payload mapping.
type propConfig struct {
	// filter is the topic filter whose messages carry the property.
	filter string
	// own is set when the property's visitor names its own topic.
	own  bool
	path jsonPath
	// defaultPath is set when the visitor gave no jsonPath (the property
	// name is the key).
	defaultPath bool
	// command is the topic writes go to ("" for a read-only property).
	command string
	qos     byte
	retain  bool
}

// Defaults.
const (
	defaultKeepAlive      = 60 * time.Second
	defaultConnectTimeout = 3 * time.Second
	defaultQoS            = 1
)

// isSecretRef reports whether s is NAME/KEY: a Kubernetes object name
// (lower-case letters, digits, '-' and '.', starting and ending with a
// letter or digit) and a Secret key (letters, digits, '-', '_', '.').
func isSecretRef(s string) bool {
	name, key, ok := strings.Cut(s, "/")
	if !ok || name == "" || key == "" || strings.Trim(name, "-.") != name {
		return false
	}
	for _, r := range name {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	for _, r := range key {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// passwordErr is the answer to a password written in configData.
func passwordErr(where string) string {
	return where + `"password" is not accepted: a password does not belong in a Device's YAML. ` +
		`Put it in a Secret (a file NAME/KEY under wapper-host's --secrets-dir, or a Kubernetes Secret), ` +
		`name it with "passwordSecret": "NAME/KEY" in the protocol configData, and list NAME in the MapperPlugin's grants.secrets`
}

// present reports whether a raw member is set to something other than
// null or "".
func present(b json.RawMessage) bool {
	s := strings.TrimSpace(string(b))
	return s != "" && s != "null" && s != `""`
}

// parseDevice reads the DeviceModel's protocolConfigData, the Device's
// configData over it, and every property's visitor.
func parseDevice(d *wapper.Device) (*protocolConfig, map[uint32]*propConfig, error) {
	bad := func(format string, args ...any) error {
		return wapper.Errorf(wapper.ErrInvalid, "device %s: protocol configData: "+format, append([]any{d}, args...)...)
	}
	var raw rawProtocol
	cfg := wapper.Config{}
	if err := d.ProtocolConfigs(&raw, &cfg); err != nil {
		return nil, nil, err
	}
	if present(raw.Password) {
		return nil, nil, bad("%s", passwordErr(""))
	}
	c := &protocolConfig{cleanSession: true, topic: strings.TrimSpace(raw.Topic), commandTopic: strings.TrimSpace(raw.CommandTopic)}
	if err := c.setBroker(raw, cfg); err != nil {
		return nil, nil, bad("%v", err)
	}
	keepAlive, err := cfg.Int("keepAlive", int64(defaultKeepAlive/time.Second))
	if err == nil && (keepAlive < 0 || keepAlive > 65535) {
		err = fmt.Errorf("keepAlive %d is outside 0-65535 seconds", keepAlive)
	}
	if err != nil {
		return nil, nil, bad("%v", err)
	}
	c.keepAlive = time.Duration(keepAlive) * time.Second
	if c.qos, err = qosOf(cfg, defaultQoS); err != nil {
		return nil, nil, bad("%v", err)
	}
	if c.connectTimeout, err = ttlOf(raw.ConnectionTTL); err != nil {
		return nil, nil, bad("%v", err)
	}
	if err := checkFileType(raw.FileType); err != nil {
		return nil, nil, bad("%v", err)
	}
	if c.topic != "" {
		if err := checkTopicFilter(c.topic); err != nil {
			return nil, nil, bad("topic: %v", err)
		}
	}
	if c.commandTopic != "" {
		if err := checkTopicName(c.commandTopic); err != nil {
			return nil, nil, bad("commandTopic: %v", err)
		}
	}

	// Connection settings: the protocol's, else the visitors' (which must
	// agree with each other and with the protocol's).
	conn := connFields{}
	if raw.ClientID != nil {
		conn.set("clientID", strings.TrimSpace(*raw.ClientID), "the protocol configData")
	}
	if raw.Username != nil {
		conn.set("username", *raw.Username, "the protocol configData")
	}
	if raw.CleanSession != nil {
		conn.set("cleanSession", strconv.FormatBool(bool(*raw.CleanSession)), "the protocol configData")
	}
	if isSet(cfg, "keepAlive") {
		conn.set("keepAlive", strconv.FormatInt(keepAlive, 10), "the protocol configData")
	}

	props := map[uint32]*propConfig{}
	for _, p := range d.Properties() {
		pc, err := parseVisitor(d, p, c, &conn)
		if err != nil {
			return nil, nil, err
		}
		props[p.Handle] = pc
	}
	if conn.err != nil {
		return nil, nil, wapper.Errorf(wapper.ErrInvalid, "device %s: %v", d, conn.err)
	}
	c.clientID = conn.vals["clientID"]
	c.username = conn.vals["username"]
	if v, ok := conn.vals["cleanSession"]; ok {
		c.cleanSession = v == "true"
	}
	if v, ok := conn.vals["keepAlive"]; ok {
		n, _ := strconv.ParseInt(v, 10, 64)
		c.keepAlive = time.Duration(n) * time.Second
	}
	c.passwordSecret = strings.TrimSpace(raw.PasswordSecret)
	switch {
	case len(c.clientID) > 65535:
		return nil, nil, bad("clientID is longer than 65535 bytes")
	case c.passwordSecret != "" && !isSecretRef(c.passwordSecret):
		return nil, nil, bad("passwordSecret %q: want NAME/KEY, a Secret's name and one of its keys (such as \"mqtt-login/password\")", c.passwordSecret)
	case c.passwordSecret != "" && c.username == "":
		return nil, nil, bad("passwordSecret needs a username (MQTT 3.1.1 sends a password only with a user name)")
	case !c.cleanSession && c.clientID == "":
		return nil, nil, bad("cleanSession false keeps a session on the broker under the client's id: set clientID too")
	}
	return c, props, nil
}

// isSet reports whether a Config member is set (not absent, null or "").
func isSet(c wapper.Config, name string) bool {
	for k, v := range c {
		if strings.EqualFold(k, name) && present(v) {
			return true
		}
	}
	return false
}

// setBroker sets the broker from brokerURL, or from ip and port.
func (c *protocolConfig) setBroker(raw rawProtocol, cfg wapper.Config) error {
	u := strings.TrimSpace(raw.BrokerURL)
	ip := strings.TrimSpace(raw.IP)
	switch {
	case u == "" && ip == "":
		return fmt.Errorf("set brokerURL (such as \"tls://broker.local:8883\" or \"tcp://10.0.0.5:1883\"), or ip and port")
	case u != "" && ip != "":
		return fmt.Errorf("set either brokerURL or ip and port, not both")
	case ip != "":
		port, err := cfg.Int("port", 1883)
		if err != nil {
			return err
		}
		if port < 1 || port > 65535 {
			return fmt.Errorf("port %d is outside 1-65535", port)
		}
		c.network, c.addr = "tcp", net.JoinHostPort(strings.Trim(ip, "[]"), strconv.Itoa(int(port)))
		c.url = c.network + "://" + c.addr
		return nil
	}
	if !strings.Contains(u, "://") {
		u = "tcp://" + u
	}
	pu, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("brokerURL %q: %v", raw.BrokerURL, err)
	}
	port := 1883
	switch strings.ToLower(pu.Scheme) {
	case "tcp", "mqtt":
		c.network = "tcp"
	case "tls", "ssl", "mqtts", "tcps":
		c.network, port = "tls", 8883
	case "ws", "wss":
		return fmt.Errorf("brokerURL %q: MQTT over websockets is not supported; use tcp:// or tls://", raw.BrokerURL)
	default:
		return fmt.Errorf("brokerURL %q: scheme %q: use tcp:// (plain) or tls:// (TLS, made by the host)", raw.BrokerURL, pu.Scheme)
	}
	switch {
	case pu.User != nil:
		return fmt.Errorf("brokerURL %q carries credentials: use username and passwordSecret", raw.BrokerURL)
	case pu.Hostname() == "":
		return fmt.Errorf("brokerURL %q has no host", raw.BrokerURL)
	case pu.Path != "" && pu.Path != "/", pu.RawQuery != "":
		return fmt.Errorf("brokerURL %q: a broker URL has no path or query", raw.BrokerURL)
	}
	if p := pu.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("brokerURL %q: port %q is outside 1-65535", raw.BrokerURL, p)
		}
		port = n
	}
	c.addr = net.JoinHostPort(pu.Hostname(), strconv.Itoa(port))
	c.url = c.network + "://" + c.addr
	return nil
}

// qosOf reads a qos member: 0 or 1.
func qosOf(cfg wapper.Config, def byte) (byte, error) {
	q, err := cfg.Int("qos", int64(def))
	switch {
	case err != nil:
		return 0, err
	case q == 2:
		return 0, fmt.Errorf("qos 2 is not supported by this plugin: use 0 or 1")
	case q < 0 || q > 2:
		return 0, fmt.Errorf("qos %d: want 0 or 1", q)
	}
	return byte(q), nil
}

// ttlOf reads connectionTTL, how long a connection to the broker may take
// to set up: a duration string ("5s"), or a number of nanoseconds, which
// is how KubeEdge's MQTT mapper reads it (a Go time.Duration).
func ttlOf(b json.RawMessage) (time.Duration, error) {
	if !present(b) {
		return defaultConnectTimeout, nil
	}
	var d time.Duration
	var s string
	if json.Unmarshal(b, &s) == nil {
		v, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			n, nerr := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if nerr != nil {
				return 0, fmt.Errorf("connectionTTL %q: want a duration such as \"5s\"", s)
			}
			v = time.Duration(n)
		}
		d = v
	} else {
		n, err := wapper.Config{"connectionTTL": b}.Int("connectionTTL", 0)
		if err != nil {
			return 0, fmt.Errorf("%v: want a duration such as \"5s\"", err)
		}
		d = time.Duration(n)
	}
	switch {
	case d <= 0:
		return 0, fmt.Errorf("connectionTTL must be positive")
	case d < time.Millisecond:
		return 0, fmt.Errorf("connectionTTL %s is %s: a number is nanoseconds, as in KubeEdge's MQTT mapper (a Go time.Duration); write a duration such as \"5s\"",
			strings.TrimSpace(string(b)), d)
	}
	return d, nil
}

// checkFileType accepts the JSON payloads this plugin reads.
func checkFileType(t string) error {
	switch strings.ToLower(strings.TrimSpace(t)) {
	case "", "json":
		return nil
	}
	return fmt.Errorf("fileType %q is not supported by this plugin: device payloads must be JSON", t)
}

// connFields gathers the connection settings set in the protocol
// configData and in visitors, keeping the first disagreement.
type connFields struct {
	vals  map[string]string
	where map[string]string
	err   error
}

func (f *connFields) set(field, val, where string) {
	if f.vals == nil {
		f.vals, f.where = map[string]string{}, map[string]string{}
	}
	old, ok := f.vals[field]
	switch {
	case !ok:
		f.vals[field], f.where[field] = val, where
	case old != val && f.err == nil:
		f.err = fmt.Errorf("%s sets %s %q but %s sets %q: a device has one connection; set %s once, in the protocol configData",
			where, field, val, f.where[field], old, field)
	}
}

// defaultCommandTopic derives the topic writes go to from the topic a
// property is read from. KubeEdge's MQTT mapper names a topic
// DEVICE/OPERATION/FORMAT, where a device reports its state with the
// operation "deviceinfo" and is set with "setsinglevalue": so
// "room1/deviceinfo/json" is written on "room1/setsinglevalue/json". Any
// other topic T is written on "T/set". A filter with wildcards has no
// default.
func defaultCommandTopic(topic string) string {
	if topic == "" || strings.ContainsAny(topic, "+#") {
		return ""
	}
	parts := strings.Split(topic, "/")
	if n := len(parts); n >= 3 && parts[n-2] == "deviceinfo" {
		parts[n-2] = "setsinglevalue"
		return strings.Join(parts, "/")
	}
	return topic + "/set"
}

// parseVisitor reads a property's visitor configData, noting in conn
// the connection settings it carries.
func parseVisitor(d *wapper.Device, p *wapper.Property, c *protocolConfig, conn *connFields) (*propConfig, error) {
	bad := func(format string, args ...any) error {
		return wapper.Errorf(wapper.ErrInvalid, "device %s: property %q visitor configData: "+format, append([]any{d, p.Name}, args...)...)
	}
	var raw rawVisitor
	cfg := wapper.Config{}
	if len(p.Visitor) > 0 {
		err := json.Unmarshal(p.Visitor, &raw)
		if err == nil {
			err = json.Unmarshal(p.Visitor, &cfg)
		}
		if err != nil {
			return nil, bad("%v", err)
		}
	}
	if present(raw.Password) {
		return nil, bad("%s", passwordErr(""))
	}
	if err := checkFileType(raw.FileType); err != nil {
		return nil, bad("%v", err)
	}
	where := fmt.Sprintf("property %q's visitor", p.Name)
	if raw.ClientID != nil {
		conn.set("clientID", strings.TrimSpace(*raw.ClientID), where)
	}
	if raw.Username != nil {
		conn.set("username", *raw.Username, where)
	}
	if raw.CleanSession != nil {
		conn.set("cleanSession", strconv.FormatBool(bool(*raw.CleanSession)), where)
	}
	if isSet(cfg, "keepAlive") {
		ka, err := cfg.Int("keepAlive", 0)
		if err == nil && (ka < 0 || ka > 65535) {
			err = fmt.Errorf("keepAlive %d is outside 0-65535 seconds", ka)
		}
		if err != nil {
			return nil, bad("%v", err)
		}
		conn.set("keepAlive", strconv.FormatInt(ka, 10), where)
	}

	pc := &propConfig{filter: c.topic, retain: bool(raw.Retain)}
	if t := strings.TrimSpace(raw.Topic); t != "" {
		if err := checkTopicFilter(t); err != nil {
			return nil, bad("topic: %v", err)
		}
		pc.filter, pc.own = t, t != c.topic
	}
	if pc.filter == "" {
		return nil, bad("no topic: set topic in the Device's protocol configData (the topic the device publishes its JSON state on) or in this visitor")
	}
	var err error
	if pc.qos, err = qosOf(cfg, c.qos); err != nil {
		return nil, bad("%v", err)
	}
	path := p.Name
	pc.defaultPath = raw.JSONPath == nil || strings.TrimSpace(*raw.JSONPath) == ""
	if !pc.defaultPath {
		path = *raw.JSONPath
	}
	if pc.path, err = parsePath(path); err != nil {
		return nil, bad("%v", err)
	}
	if !p.Writable() {
		return pc, nil
	}
	pc.command = strings.TrimSpace(raw.CommandTopic)
	if pc.command == "" && !pc.own {
		pc.command = c.commandTopic
	}
	if pc.command == "" {
		pc.command = defaultCommandTopic(pc.filter)
	}
	switch {
	case pc.command == "":
		return nil, bad("the property is %s but has no command topic: its topic %q has a wildcard, so set commandTopic (here or in the protocol configData)", p.AccessMode, pc.filter)
	case pc.path.hasIndex():
		return nil, bad("the property is %s but jsonPath %q goes through an array, which a command cannot set", p.AccessMode, pc.path.text)
	}
	if err := checkTopicName(pc.command); err != nil {
		return nil, bad("commandTopic: %v", err)
	}
	return pc, nil
}
