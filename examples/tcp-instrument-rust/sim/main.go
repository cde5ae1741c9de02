// Command sim is a simulated line-based TCP instrument, a thermostat that
// answers one line per command line, SCPI style:
//
//	*IDN?    its identity
//	TEMP?    the temperature, which moves toward the setpoint
//	SETP?    the setpoint
//	SETP V   sets the setpoint and answers OK
//	other    ERR unknown command
//
// Run it with: go run ./sim -listen 127.0.0.1:5025 (it is the same in
// examples/tcp-instrument-go and examples/tcp-instrument-rust).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// thermostat is the simulated instrument.
type thermostat struct {
	mu       sync.Mutex
	temp     float64
	setpoint float64
	at       time.Time
}

// answer returns the reply to one command.
func (th *thermostat) answer(cmd string) string {
	th.mu.Lock()
	defer th.mu.Unlock()
	// The temperature closes a tenth of the gap to the setpoint every 2 s.
	now := time.Now()
	th.temp += (th.setpoint - th.temp) * (1 - math.Pow(0.9, now.Sub(th.at).Seconds()/2))
	th.at = now
	switch {
	case cmd == "*IDN?":
		return "wapper,tcp-instrument-sim,0,1.0"
	case cmd == "TEMP?":
		return strconv.FormatFloat(th.temp, 'f', 2, 64)
	case cmd == "SETP?":
		return strconv.FormatFloat(th.setpoint, 'f', -1, 64)
	case strings.HasPrefix(cmd, "SETP "):
		v, err := strconv.ParseFloat(strings.TrimSpace(cmd[5:]), 64)
		if err != nil || v < -50 || v > 150 {
			return "ERR setpoint must be a number from -50 to 150"
		}
		th.setpoint = v
		return "OK"
	}
	return fmt.Sprintf("ERR unknown command %q", cmd)
}

func (th *thermostat) serve(c net.Conn) {
	defer c.Close()
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		cmd := strings.TrimSpace(sc.Text())
		reply := th.answer(cmd)
		log.Printf("%s: %s -> %s", c.RemoteAddr(), cmd, reply)
		if _, err := fmt.Fprintf(c, "%s\n", reply); err != nil {
			return
		}
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:5025", "address to serve the instrument on")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("simulated instrument on %s (TEMP?, SETP?, SETP V, *IDN?)", ln.Addr())
	th := &thermostat{temp: 18, setpoint: 21, at: time.Now()}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go th.serve(c)
	}
}
