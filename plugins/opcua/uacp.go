package main

// OPC UA Connection Protocol (UACP, OPC 10000-6 §7.1): the Hello and
// Acknowledge that open a connection, Error messages, and the reading of
// whole message chunks from the byte stream. The chunk reader keeps what it
// has read across calls, so a read that times out in the middle of a chunk
// (a short poll) loses nothing: the next read goes on where it stopped.

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	wapper "wapper.dev/wapper/sdk-go"
)

const (
	// hdrLen is the length of a message header: type (3), chunk type (1),
	// size (4).
	hdrLen = 8
	// ourBufferSize is the largest chunk the plugin receives and sends
	// (what it offers in the Hello; the server may lower the sending side).
	ourBufferSize = 1 << 16
	// minBufferSize is the smallest buffer OPC UA allows.
	minBufferSize = 8192
	// maxMessageSize bounds a whole response, all its chunks together.
	maxMessageSize = 4 << 20
)

// transportLimits are what the Acknowledge settled.
type transportLimits struct {
	// sendChunk is the largest chunk the server receives.
	sendChunk uint32
	// recvChunk is the largest chunk the server sends.
	recvChunk uint32
	// maxMessage is the largest message the server takes (0: no limit).
	maxMessage uint32
	// maxChunks is how many chunks a message to the server may have (0:
	// no limit).
	maxChunks uint32
}

// transport is a connection to an OPC UA server that reads whole chunks.
type transport struct {
	conn net.Conn
	lim  transportLimits
	buf  []byte
	r, w int // unread bytes are buf[r:w]
}

// initialBuffer is the read buffer a connection starts with; it grows to
// the largest chunk the server sends, so that a device whose answers are
// small keeps a small buffer.
const initialBuffer = 16 << 10

func newTransport(conn net.Conn) *transport {
	return &transport{conn: conn, buf: make([]byte, initialBuffer)}
}

// helloMessage encodes a Hello for endpoint.
func helloMessage(endpoint string) []byte {
	b := make([]byte, hdrLen, hdrLen+24+len(endpoint))
	copy(b, "HELF")
	b = binary.LittleEndian.AppendUint32(b, 0) // protocol version
	b = binary.LittleEndian.AppendUint32(b, ourBufferSize)
	b = binary.LittleEndian.AppendUint32(b, ourBufferSize)
	b = binary.LittleEndian.AppendUint32(b, maxMessageSize)
	b = binary.LittleEndian.AppendUint32(b, 0) // chunk count: no limit
	b = appendString(b, endpoint)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
	return b
}

// parseAck reads an Acknowledge's body (after the header).
func parseAck(body []byte) (transportLimits, error) {
	if len(body) < 20 {
		return transportLimits{}, fmt.Errorf("acknowledge of %d bytes, want 20", len(body))
	}
	u := func(i int) uint32 { return binary.LittleEndian.Uint32(body[4*i:]) }
	lim := transportLimits{sendChunk: u(1), recvChunk: u(2), maxMessage: u(3), maxChunks: u(4)}
	// The server's receive buffer is our send limit, its send buffer the
	// chunks we get: both at least 8192, and never more than we offered.
	switch {
	case lim.sendChunk < minBufferSize:
		return lim, fmt.Errorf("server receive buffer of %d bytes is below the minimum %d", lim.sendChunk, minBufferSize)
	case lim.recvChunk < minBufferSize:
		return lim, fmt.Errorf("server send buffer of %d bytes is below the minimum %d", lim.recvChunk, minBufferSize)
	}
	lim.sendChunk = min(lim.sendChunk, ourBufferSize)
	lim.recvChunk = min(lim.recvChunk, ourBufferSize)
	return lim, nil
}

// parseError reads an Error message's body: a status code and a reason.
func parseError(body []byte) error {
	if len(body) < 4 {
		return fmt.Errorf("malformed error message from the server")
	}
	code := statusError(binary.LittleEndian.Uint32(body))
	r := body[4:]
	if reason, _, ok := readString(r); ok && reason != "" {
		return fmt.Errorf("%v: %s", code, reason)
	}
	return code
}

// hello sends the Hello and waits for the Acknowledge.
func (t *transport) hello(endpoint string, deadline time.Time) error {
	t.conn.SetDeadline(deadline)
	if _, err := t.conn.Write(helloMessage(endpoint)); err != nil {
		return err
	}
	typ, chunk, err := t.readChunk(deadline)
	if err != nil {
		return err
	}
	body := chunk[hdrLen:]
	switch typ {
	case "ACKF":
		t.lim, err = parseAck(body)
		if err != nil {
			return wapper.Errorf(wapper.ErrIO, "%v", err)
		}
		return nil
	case "ERRF":
		return wapper.Errorf(wapper.ErrDeviceFailed, "server refused the connection: %v", parseError(body))
	}
	return wapper.Errorf(wapper.ErrIO, "server answered the Hello with %q", typ)
}

// fill reads until at least n bytes are buffered.
func (t *transport) fill(n int, deadline time.Time) error {
	if t.w-t.r >= n {
		return nil
	}
	if t.r > 0 {
		t.w = copy(t.buf, t.buf[t.r:t.w])
		t.r = 0
	}
	if n > len(t.buf) {
		nb := make([]byte, max(n, min(2*len(t.buf), ourBufferSize)))
		t.w = copy(nb, t.buf[:t.w])
		t.buf = nb
	}
	t.conn.SetReadDeadline(deadline)
	for t.w < n {
		m, err := t.conn.Read(t.buf[t.w:])
		t.w += m
		if err != nil && t.w < n {
			if err == io.EOF && t.w > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// readChunk reads one whole chunk: its type and chunk flag ("MSGF",
// "OPNF", "ACKF", "MSGC"...) and its bytes, the 8-byte header included.
// The bytes are valid until the next call. A timeout keeps what was read.
func (t *transport) readChunk(deadline time.Time) (string, []byte, error) {
	if err := t.fill(hdrLen, deadline); err != nil {
		return "", nil, err
	}
	h := t.buf[t.r : t.r+hdrLen]
	typ := string(h[:4])
	size := binary.LittleEndian.Uint32(h[4:])
	limit := uint32(ourBufferSize)
	if t.lim.recvChunk != 0 {
		limit = t.lim.recvChunk
	}
	if size < hdrLen || size > limit {
		return "", nil, wapper.Errorf(wapper.ErrIO, "malformed chunk header % x: size %d (limit %d)", h, size, limit)
	}
	if err := t.fill(int(size), deadline); err != nil {
		return "", nil, err
	}
	chunk := t.buf[t.r : t.r+int(size)]
	t.r += int(size)
	return typ, chunk, nil
}

// buffered reports whether a whole or partial chunk is waiting.
func (t *transport) buffered() bool { return t.w > t.r }

func (t *transport) write(b []byte, deadline time.Time) error {
	t.conn.SetWriteDeadline(deadline)
	_, err := t.conn.Write(b)
	return err
}

func (t *transport) close() { t.conn.Close() }

// appendString appends an OPC UA String (or ByteString): an int32 length,
// -1 for null, and the bytes.
func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// appendBytes appends a ByteString; nil is the null ByteString.
func appendBytes(b, v []byte) []byte {
	if v == nil {
		return binary.LittleEndian.AppendUint32(b, 0xffffffff)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

// readBytes reads a ByteString from b and returns it (nil for null) and
// the rest of b.
func readBytes(b []byte) ([]byte, []byte, bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	n := binary.LittleEndian.Uint32(b)
	b = b[4:]
	if n == 0xffffffff {
		return nil, b, true
	}
	if uint64(n) > uint64(len(b)) {
		return nil, nil, false
	}
	return b[:n], b[n:], true
}

func readString(b []byte) (string, []byte, bool) {
	v, rest, ok := readBytes(b)
	return string(v), rest, ok
}
