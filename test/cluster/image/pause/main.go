// Command pause is the pod sandbox process of the local cluster, the role registry.k8s.io/pause
// plays elsewhere: it holds the pod's namespaces open, exits on SIGTERM or SIGINT, and, as PID 1
// of the pod, reaps the zombies of processes that were orphaned into it.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		// One SIGCHLD can stand for several exits: reap until none is left.
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
