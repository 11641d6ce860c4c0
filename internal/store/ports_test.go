package store

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

// A port is given once: never again in this process, never to another
// process while the one that chose it runs, and again once that process
// has exited. Mutations tried: reserve returning true at once → "port
// 20001 given twice"; the exited process's file never removed → "the
// port of an exited process was not claimed again".
func TestAPortIsReservedForTheProcessThatChoseIt(t *testing.T) {
	PortReservations = t.TempDir()
	t.Cleanup(func() { PortReservations = filepath.Join(os.TempDir(), "contoso-ports") })

	if !reserve(20001) {
		t.Fatal("a fresh port was not reserved")
	}
	if reserve(20001) {
		t.Fatal("port 20001 given twice")
	}

	write := func(port, pid int) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(PortReservations, strconv.Itoa(port)), []byte(strconv.Itoa(pid)), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	write(20002, os.Getppid()) // the go command or shell that runs this test: alive
	if reserve(20002) {
		t.Fatal("a port another running process chose was given")
	}

	exited := exec.Command(os.Args[0], "-test.run=^$")
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}
	write(20003, exited.Process.Pid)
	if !reserve(20003) {
		t.Fatal("the port of an exited process was not claimed again")
	}
	b, err := os.ReadFile(filepath.Join(PortReservations, "20003"))
	if err != nil || string(b) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("reservation of 20003 = %q, %v; want this process's pid", b, err)
	}
}

// A node that cannot start says which of its ports another socket holds.
func TestPortsTakenNamesTheHeldPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	held := l.Addr().(*net.TCPAddr).Port
	free, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if got := portsTaken(held, free); !strings.Contains(got, fmt.Sprintf("port %d is taken", held)) || strings.Contains(got, strconv.Itoa(free)) {
		t.Fatalf("portsTaken(held %d, free %d) = %q", held, free, got)
	}
	if got := portsTaken(free, 0); !strings.Contains(got, "free") {
		t.Fatalf("portsTaken(free %d) = %q", free, got)
	}
}
