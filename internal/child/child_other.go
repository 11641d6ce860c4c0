//go:build unix && !linux

package child

import "syscall"

// sysProcAttr puts a child in its own process group. Only Linux can tie a
// child's life to the supervisor's process; elsewhere a supervisor killed with
// SIGKILL leaves its children running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
