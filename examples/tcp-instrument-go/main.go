// Command tcp-instrument-go is a wapper mapper plugin for protocol "tcp-instrument":
// instruments that take one text command per line over TCP and answer
// with one line, as SCPI bench instruments do on port 5025 ("TEMP?" →
// "21.50").
//
// Device spec.protocol.configData:
//
//	ip       the instrument's address
//	port     its TCP port (a number or a numeric string)
//	timeout  milliseconds for one command and its answer (default 1000)
//
// Property visitors.configData:
//
//	command     the query a read sends (default: the property name in
//	            upper case with "?", such as "TEMPERATURE?")
//	setCommand  for a writable property, the command a write sends
//	            followed by the value ("SETP" sends "SETP 22.5"); the
//	            instrument answers "OK"
//
// An answer starting with "ERR" fails the call with the device's words.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o tcp-instrument-go.wasm .
package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	wapper "wapper.dev/wapper/sdk-go"
)

// With -buildmode=c-shared, main never runs: the SDK's exports call the
// driver registered here.
func init() { wapper.Register(&driver{}) }

func main() {}

// driver is the plugin. It keeps nothing itself: each device's connection
// lives in its Device.Data, because the host may run several instances
// and replace any of them (re-adding the devices).
type driver struct{ wapper.Base }

// maxLine bounds an answer, so that a device that never sends a newline
// cannot fill the plugin's memory.
const maxLine = 1024

// session is one device: where it is and the open connection, if any.
type session struct {
	addr    string
	timeout time.Duration
	conn    *wapper.Conn
	r       *bufio.Reader
}

// visitor is a property's visitors.configData.
type visitor struct {
	Command    string `json:"command"`
	SetCommand string `json:"setCommand"`
}

// AddDevice checks the device's configData; the first read connects.
func (*driver) AddDevice(d *wapper.Device) error {
	s, err := parseConfig(d)
	if err != nil {
		return err
	}
	d.Data = s
	return nil
}

// UpdateDevice reconnects with the new configData.
func (drv *driver) UpdateDevice(d *wapper.Device) error {
	drv.RemoveDevice(d)
	return drv.AddDevice(d)
}

// RemoveDevice closes the device's connection.
func (*driver) RemoveDevice(d *wapper.Device) error {
	if s, ok := d.Data.(*session); ok {
		s.close()
	}
	return nil
}

// Read sends the property's query and parses the answer.
func (*driver) Read(d *wapper.Device, p *wapper.Property) (wapper.Value, error) {
	var v visitor
	if err := p.Visit(&v); err != nil {
		return wapper.Value{}, err
	}
	cmd := v.Command
	if cmd == "" {
		cmd = strings.ToUpper(p.Name) + "?"
	}
	line, err := d.Data.(*session).query(cmd)
	if err != nil {
		return wapper.Value{}, err
	}
	return parseReading(p, line)
}

// Write sends the property's setCommand with the value.
func (*driver) Write(d *wapper.Device, p *wapper.Property, val wapper.Value) error {
	var v visitor
	if err := p.Visit(&v); err != nil {
		return err
	}
	if v.SetCommand == "" {
		return wapper.Errorf(wapper.ErrUnsupported, "property %q has no setCommand in its visitor configData", p.Name)
	}
	line, err := d.Data.(*session).query(v.SetCommand + " " + val.Text())
	if err != nil {
		return err
	}
	if line != "OK" {
		return wapper.Errorf(wapper.ErrDeviceFailed, "%s: %s answered %q, not OK", p.Name, v.SetCommand, line)
	}
	return nil
}

// State is online while a connection is open or can be opened, offline
// (with the reason) otherwise.
func (*driver) State(d *wapper.Device) (wapper.State, error) {
	s := d.Data.(*session)
	if err := s.connect(); err != nil {
		return wapper.StateOffline, wapper.Reason("%v", err)
	}
	return wapper.StateOnline, nil
}

// parseReading turns an answer into a value of the property's type.
func parseReading(p *wapper.Property, line string) (wapper.Value, error) {
	if p.Type() == wapper.TypeString {
		return wapper.String(line), nil
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(line), 64)
	if err != nil {
		return wapper.Value{}, wapper.Errorf(wapper.ErrDeviceFailed, "%s: the instrument answered %q, not a number", p.Name, line)
	}
	v, err := wapper.Convert(wapper.Double(f), p.Type())
	if err != nil {
		return wapper.Value{}, wapper.Errorf(wapper.ErrDeviceFailed, "%s: %v", p.Name, err)
	}
	return v, nil
}

// parseConfig reads the device's protocol configData. KubeEdge passes
// numbers as JSON numbers or as strings; wapper.Config takes both.
func parseConfig(d *wapper.Device) (*session, error) {
	var c struct {
		IP string `json:"ip"`
	}
	var nums wapper.Config
	if err := d.ProtocolConfig(&c); err != nil {
		return nil, err
	}
	if err := d.ProtocolConfig(&nums); err != nil {
		return nil, err
	}
	port, err := nums.Int("port", 0)
	if err != nil {
		return nil, wapper.Errorf(wapper.ErrInvalid, "device %s: protocol configData: %v", d, err)
	}
	if c.IP == "" || port < 1 || port > 65535 {
		return nil, wapper.Errorf(wapper.ErrInvalid, "device %s: protocol configData needs ip and port (1-65535)", d)
	}
	ms, err := nums.Float("timeout", 1000)
	if err != nil || ms < 1 {
		return nil, wapper.Errorf(wapper.ErrInvalid, "device %s: protocol configData timeout: want milliseconds, at least 1 (%v)", d, err)
	}
	return &session{
		addr:    net.JoinHostPort(c.IP, strconv.FormatInt(port, 10)),
		timeout: time.Duration(ms * float64(time.Millisecond)),
	}, nil
}

// connect opens the connection if none is open. The host checks the
// address against the MapperPlugin's spec.grants.network.
func (s *session) connect() error {
	if s.conn != nil {
		return nil
	}
	c, err := wapper.Dial("tcp", s.addr, s.timeout)
	if err != nil {
		return err
	}
	s.conn, s.r = c, bufio.NewReaderSize(c, maxLine)
	return nil
}

// query sends one command line and returns the answer line without its
// line end. After any I/O error the connection is dropped, so that a late
// answer cannot be taken for the next command's; the next call reconnects.
func (s *session) query(cmd string) (string, error) {
	if err := s.connect(); err != nil {
		return "", err
	}
	s.conn.SetDeadline(time.Now().Add(s.timeout))
	if _, err := io.WriteString(s.conn, cmd+"\n"); err != nil {
		s.close()
		return "", err
	}
	b, err := s.r.ReadSlice('\n')
	if err != nil {
		s.close()
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			return "", wapper.Errorf(wapper.ErrDeviceFailed, "%s answered %q with a line longer than %d bytes", s.addr, cmd, maxLine)
		case errors.Is(err, io.EOF):
			return "", wapper.Errorf(wapper.ErrClosed, "%s closed the connection after %q", s.addr, cmd)
		}
		return "", err
	}
	line := strings.TrimRight(string(b), "\r\n")
	if strings.HasPrefix(line, "ERR") {
		return "", wapper.Errorf(wapper.ErrDeviceFailed, "%s answered %q to %q", s.addr, line, cmd)
	}
	return line, nil
}

func (s *session) close() {
	if s.conn != nil {
		s.conn.Close()
		s.conn, s.r = nil, nil
	}
}
