// Command faas-agent is the in-sandbox agent: PID 1 of every sandbox, serving the
// host over its stdin and stdout (see package agent). It is built static
// (CGO_ENABLED=0) and mounted read-only into each sandbox.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/faas-platform/faas/agent"
)

func main() {
	// As PID 1 the agent must not be stopped by terminal or pipe signals.
	signal.Ignore(syscall.SIGPIPE, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	if err := agent.Serve(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "faas-agent:", err)
		os.Exit(1)
	}
}
