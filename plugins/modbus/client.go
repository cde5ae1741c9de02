package main

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"time"

	wapper "wapper.dev/wapper/sdk-go"
)

// link is an open connection to a Modbus device: Modbus TCP over a socket
// or Modbus RTU over a serial port.
type link interface {
	// roundTrip sends a request PDU and returns the response PDU.
	roundTrip(pdu []byte, deadline time.Time) ([]byte, error)
	close()
}

// client talks to one Modbus device. It opens its link lazily, and closes
// it after any transport error so that the next request reopens it.
type client struct {
	cfg  *protocolConfig
	link link
	// lastErr is the last transport error, for the device state.
	lastErr error
	ok      bool
}

// do sends a request and returns the validated data of the response. A
// request on a link that was already open is retried once on a fresh link
// when the old one turns out to be closed.
func (c *client) do(pdu []byte) ([]byte, error) {
	deadline := time.Now().Add(c.cfg.timeout)
	fresh := false
	if c.link == nil {
		if err := c.open(deadline); err != nil {
			return nil, c.fail(err)
		}
		fresh = true
	}
	resp, err := c.link.roundTrip(pdu, deadline)
	if err != nil && !fresh && wapper.IsClosed(err) && time.Now().Before(deadline) {
		c.drop()
		if err := c.open(deadline); err != nil {
			return nil, c.fail(err)
		}
		resp, err = c.link.roundTrip(pdu, deadline)
	}
	if err != nil {
		c.drop()
		return nil, c.fail(err)
	}
	data, err := checkResponse(pdu, resp)
	if err != nil {
		var ex *Exception
		if errors.As(err, &ex) {
			c.ok, c.lastErr = true, nil // the device answered
			return nil, wapper.Errorf(wapper.ErrDeviceFailed, "slave %d: %v", c.cfg.slave, ex)
		}
		c.drop()
		return nil, c.fail(wapper.Errorf(wapper.ErrIO, "%s: %v", c.cfg.target(), err))
	}
	c.ok, c.lastErr = true, nil
	return data, nil
}

func (c *client) fail(err error) error {
	c.ok, c.lastErr = false, err
	return err
}

func (c *client) open(deadline time.Time) error {
	if c.cfg.serialPort != "" {
		p, err := wapper.OpenSerial(c.cfg.serialPort, wapper.SerialConfig{
			BaudRate: c.cfg.baudRate, DataBits: c.cfg.dataBits, Parity: c.cfg.parity,
			StopBits: c.cfg.stopBits, Timeout: time.Until(deadline),
		})
		if err != nil {
			return err
		}
		c.link = &rtuLink{port: p, slave: c.cfg.slave}
		return nil
	}
	network := "tcp"
	if c.cfg.tls {
		network = "tls"
	}
	conn, err := wapper.Dial(network, c.cfg.target(), time.Until(deadline))
	if err != nil {
		return err
	}
	c.link = &tcpLink{conn: conn, unit: c.cfg.slave}
	return nil
}

func (c *client) drop() {
	if c.link != nil {
		c.link.close()
		c.link = nil
	}
}

// tcpLink is Modbus TCP: each PDU is framed with an MBAP header whose
// transaction id matches a response to its request. Responses are read in
// as few calls as the network allows: usually one.
type tcpLink struct {
	conn net.Conn
	unit byte
	tx   uint16
	buf  [2 * 260]byte
	r, w int // unread bytes are buf[r:w]
}

// fill reads until at least n bytes are buffered.
func (l *tcpLink) fill(n int) error {
	if l.w-l.r >= n {
		return nil
	}
	if l.r > 0 {
		l.w = copy(l.buf[:], l.buf[l.r:l.w])
		l.r = 0
	}
	for l.w < n {
		m, err := l.conn.Read(l.buf[l.w:])
		l.w += m
		if err != nil && l.w < n {
			if err == io.EOF && l.w > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

func (l *tcpLink) roundTrip(pdu []byte, deadline time.Time) ([]byte, error) {
	l.tx++
	l.conn.SetDeadline(deadline)
	l.r, l.w = 0, 0 // anything unread belongs to an abandoned request
	if _, err := l.conn.Write(mbap(l.tx, l.unit, pdu)); err != nil {
		return nil, err
	}
	for {
		if err := l.fill(7); err != nil {
			return nil, err
		}
		head := l.buf[l.r : l.r+7]
		n := int(binary.BigEndian.Uint16(head[4:]))
		if binary.BigEndian.Uint16(head[2:]) != 0 || n < 2 || n > 254 {
			return nil, wapper.Errorf(wapper.ErrIO, "malformed MBAP header % x", head)
		}
		if err := l.fill(6 + n); err != nil {
			return nil, err
		}
		tx := binary.BigEndian.Uint16(l.buf[l.r:])
		body := l.buf[l.r+7 : l.r+6+n]
		l.r += 6 + n
		if tx == l.tx {
			return body, nil
		}
		// A late answer to an earlier request that timed out: skip it.
	}
}

func (l *tcpLink) close() { l.conn.Close() }

// rtuLink is Modbus RTU over a serial line.
type rtuLink struct {
	port  io.ReadWriteCloser
	slave byte
	buf   [260]byte
}

type deadliner interface{ SetDeadline(time.Time) error }

func (l *rtuLink) roundTrip(pdu []byte, deadline time.Time) ([]byte, error) {
	if d, ok := l.port.(deadliner); ok {
		d.SetDeadline(deadline)
	}
	if _, err := l.port.Write(rtuFrame(l.slave, pdu)); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(l.port, l.buf[:3]); err != nil {
		return nil, err
	}
	n, err := rtuResponseLen(l.buf[:3])
	if err != nil {
		return nil, wapper.Errorf(wapper.ErrIO, "%v", err)
	}
	if _, err := io.ReadFull(l.port, l.buf[3:n]); err != nil {
		return nil, err
	}
	out, err := checkRTU(l.slave, l.buf[:n])
	if err != nil {
		return nil, wapper.Errorf(wapper.ErrIO, "%v", err)
	}
	return out, nil
}

func (l *rtuLink) close() { l.port.Close() }

func (c *protocolConfig) target() string {
	if c.serialPort != "" {
		return c.serialPort
	}
	return net.JoinHostPort(c.ip, strconv.Itoa(c.port))
}
