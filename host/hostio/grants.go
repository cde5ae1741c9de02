package hostio

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"strings"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/abi/grant"
)

// Grants are a plugin's parsed MapperPlugin grants. The zero value (and a
// nil *Grants) grants nothing.
type Grants struct {
	network []grant.Network
	// networkRaw holds the network grants as written, for denial messages.
	networkRaw []string
	serial     []string
	gpio       []string
	secrets    []string
	tls        []tlsGrant
	listen     []grant.Network
	listenRaw  []string
}

// tlsGrant is a parsed grant.TLS.
type tlsGrant struct {
	grant.TLS
	endpoint grant.Network
}

// ParseGrants checks and parses a plugin's grants (a MapperPlugin's
// spec.grants) into the table the sandbox checks every open against.
func ParseGrants(g grant.Set) (*Grants, error) {
	out := &Grants{}
	var errs []error
	for i, s := range g.Network {
		ng, err := grant.ParseNetwork(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("grants.network[%d] %q: %w", i, s, err))
			continue
		}
		out.network = append(out.network, ng)
		out.networkRaw = append(out.networkRaw, s)
	}
	for i, s := range g.Listen {
		lg, err := grant.ParseListen(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("grants.listen[%d] %q: %w", i, s, err))
			continue
		}
		out.listen = append(out.listen, lg)
		out.listenRaw = append(out.listenRaw, s)
	}
	for i, s := range g.Serial {
		if err := grant.ValidateSerial(s); err != nil {
			errs = append(errs, fmt.Errorf("grants.serial[%d] %q: %w", i, s, err))
			continue
		}
		out.serial = append(out.serial, s)
	}
	for i, s := range g.GPIO {
		if err := grant.ValidateGPIO(s); err != nil {
			errs = append(errs, fmt.Errorf("grants.gpio[%d] %q: %w", i, s, err))
			continue
		}
		out.gpio = append(out.gpio, s)
	}
	for i, s := range g.Secrets {
		if err := grant.ValidateSecret(s); err != nil {
			errs = append(errs, fmt.Errorf("grants.secrets[%d] %q: %w", i, s, err))
			continue
		}
		out.secrets = append(out.secrets, s)
	}
	for i, t := range g.TLS {
		if err := t.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("grants.tls[%d]: %w", i, err))
			continue
		}
		ep, _ := grant.ParseNetwork(t.Endpoint)
		out.tls = append(out.tls, tlsGrant{TLS: t, endpoint: ep})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// GrantKind says which kind of grant a grant string in MapperPlugin syntax
// is, for lists that do not sort them by kind (the dev.wapper.grants
// annotation, `wapper push --grant`): KindNetwork for a string with "://",
// or one that looks like a network address without its scheme ("tcp:...",
// "udp:...", "tls:...", "10.0.0.5:502", "[::1]:502", "plc.local:502"), so
// that the network parser says what is missing; KindSerial for an absolute
// path; KindSecret for "secret:NAME"; KindListen for "listen:udp://IP:PORT";
// KindGPIO for anything else (a line name or pattern, "GPIO17", "chip0:4").
func GrantKind(s string) string {
	switch {
	case strings.HasPrefix(s, "secret:"):
		return KindSecret
	case strings.HasPrefix(s, "listen:"):
		return KindListen
	case strings.Contains(s, "://"), strings.HasPrefix(s, "tcp:"), strings.HasPrefix(s, "udp:"), strings.HasPrefix(s, "tls:"), strings.HasPrefix(s, "["):
		return KindNetwork
	case strings.HasPrefix(s, "/"):
		return KindSerial
	}
	if host, _, ok := cutLast(s, ':'); ok {
		if _, err := netip.ParseAddr(host); err == nil {
			return KindNetwork
		}
		if _, err := netip.ParsePrefix(host); err == nil {
			return KindNetwork
		}
		if strings.Contains(host, ".") && !strings.ContainsAny(host, "*?[]") {
			return KindNetwork
		}
	}
	return KindGPIO
}

func cutLast(s string, sep byte) (before, after string, ok bool) {
	if i := strings.LastIndexByte(s, sep); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// GrantsFromList sorts grant strings by kind (see [GrantKind]) and checks
// each with the parser ParseGrants uses, so that a list is accepted exactly
// when the host would accept the same grants in a MapperPlugin. An error
// names every bad grant, its kind and what is wrong with it.
func GrantsFromList(list []string) (grant.Set, error) {
	var g grant.Set
	var errs []error
	for _, s := range list {
		kind := GrantKind(s)
		var err error
		switch kind {
		case KindNetwork:
			_, err = grant.ParseNetwork(s)
			g.Network = append(g.Network, s)
		case KindSerial:
			err = grant.ValidateSerial(s)
			g.Serial = append(g.Serial, s)
		case KindSecret:
			name := strings.TrimPrefix(s, "secret:")
			err = grant.ValidateSecret(name)
			g.Secrets = append(g.Secrets, name)
		case KindListen:
			addr := strings.TrimPrefix(s, "listen:")
			_, err = grant.ParseListen(addr)
			g.Listen = append(g.Listen, addr)
		default:
			err = grant.ValidateGPIO(s)
			g.GPIO = append(g.GPIO, s)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("grant %q (a %s grant): %w", s, kind, err))
		}
	}
	if len(errs) > 0 {
		return grant.Set{}, errors.Join(errs...)
	}
	if _, err := ParseGrants(g); err != nil {
		return grant.Set{}, err
	}
	return g, nil
}

// MustGrants is ParseGrants for literals in tests and examples; it panics
// on a bad grant.
func MustGrants(g grant.Set) *Grants {
	out, err := ParseGrants(g)
	if err != nil {
		panic(err)
	}
	return out
}

// Resource kinds, as they appear in a DeniedError and in the denial metric.
const (
	KindNetwork = "network"
	KindSerial  = "serial"
	KindGPIO    = "gpio"
	KindSecret  = "secrets"
	KindListen  = "listen"
)

// DeniedError is a resource refused by the grants. It unwraps to an
// *abi.Error with code abi.ErrDenied. Its text names the resource and the
// grants of its kind that did not cover it:
//
//	denied: tcp://10.0.0.5:502 is not in grants.network [tcp://127.0.0.1:1502]
type DeniedError struct {
	// Kind is KindNetwork, KindListen, KindSerial, KindGPIO or KindSecret.
	Kind string
	// Resource is what the plugin asked for ("tcp://10.0.0.5:502",
	// "/dev/ttyUSB0", "GPIO17").
	Resource string
	// Reason says why, when more than "not granted" is known (such as the
	// resolved address that no grant covers).
	Reason string
	// Granted are the plugin's grants of this kind, as written in the
	// MapperPlugin.
	Granted []string
}

// Error is "denied: " and [DeniedError.Detail].
func (e *DeniedError) Error() string { return "denied: " + e.Detail() }

// Detail says what was refused and which grants did not cover it (the
// text of Error without its "denied: " prefix).
func (e *DeniedError) Detail() string {
	field := "grants." + e.Kind
	list := GrantList(e.Granted)
	if len(e.Granted) == 0 {
		list = "(empty: the MapperPlugin grants no " + e.Kind + " resource)"
	}
	if e.Reason != "" {
		return fmt.Sprintf("%s: %s, which is not in %s %s", e.Resource, e.Reason, field, list)
	}
	return fmt.Sprintf("%s is not in %s %s", e.Resource, field, list)
}

// Unwrap gives the ABI error, so abi.CodeOf reports abi.ErrDenied.
func (e *DeniedError) Unwrap() error { return &abi.Error{Code: abi.ErrDenied, Message: e.Detail()} }

// Bounds of the grant list quoted in a denial.
const (
	maxListedGrants   = 8
	maxGrantListBytes = 256
)

// GrantList renders grants for a message as "[a, b]", clipped to a few
// entries and a few hundred bytes ("[a, b, … 7 more]").
func GrantList(grants []string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, g := range grants {
		if i == maxListedGrants || i > 0 && b.Len()+len(g) > maxGrantListBytes {
			fmt.Fprintf(&b, ", … %d more", len(grants)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		if len(g) > maxGrantListBytes {
			g = g[:maxGrantListBytes] + "…"
		}
		b.WriteString(g)
	}
	b.WriteByte(']')
	return b.String()
}

// Resolver looks up host names; *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// CheckNetwork checks a connection over scheme ("tcp" or "udp") to addr
// ("host:port") and returns the addresses to dial. An IP address must match
// a grant. A host name must match a grant as written, and then every address
// it resolves to must match one too, so that a name cannot reach an address
// that is not granted; the caller dials the returned addresses, not the
// name, so the check cannot be raced by DNS.
func (g *Grants) CheckNetwork(ctx context.Context, r Resolver, scheme, addr string) ([]netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, abi.Errorf(abi.ErrInvalid, "address %q: %v (want host:port)", addr, err)
	}
	pn, err := net.LookupPort(scheme, port)
	if err != nil || pn < 1 || pn > 65535 {
		return nil, abi.Errorf(abi.ErrInvalid, "address %q: bad port %q", addr, port)
	}
	res := scheme + "://" + addr
	if !g.allowsNet(scheme, host, pn) {
		return nil, g.denied(KindNetwork, res, "")
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return nil, abi.Errorf(abi.ErrInvalid, "address %q: zoned IPv6 addresses are not supported", addr)
		}
		return []netip.AddrPort{netip.AddrPortFrom(a.Unmap(), uint16(pn))}, nil
	}
	if r == nil {
		r = net.DefaultResolver
	}
	family := "ip"
	addrs, err := r.LookupNetIP(ctx, family, host)
	if err != nil {
		return nil, dnsError(host, err)
	}
	if len(addrs) == 0 {
		return nil, abi.Errorf(abi.ErrUnavailable, "DNS lookup of %s failed: no addresses", host)
	}
	out := make([]netip.AddrPort, 0, len(addrs))
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if !g.allowsNet(scheme, a.String(), pn) {
			return nil, g.denied(KindNetwork, res, fmt.Sprintf("%s resolves to %s", host, a))
		}
		out = append(out, netip.AddrPortFrom(a, uint16(pn)))
	}
	return out, nil
}

// denied builds the refusal of a resource of kind, quoting the grants of
// that kind.
func (g *Grants) denied(kind, resource, reason string) *DeniedError {
	e := &DeniedError{Kind: kind, Resource: resource, Reason: reason}
	if g != nil {
		switch kind {
		case KindNetwork:
			e.Granted = g.networkRaw
		case KindSerial:
			e.Granted = g.serial
		case KindGPIO:
			e.Granted = g.gpio
		case KindSecret:
			e.Granted = g.secrets
		case KindListen:
			e.Granted = g.listenRaw
		}
	}
	return e
}

// dnsError turns a failed lookup into an ABI error that says so: a timeout
// is abi.ErrTimeout, anything else abi.ErrUnavailable.
func dnsError(host string, err error) error {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		why := dnsErr.Err
		switch {
		case dnsErr.IsTimeout:
			return abi.Errorf(abi.ErrTimeout, "DNS lookup of %s timed out", host)
		case dnsErr.IsNotFound:
			why = "no such host"
		}
		if dnsErr.Server != "" {
			why += " (DNS server " + dnsErr.Server + ")"
		}
		return abi.Errorf(abi.ErrUnavailable, "DNS lookup of %s failed: %s", host, why)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return abi.Errorf(abi.ErrTimeout, "DNS lookup of %s timed out", host)
	}
	return abi.Errorf(abi.ErrUnavailable, "DNS lookup of %s failed: %v", host, err)
}

func (g *Grants) allowsNet(scheme, host string, port int) bool {
	if g == nil {
		return false
	}
	for _, ng := range g.network {
		if ng.Allows(scheme, host, port) {
			return true
		}
	}
	return false
}

// CheckSerial checks a serial device path and returns it cleaned. Relative
// paths are refused.
func (g *Grants) CheckSerial(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", abi.Errorf(abi.ErrInvalid, "serial path %q is not absolute", p)
	}
	clean := path.Clean(p)
	if g != nil {
		for _, pat := range g.serial {
			if grant.MatchGlob(pat, clean) {
				return clean, nil
			}
		}
	}
	return "", g.denied(KindSerial, clean, "")
}

// CheckGPIO checks a GPIO line name.
func (g *Grants) CheckGPIO(name string) error {
	if name == "" {
		return abi.Errorf(abi.ErrInvalid, "empty GPIO line name")
	}
	if g != nil {
		for _, pat := range g.gpio {
			if grant.MatchGlob(pat, name) {
				return nil
			}
		}
	}
	return g.denied(KindGPIO, name, "")
}
