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
	"wapper.dev/wapper/cloud/apis/mappers/v1alpha1"
)

// Grants are a plugin's parsed MapperPlugin grants. The zero value (and a
// nil *Grants) grants nothing.
type Grants struct {
	network []v1alpha1.NetworkGrant
	serial  []string
	gpio    []string
}

// ParseGrants checks and parses a MapperPlugin's spec.grants.
func ParseGrants(g v1alpha1.Grants) (*Grants, error) {
	out := &Grants{}
	var errs []error
	for i, s := range g.Network {
		ng, err := v1alpha1.ParseNetworkGrant(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("grants.network[%d] %q: %w", i, s, err))
			continue
		}
		out.network = append(out.network, ng)
	}
	for i, s := range g.Serial {
		if err := v1alpha1.ValidateSerialGrant(s); err != nil {
			errs = append(errs, fmt.Errorf("grants.serial[%d] %q: %w", i, s, err))
			continue
		}
		out.serial = append(out.serial, s)
	}
	for i, s := range g.GPIO {
		if err := v1alpha1.ValidateGPIOGrant(s); err != nil {
			errs = append(errs, fmt.Errorf("grants.gpio[%d] %q: %w", i, s, err))
			continue
		}
		out.gpio = append(out.gpio, s)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// MustGrants is ParseGrants for literals in tests and examples; it panics
// on a bad grant.
func MustGrants(g v1alpha1.Grants) *Grants {
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
)

// DeniedError is a resource refused by the grants. It unwraps to an
// *abi.Error with code abi.ErrDenied.
type DeniedError struct {
	// Kind is KindNetwork, KindSerial or KindGPIO.
	Kind string
	// Resource is what the plugin asked for ("tcp://10.0.0.1:502",
	// "/dev/ttyUSB0", "GPIO17").
	Resource string
	// Reason says why, when more than "not granted" is known (such as the
	// resolved address that no grant covers).
	Reason string
}

func (e *DeniedError) Error() string {
	msg := fmt.Sprintf("%s %s is not granted to the plugin", e.Kind, e.Resource)
	if e.Reason != "" {
		msg += " (" + e.Reason + ")"
	}
	return msg + "; add it to the MapperPlugin's spec.grants." + e.Kind
}

// Unwrap gives the ABI error, so abi.CodeOf reports abi.ErrDenied.
func (e *DeniedError) Unwrap() error { return &abi.Error{Code: abi.ErrDenied, Message: e.Error()} }

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
		return nil, &DeniedError{Kind: KindNetwork, Resource: res}
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
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsTimeout {
			return nil, abi.Errorf(abi.ErrTimeout, "resolve %s: %v", host, err)
		}
		return nil, abi.Errorf(abi.ErrUnavailable, "resolve %s: %v", host, err)
	}
	if len(addrs) == 0 {
		return nil, abi.Errorf(abi.ErrUnavailable, "resolve %s: no addresses", host)
	}
	out := make([]netip.AddrPort, 0, len(addrs))
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if !g.allowsNet(scheme, a.String(), pn) {
			return nil, &DeniedError{Kind: KindNetwork, Resource: res,
				Reason: fmt.Sprintf("%s resolves to %s, which no grant covers", host, a)}
		}
		out = append(out, netip.AddrPortFrom(a, uint16(pn)))
	}
	return out, nil
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
			if v1alpha1.MatchGlob(pat, clean) {
				return clean, nil
			}
		}
	}
	return "", &DeniedError{Kind: KindSerial, Resource: clean}
}

// CheckGPIO checks a GPIO line name.
func (g *Grants) CheckGPIO(name string) error {
	if name == "" {
		return abi.Errorf(abi.ErrInvalid, "empty GPIO line name")
	}
	if g != nil {
		for _, pat := range g.gpio {
			if v1alpha1.MatchGlob(pat, name) {
				return nil
			}
		}
	}
	return &DeniedError{Kind: KindGPIO, Resource: name}
}
