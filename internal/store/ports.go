package store

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
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
// below the ephemeral range where there is room, else by the kernel. A
// port chosen below that range is reserved (reserve), so no other call, in
// this process or another, returns it again before its server binds it.
func FreePort() (int, error) {
	if hi := ephemeralFloor(); hi-lowestPort >= 1000 {
		for range portAttempts {
			p := lowestPort + rand.IntN(hi-lowestPort)
			if !reserve(p) {
				continue
			}
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

// reserved holds the ports this process has chosen.
var reserved struct {
	sync.Mutex
	ports map[int]bool
}

// PortReservations is the directory where each chosen port has a file
// naming the process that chose it.
var PortReservations = filepath.Join(os.TempDir(), "contoso-ports")

// reserve claims port p for this process, once: between a free-port check
// and a server's bind there are seconds (a deployment chooses all its
// ports before it starts its servers), and a random pick elsewhere in that
// window would find the port free too. Across processes the claim is a
// file created exclusively in PortReservations; a file whose process has
// exited is claimed again. Where no file can be written, the claim holds
// within this process only.
func reserve(p int) bool {
	reserved.Lock()
	defer reserved.Unlock()
	if reserved.ports[p] {
		return false
	}
	if !claimFile(p) {
		return false
	}
	if reserved.ports == nil {
		reserved.ports = map[int]bool{}
	}
	reserved.ports[p] = true
	return true
}

func claimFile(p int) bool {
	if os.MkdirAll(PortReservations, 0o777) != nil {
		return true
	}
	name := filepath.Join(PortReservations, strconv.Itoa(p))
	for range 2 {
		f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666)
		if err == nil {
			_, err = f.WriteString(strconv.Itoa(os.Getpid()))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			return err == nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return true
		}
		b, err := os.ReadFile(name)
		pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || perr != nil || processAlive(pid) {
			return false // another process's, or being written
		}
		_ = os.Remove(name) // its process exited: claim it again
	}
	return false
}

// processAlive reports whether a process with pid runs.
func processAlive(pid int) bool {
	if pid == os.Getpid() {
		return true
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = proc.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
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
