package hostio

import (
	"net"
	"os"
	"syscall"
	"testing"

	"wapper.dev/wapper/abi"
)

// TestClassifyNamesTheCause: errors the tests cannot provoke on a host
// without changing its routes, as the dialer returns them.
func TestClassifyNamesTheCause(t *testing.T) {
	dial := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
	}
	for _, c := range []struct {
		err  error
		code abi.Code
		want string
	}{
		{dial(syscall.ECONNREFUSED), abi.ErrUnavailable, "connect tcp://10.0.0.5:502: connection refused"},
		{dial(syscall.EHOSTUNREACH), abi.ErrUnavailable, "connect tcp://10.0.0.5:502: no route to host (host unreachable)"},
		{dial(syscall.ENETUNREACH), abi.ErrUnavailable, "connect tcp://10.0.0.5:502: network unreachable (no route to the host's network)"},
		{dial(syscall.ETIMEDOUT), abi.ErrTimeout, "connect tcp://10.0.0.5:502: connection timed out"},
		{&net.DNSError{Err: "server misbehaving", Name: "plc.plant", Server: "10.0.0.53:53"}, abi.ErrUnavailable,
			"connect tcp://10.0.0.5:502: DNS lookup of plc.plant failed: server misbehaving (DNS server 10.0.0.53:53)"},
		{&net.DNSError{Err: "i/o timeout", Name: "plc.plant", IsTimeout: true}, abi.ErrTimeout, "connect tcp://10.0.0.5:502: DNS lookup of plc.plant timed out"},
	} {
		err := ioError("connect tcp://10.0.0.5:502", c.err)
		if abi.CodeOf(err) != c.code || abi.MessageOf(err) != c.want {
			t.Errorf("%v: %q (code %v), want %q (%v)", c.err, abi.MessageOf(err), abi.CodeOf(err), c.want, c.code)
		}
	}
}
