// pause is the pod sandbox's process, like registry.k8s.io/pause: it holds the
// pod's namespaces, reaps the zombies it inherits as PID 1 and exits 0 on
// SIGTERM or SIGINT. Built static (CGO_ENABLED=0) by scripts/build-image.sh
// into a one-file image named registry.k8s.io/pause:3.10, which the cluster's
// containerd names as its sandbox_image: nothing can be pulled here.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const version = "3.10-local"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		fmt.Println("pause.go", version)
		return
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "Warning: pause should be the first process")
	}
	signals := make(chan os.Signal, 16)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			fmt.Fprintf(os.Stderr, "Shutting down, got signal: %v\n", sig)
			os.Exit(0)
		}
		// Reap every child that has exited; one SIGCHLD may stand for several.
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if err == syscall.EINTR {
				continue
			}
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
