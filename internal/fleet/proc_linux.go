//go:build linux

package fleet

import "syscall"

// sysProcAttr puts a child in its own process group (so a signal reaches
// whatever it starts too) and has the kernel kill it when the fleet's
// process dies, however it dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
