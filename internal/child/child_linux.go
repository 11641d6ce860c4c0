//go:build linux

package child

import "syscall"

// sysProcAttr puts a child in its own process group (so a signal reaches
// whatever it starts too) and has the kernel kill it when the supervisor's
// process dies, however it dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
