// Package grant parses and matches the resource grants of ABI §6.5: the
// network, serial, GPIO and secret entries and the TLS settings a
// MapperPlugin gives its plugin. The
// host's sandbox (host/hostio) enforces them and the MapperPlugin API
// validates them with the same parser.
package grant

import (
	"fmt"
	"net"
	"net/netip"
	"path"
	"strconv"
	"strings"
)

// Network is one parsed network grant.
//
// The syntax is SCHEME://HOST:PORT where
//   - SCHEME is "tcp", "udp" or "tls" (a TLS stream over TCP);
//   - HOST is an IP address ("[::1]" for IPv6), a CIDR prefix
//     ("10.0.0.0/8", "[fd00::/8]"), a DNS name, a DNS name whose first label
//     is "*" ("*.plant.local", any one or more labels), or "*" (any host);
//   - PORT is a number, a range "502-510", or "*" (any port).
type Network struct {
	// Scheme is "tcp", "udp" or "tls".
	Scheme string
	// Any is true when HOST is "*".
	Any bool
	// Prefix is set when HOST is an IP address (as a full-length prefix)
	// or a CIDR prefix.
	Prefix netip.Prefix
	// Name is set when HOST is a DNS name, lower-cased; it may start with "*.".
	Name string
	// PortMin and PortMax bound the allowed ports, inclusive (1..65535).
	PortMin, PortMax uint16
}

// ParseNetwork parses one network grant.
func ParseNetwork(s string) (Network, error) {
	var g Network
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return g, fmt.Errorf("want SCHEME://HOST:PORT, such as tcp://127.0.0.1:502")
	}
	switch scheme {
	case "tcp", "udp", "tls":
		g.Scheme = scheme
	default:
		return g, fmt.Errorf("scheme %q is not supported; use tcp, udp or tls", scheme)
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return g, fmt.Errorf("missing :PORT (a number, a range such as 502-510, or *)")
	}
	host, port := rest[:i], rest[i+1:]
	if err := g.parsePort(port); err != nil {
		return g, err
	}
	if err := g.parseHost(host); err != nil {
		return g, err
	}
	return g, nil
}

func (g *Network) parsePort(port string) error {
	if port == "*" {
		g.PortMin, g.PortMax = 1, 65535
		return nil
	}
	lo, hi, isRange := strings.Cut(port, "-")
	if !isRange {
		hi = lo
	}
	a, errA := parsePortNumber(lo)
	b, errB := parsePortNumber(hi)
	if errA != nil || errB != nil {
		return fmt.Errorf("port %q: want a number 1-65535, a range such as 502-510, or *", port)
	}
	if a > b {
		return fmt.Errorf("port range %q is reversed", port)
	}
	g.PortMin, g.PortMax = a, b
	return nil
}

func parsePortNumber(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 || s[0] == '+' {
		return 0, fmt.Errorf("bad port")
	}
	return uint16(n), nil
}

func (g *Network) parseHost(host string) error {
	switch {
	case host == "":
		return fmt.Errorf("missing HOST (an IP, a CIDR prefix, a DNS name, or *)")
	case host == "*":
		g.Any = true
		return nil
	case strings.HasPrefix(host, "["):
		if !strings.HasSuffix(host, "]") {
			return fmt.Errorf("host %q: unclosed [", host)
		}
		inner := host[1 : len(host)-1]
		if p, err := parseAddrOrPrefix(inner); err == nil && p.Addr().Is6() && !p.Addr().Is4In6() {
			g.Prefix = p
			return nil
		}
		return fmt.Errorf("host %q: want an IPv6 address or prefix inside [ ]", host)
	}
	if p, err := parseAddrOrPrefix(host); err == nil {
		if p.Addr().Is6() {
			return fmt.Errorf("host %q: write IPv6 addresses in brackets, such as [::1]", host)
		}
		g.Prefix = p
		return nil
	}
	name := strings.ToLower(host)
	check := strings.TrimPrefix(name, "*.")
	if !isDNSName(check) {
		return fmt.Errorf("host %q: not an IP address, CIDR prefix, DNS name or *", host)
	}
	g.Name = name
	return nil
}

func parseAddrOrPrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, err
		}
		if p != p.Masked() {
			return p, fmt.Errorf("prefix %s has host bits set", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("bad address")
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// String returns the grant in its canonical form.
func (g Network) String() string {
	host := "*"
	switch {
	case g.Prefix.IsValid():
		if g.Prefix.IsSingleIP() {
			host = g.Prefix.Addr().String()
		} else {
			host = g.Prefix.String()
		}
		if g.Prefix.Addr().Is6() {
			host = "[" + host + "]"
		}
	case g.Name != "":
		host = g.Name
	}
	port := strconv.Itoa(int(g.PortMin))
	switch {
	case g.PortMin == 1 && g.PortMax == 65535:
		port = "*"
	case g.PortMin != g.PortMax:
		port += "-" + strconv.Itoa(int(g.PortMax))
	}
	return g.Scheme + "://" + host + ":" + port
}

// Allows reports whether the grant covers a connection over scheme ("tcp",
// "udp" or "tls") to host and port. host is an IP address or a DNS name as the
// plugin asked for it: a name matches only name grants (and "*"), so a
// host that resolves names itself must check the addresses too.
func (g Network) Allows(scheme, host string, port int) bool {
	if scheme != g.Scheme || port < int(g.PortMin) || port > int(g.PortMax) {
		return false
	}
	if g.Any {
		return true
	}
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return g.Prefix.IsValid() && g.Prefix.Contains(a.Unmap().WithZone(""))
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if rest, ok := strings.CutPrefix(g.Name, "*."); ok {
		return strings.HasSuffix(name, "."+rest)
	}
	return g.Name != "" && name == g.Name
}

// AllowsAddr is Allows for a "host:port" address, as given to net.Dial.
func (g Network) AllowsAddr(scheme, addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && g.Allows(scheme, host, n)
}

// ValidateSerial checks one Grants.Serial entry: an absolute, clean
// path pattern in shell glob syntax (path.Match).
func ValidateSerial(s string) error {
	if !strings.HasPrefix(s, "/") {
		return fmt.Errorf("want an absolute device path such as /dev/ttyUSB0 or /dev/ttyUSB*")
	}
	if path.Clean(s) != s {
		return fmt.Errorf("path is not clean; write %s", path.Clean(s))
	}
	if _, err := path.Match(s, ""); err != nil {
		return fmt.Errorf("bad glob pattern: %v", err)
	}
	return nil
}

// ValidateGPIO checks one Grants.GPIO entry: a line name or
// "CHIP:LINE" pattern in shell glob syntax (path.Match), made of letters,
// digits and _ - . : / plus the glob characters * ? [ ] !.
func ValidateGPIO(s string) error {
	if s == "" {
		return fmt.Errorf("empty line name")
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_-.:/*?[]!^", c)) {
			return fmt.Errorf("character %q is not allowed in a GPIO line pattern", c)
		}
	}
	if _, err := path.Match(s, ""); err != nil {
		return fmt.Errorf("bad glob pattern: %v", err)
	}
	return nil
}

// MatchGlob reports whether name matches a serial or GPIO grant pattern.
// A malformed pattern matches nothing.
func MatchGlob(pattern, name string) bool {
	ok, err := path.Match(pattern, name)
	return err == nil && ok
}

// ParseListen parses one Grants.Listen entry: a udp://IP:PORT pattern in
// network grant syntax, with an IP address, a prefix or * (a local
// address, never a name), naming what a datagram socket may bind.
func ParseListen(s string) (Network, error) {
	g, err := ParseNetwork(s)
	if err != nil {
		return g, err
	}
	if g.Scheme != "udp" {
		return g, fmt.Errorf("want a udp:// pattern (only datagram sockets are bound)")
	}
	if g.Name != "" {
		return g, fmt.Errorf("want an IP address, a prefix or * (a local address, not a name)")
	}
	return g, nil
}

// ValidateSecret checks one Grants.Secrets entry: a secret name pattern
// in shell glob syntax (path.Match) over the characters of Kubernetes
// object names (lower-case letters, digits, '-' and '.').
func ValidateSecret(s string) error {
	if s == "" {
		return fmt.Errorf("empty secret name")
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.ContainsRune("-.*?[]!^", c)) {
			return fmt.Errorf("character %q is not allowed in a secret name pattern (want lower-case letters, digits, '-', '.' and glob characters)", c)
		}
	}
	if _, err := path.Match(s, ""); err != nil {
		return fmt.Errorf("bad glob pattern: %v", err)
	}
	return nil
}

// ValidSecretName reports whether name can name a secret: a Kubernetes
// object name (DNS subdomain: lower-case letters, digits, '-' and '.', at
// most 253 bytes, starting and ending with a letter or digit).
func ValidSecretName(name string) bool {
	if name == "" || len(name) > 253 || strings.Contains(name, "..") {
		return false
	}
	for i, c := range name {
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (c != '-' && c != '.' || i == 0 || i == len(name)-1) {
			return false
		}
	}
	return true
}

// ValidSecretKey reports whether key can be a key of a secret, as
// Kubernetes allows: letters, digits, '-', '_' and '.', at most 253 bytes,
// and not "." or "..".
func ValidSecretKey(key string) bool {
	if key == "" || len(key) > 253 || key == "." || key == ".." {
		return false
	}
	for _, c := range key {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// TLS says how the host makes the TLS connections of the "tls" network
// grants that Endpoint covers. The secrets it names are read by the host
// and never reach the plugin, whether or not Secrets grants them.
type TLS struct {
	// Endpoint is a "tls://HOST:PORT" pattern in network grant syntax.
	Endpoint string
	// CASecret names a secret whose key "ca.crt" holds the PEM
	// certificates the server's chain must lead to; empty: the host's
	// system pool.
	CASecret string
	// ClientSecret names a secret of Kubernetes type kubernetes.io/tls
	// (keys "tls.crt" and "tls.key") that the host presents when the
	// server asks for a client certificate; empty: none.
	ClientSecret string
	// ServerName is the name the server's certificate must carry, and
	// the name sent as SNI; empty: the host the plugin dials, as written.
	ServerName string
}

// Validate checks the entry's syntax.
func (t TLS) Validate() error {
	g, err := ParseNetwork(t.Endpoint)
	if err != nil {
		return fmt.Errorf("endpoint %q: %w", t.Endpoint, err)
	}
	if g.Scheme != "tls" {
		return fmt.Errorf("endpoint %q: want a tls:// pattern", t.Endpoint)
	}
	for field, name := range map[string]string{"caSecret": t.CASecret, "clientSecret": t.ClientSecret} {
		if name != "" && !ValidSecretName(name) {
			return fmt.Errorf("%s %q is not a secret name", field, name)
		}
	}
	if t.ServerName != "" && !isDNSName(strings.ToLower(t.ServerName)) {
		if _, err := netip.ParseAddr(t.ServerName); err != nil {
			return fmt.Errorf("serverName %q is neither a DNS name nor an IP address", t.ServerName)
		}
	}
	return nil
}

// Set is a plugin's grants by kind, as a MapperPlugin's spec.grants lists
// them: network entries, local addresses datagram sockets may bind, serial
// path globs, GPIO line globs, secret name globs, and the settings of TLS
// connections.
type Set struct {
	Network []string
	Listen  []string
	Serial  []string
	GPIO    []string
	Secrets []string
	TLS     []TLS
}
