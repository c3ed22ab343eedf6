//go:build !linux

package testenv

import "syscall"

// childProcAttr: only Linux has a parent-death signal; elsewhere the manager stays in this
// process's group, so that a Ctrl-C at the terminal stops it with the rest.
func childProcAttr() *syscall.SysProcAttr { return nil }
