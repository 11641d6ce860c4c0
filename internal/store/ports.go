package store

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// Ports below the kernel's ephemeral range are never the local end of an
// outgoing connection, so a port chosen there and free a moment ago stays
// free until a server binds it (a kernel-picked port can be taken meanwhile
// by any dial on the host, and stay taken for as long as that connection
// lives: a server that must bind it fails for good).
const (
	lowestPort    = 10000
	ephemeralLow  = 32768 // the common floor of the ephemeral range where it cannot be read
	portAttempts  = 64
	ephemeralFile = "/proc/sys/net/ipv4/ip_local_port_range"
)

// FreePort returns a loopback TCP port that was free a moment ago, chosen
// below the ephemeral range where there is room, else by the kernel.
func FreePort() (int, error) {
	if hi := ephemeralFloor(); hi-lowestPort >= 1000 {
		for range portAttempts {
			p := lowestPort + rand.IntN(hi-lowestPort)
			if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
				l.Close()
				return p, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralFloor is the lowest port the kernel hands to outgoing
// connections.
func ephemeralFloor() int {
	b, err := os.ReadFile(ephemeralFile)
	if err != nil {
		return ephemeralLow
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ephemeralLow
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return ephemeralLow
	}
	return n
}
