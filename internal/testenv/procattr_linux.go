package testenv

import "syscall"

// childProcAttr puts a manager in its own process group, so that a Ctrl-C at the terminal reaches
// only the program that started it, which stops it in order; and has the kernel kill it if that
// program dies without cleaning up, so that no manager outlives a crashed test or benchmark.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
