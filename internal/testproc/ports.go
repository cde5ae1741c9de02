package testproc

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the lowest port FreePorts hands out.
const lowest = 10000

var taken struct {
	sync.Mutex
	ports map[int]bool
}

// FreePorts returns n loopback TCP ports that nothing listens on, picked
// below the kernel's ephemeral range. A port from the ephemeral range
// (what listening on port 0 returns) can be taken by an outgoing
// connection between the pick and the server's bind; ports below it are
// only ever bound on purpose. A port is never handed out twice by one
// test binary.
func FreePorts(n int) ([]int, error) {
	hi := ephemeralLow()
	taken.Lock()
	defer taken.Unlock()
	if taken.ports == nil {
		taken.ports = map[int]bool{}
	}
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, fmt.Errorf("testproc: no free port in %d-%d", lowest, hi-1)
		}
		p := lowest + rand.IntN(hi-lowest)
		if taken.ports[p] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		taken.ports[p] = true
		ports = append(ports, p)
	}
	return ports, nil
}

// ephemeralLow returns the first port of the kernel's ephemeral range
// (32768 when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > lowest+1000 {
				return n
			}
		}
	}
	return 32768
}
