package hostio_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"wapper.dev/wapper/abi"
	"wapper.dev/wapper/abi/grant"
	"wapper.dev/wapper/host/hostio"
)

// fullListener returns the address of a listening socket that never
// accepts and whose accept queue is full, so that a new connection gets no
// answer at all: its SYN is dropped.
func fullListener(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	// Fill the queue: connect until a connection is no longer answered.
	for range 64 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return addr
			}
			t.Fatalf("filling the accept queue: %v", err)
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatal("the accept queue never filled")
	return ""
}

// TestConnectTimeoutSaysSo: a device that never answers the connection is
// a timeout whose text says so.
func TestConnectTimeoutSaysSo(t *testing.T) {
	addr := fullListener(t)
	tb := hostio.NewTable(hostio.MustGrants(grant.Set{Network: []string{"tcp://127.0.0.1:*"}}))
	defer tb.CloseAll()
	_, err := tb.Dial(context.Background(), abi.SockTCP, addr, 100*time.Millisecond)
	if want := "connect tcp://" + addr + ": timed out"; code(err) != abi.ErrTimeout || !strings.HasPrefix(abi.MessageOf(err), want) {
		t.Fatalf("connect to a listener that never answers: %v (code %v), want timeout starting %q", err, code(err), want)
	}
}
