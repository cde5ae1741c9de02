package testproc

import (
	"net"
	"strconv"
	"testing"
)

// TestFreePorts: ports are below the ephemeral range, distinct across
// calls, and bindable.
func TestFreePorts(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		ports, err := FreePorts(3)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ports {
			if p < lowest || p >= ephemeralLow() {
				t.Fatalf("port %d outside [%d, %d)", p, lowest, ephemeralLow())
			}
			if seen[p] {
				t.Fatalf("port %d handed out twice", p)
			}
			seen[p] = true
		}
	}
	ports, _ := FreePorts(1)
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(ports[0]))
	if err != nil {
		t.Fatalf("bind a port FreePorts returned: %v", err)
	}
	l.Close()
}
