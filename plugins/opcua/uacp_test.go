package main

import (
	"encoding/binary"
	"encoding/hex"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestHelloMessage(t *testing.T) {
	got := hex.EncodeToString(helloMessage("opc.tcp://h:4840"))
	want := "48454c46" + "30000000" + // HELF, 48 bytes
		"00000000" + "00000100" + "00000100" + "00004000" + "00000000" + // version, buffers, 4 MiB, chunks
		"10000000" + hex.EncodeToString([]byte("opc.tcp://h:4840"))
	if got != want {
		t.Fatalf("hello\n got %s\nwant %s", got, want)
	}
}

func ack(recv, send, msg, chunks uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0)
	for _, v := range []uint32{recv, send, msg, chunks} {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return b
}

func TestParseAck(t *testing.T) {
	lim, err := parseAck(ack(1<<20, 8192, 1<<24, 0))
	if err != nil {
		t.Fatal(err)
	}
	// The server's receive buffer caps what the plugin sends, at most
	// what the plugin offered; its send buffer is the chunk it sends.
	if lim.sendChunk != ourBufferSize || lim.recvChunk != 8192 || lim.maxMessage != 1<<24 {
		t.Fatalf("limits %+v", lim)
	}
	for _, b := range [][]byte{ack(4096, 8192, 0, 0), ack(8192, 100, 0, 0), ack(8192, 8192, 0, 0)[:12]} {
		if _, err := parseAck(b); err == nil {
			t.Errorf("ack % x accepted", b)
		}
	}
}

func TestParseError(t *testing.T) {
	b := binary.LittleEndian.AppendUint32(nil, 0x80AE0000) // BadConnectionClosed
	b = appendString(b, "no more connections")
	err := parseError(b)
	if err == nil || !strings.Contains(err.Error(), "BadConnectionClosed") || !strings.Contains(err.Error(), "no more connections") {
		t.Fatalf("parseError: %v", err)
	}
}

// slowConn hands out its data a few bytes a read, with a timeout
// between the pieces, as a poll with a short deadline sees it.
type slowConn struct {
	stubConn
	data  []byte
	step  int
	tick  bool
	reads int
}

func (c *slowConn) Read(p []byte) (int, error) {
	c.reads++
	c.tick = !c.tick
	if c.tick {
		return 0, errTimeout{}
	}
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.data[:min(c.step, len(c.data))])
	c.data = c.data[n:]
	return n, nil
}

type errTimeout struct{}

func (errTimeout) Error() string   { return "i/o timeout" }
func (errTimeout) Timeout() bool   { return true }
func (errTimeout) Temporary() bool { return true }

func TestReadChunkResumes(t *testing.T) {
	msg := append([]byte("MSGF\x14\x00\x00\x00"), []byte("0123456789ab")...)
	next := append([]byte("MSGF\x0c\x00\x00\x00"), []byte("wxyz")...)
	c := &slowConn{data: append(append([]byte{}, msg...), next...), step: 3}
	tr := newTransport(c)
	var got []string
	for range 100 {
		typ, ch, err := tr.readChunk(time.Now().Add(time.Second))
		if err == io.EOF {
			break
		}
		if err != nil {
			continue // a timeout: the next read goes on
		}
		got = append(got, typ+" "+string(ch[hdrLen:]))
	}
	if strings.Join(got, ",") != "MSGF 0123456789ab,MSGF wxyz" {
		t.Fatalf("chunks %q", got)
	}
}

func TestReadChunkRefusesOversize(t *testing.T) {
	c := &slowConn{data: []byte("MSGF\xff\xff\xff\x7f"), step: 100}
	tr := newTransport(c)
	tr.lim.recvChunk = minBufferSize
	var err error
	for range 4 {
		if _, _, err = tr.readChunk(time.Now().Add(time.Second)); err != nil && !isTimeoutErr(err) {
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), "malformed chunk header") {
		t.Fatalf("oversize chunk: %v", err)
	}
}

func isTimeoutErr(err error) bool {
	_, ok := err.(errTimeout)
	return ok
}

// stubConn is a net.Conn that writes into the void.
type stubConn struct{}

func (stubConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (stubConn) Write(p []byte) (int, error)      { return len(p), nil }
func (stubConn) Close() error                     { return nil }
func (stubConn) LocalAddr() net.Addr              { return nil }
func (stubConn) RemoteAddr() net.Addr             { return nil }
func (stubConn) SetDeadline(time.Time) error      { return nil }
func (stubConn) SetReadDeadline(time.Time) error  { return nil }
func (stubConn) SetWriteDeadline(time.Time) error { return nil }
