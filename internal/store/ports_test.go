package store

import (
	"net"
	"strconv"
	"testing"
)

func TestFreePortIsBelowTheEphemeralRange(t *testing.T) {
	floor := ephemeralFloor()
	if floor-lowestPort < 1000 {
		t.Skipf("the ephemeral range starts at %d: no room below it, ports are the kernel's", floor)
	}
	seen := map[int]bool{}
	for range 20 {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if p < lowestPort || p >= floor {
			t.Fatalf("port %d outside [%d, %d): an outgoing connection could take it", p, lowestPort, floor)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		l.Close()
		seen[p] = true
	}
	if len(seen) < 2 {
		t.Fatalf("20 picks gave %d distinct ports: not random", len(seen))
	}
}
