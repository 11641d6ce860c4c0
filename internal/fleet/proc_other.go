//go:build unix && !linux

package fleet

import "syscall"

// sysProcAttr puts a child in its own process group. Only Linux can tie a
// child's life to the fleet's process; elsewhere a fleet killed with
// SIGKILL leaves its children running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
