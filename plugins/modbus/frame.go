package main

import (
	"encoding/binary"
	"fmt"
)

// Modbus function codes.
const (
	fcReadCoils          = 0x01
	fcReadDiscreteInputs = 0x02
	fcReadHolding        = 0x03
	fcReadInput          = 0x04
	fcWriteSingleCoil    = 0x05
	fcWriteSingleReg     = 0x06
	fcWriteMultipleCoils = 0x0F
	fcWriteMultipleRegs  = 0x10
)

// Request size limits of the Modbus application protocol.
const (
	maxReadBits  = 2000
	maxReadRegs  = 125
	maxWriteRegs = 123
)

var functionNames = map[byte]string{
	fcReadCoils: "read coils", fcReadDiscreteInputs: "read discrete inputs",
	fcReadHolding: "read holding registers", fcReadInput: "read input registers",
	fcWriteSingleCoil: "write single coil", fcWriteSingleReg: "write single register",
	fcWriteMultipleCoils: "write multiple coils", fcWriteMultipleRegs: "write multiple registers",
}

var exceptionNames = map[byte]string{
	1: "illegal function", 2: "illegal data address", 3: "illegal data value",
	4: "server device failure", 5: "acknowledge", 6: "server device busy",
	8: "memory parity error", 10: "gateway path unavailable",
	11: "gateway target device failed to respond",
}

// Exception is a Modbus exception response.
type Exception struct {
	Function byte // the request's function code
	Code     byte
}

func (e *Exception) Error() string {
	name := exceptionNames[e.Code]
	if name == "" {
		name = "unknown exception"
	}
	return fmt.Sprintf("modbus exception %d (%s) on %s", e.Code, name, functionNames[e.Function])
}

// readPDU builds a read request PDU (function codes 1 to 4).
func readPDU(fc byte, addr, count uint16) []byte {
	return []byte{fc, byte(addr >> 8), byte(addr), byte(count >> 8), byte(count)}
}

// writeCoilPDU builds a write-single-coil request.
func writeCoilPDU(addr uint16, on bool) []byte {
	v := uint16(0)
	if on {
		v = 0xFF00
	}
	return []byte{fcWriteSingleCoil, byte(addr >> 8), byte(addr), byte(v >> 8), byte(v)}
}

// writeRegsPDU builds a write request for holding registers: a single
// register (function 6) or several (function 16). data holds 2 bytes per
// register, big-endian.
func writeRegsPDU(addr uint16, data []byte) []byte {
	if len(data) == 2 {
		return []byte{fcWriteSingleReg, byte(addr >> 8), byte(addr), data[0], data[1]}
	}
	n := len(data) / 2
	out := []byte{fcWriteMultipleRegs, byte(addr >> 8), byte(addr), byte(n >> 8), byte(n), byte(len(data))}
	return append(out, data...)
}

// checkResponse validates a response PDU against its request and returns
// the data of a read (the bytes after the byte count), or nil for a write.
func checkResponse(req, resp []byte) ([]byte, error) {
	if len(resp) < 2 {
		return nil, fmt.Errorf("response of %d bytes is too short", len(resp))
	}
	fc := req[0]
	if resp[0] == fc|0x80 {
		return nil, &Exception{Function: fc, Code: resp[1]}
	}
	if resp[0] != fc {
		return nil, fmt.Errorf("response function 0x%02x does not match request 0x%02x", resp[0], fc)
	}
	switch fc {
	case fcReadCoils, fcReadDiscreteInputs, fcReadHolding, fcReadInput:
		count := int(binary.BigEndian.Uint16(req[3:]))
		want := count * 2
		if fc <= fcReadDiscreteInputs {
			want = (count + 7) / 8
		}
		if int(resp[1]) != want || len(resp) != 2+want {
			return nil, fmt.Errorf("%s: byte count %d and length %d, want %d data bytes", functionNames[fc], resp[1], len(resp), want)
		}
		return resp[2:], nil
	default:
		if len(resp) != 5 || string(resp[1:5]) != string(req[1:5]) {
			return nil, fmt.Errorf("%s: response % x does not echo the request", functionNames[fc], resp)
		}
		return nil, nil
	}
}

// mbap frames a PDU for Modbus TCP.
func mbap(tx uint16, unit byte, pdu []byte) []byte {
	out := make([]byte, 7, 7+len(pdu))
	binary.BigEndian.PutUint16(out[0:], tx)
	binary.BigEndian.PutUint16(out[4:], uint16(len(pdu)+1))
	out[6] = unit
	return append(out, pdu...)
}

// crc16 is the Modbus RTU CRC (polynomial 0xA001 reflected, initial 0xFFFF).
func crc16(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, c := range b {
		crc ^= uint16(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// rtuFrame frames a PDU for Modbus RTU: slave address, PDU, CRC low byte
// first.
func rtuFrame(slave byte, pdu []byte) []byte {
	out := make([]byte, 0, len(pdu)+3)
	out = append(out, slave)
	out = append(out, pdu...)
	crc := crc16(out)
	return append(out, byte(crc), byte(crc>>8))
}

// rtuResponseLen returns the length of an RTU response frame once its first
// 3 bytes are known (slave, function, byte count or exception code).
func rtuResponseLen(head []byte) (int, error) {
	switch fc := head[1]; {
	case fc&0x80 != 0:
		return 5, nil
	case fc >= fcReadCoils && fc <= fcReadInput:
		return 5 + int(head[2]), nil
	case fc == fcWriteSingleCoil, fc == fcWriteSingleReg, fc == fcWriteMultipleCoils, fc == fcWriteMultipleRegs:
		return 8, nil
	default:
		return 0, fmt.Errorf("RTU response with unknown function 0x%02x", fc)
	}
}

// checkRTU checks an RTU response frame's slave address and CRC and returns
// its PDU.
func checkRTU(slave byte, frame []byte) ([]byte, error) {
	n := len(frame)
	if n < 4 {
		return nil, fmt.Errorf("RTU frame of %d bytes is too short", n)
	}
	if got, want := uint16(frame[n-2])|uint16(frame[n-1])<<8, crc16(frame[:n-2]); got != want {
		return nil, fmt.Errorf("RTU frame CRC 0x%04x, want 0x%04x", got, want)
	}
	if frame[0] != slave {
		return nil, fmt.Errorf("RTU response from slave %d, want %d", frame[0], slave)
	}
	return frame[1 : n-2], nil
}
