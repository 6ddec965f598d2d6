// Command faas is the code execution platform's single binary: the API server
// (`faas serve`) and the command-line client (`faas run`, ...). Every client
// command talks to a server through the public API (package client); exit codes
// are decided here and nowhere else.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// command is one `faas` subcommand. Run gets the arguments after the command's name.
type command struct {
	name  string
	usage string
	run   func(ctx context.Context, args []string) error
}

func commands() []command {
	return []command{
		{"serve", "run the API server", runServe},
		{"run", "run code in a sandbox through a server", runRun},
		{"keys", "create, list and revoke API keys (admin)", runKeys},
		{"instances", "manage persistent instances; ssh into them", runInstances},
		{"snapshots", "list, create, restore and delete snapshots", runSnapshots},
		{"images", "import, pull, list and remove images (admin)", runImages},
		{"usage", "show this billing period's usage and bill", runUsageReport},
		{"bench", "measure latency against baselines", runBench},
		{"version", "print the version", runVersion},
	}
}

// exitError asks main to exit with a given status without printing anything more
// (for example `faas run` mirroring the sandboxed program's exit code).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// usageError is a mistake in how the command was called: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := dispatch(ctx, os.Args[1:])
	stop()
	var ee exitError
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp): // -h printed the usage
	case errors.As(err, &ee):
		os.Exit(ee.code)
	case errors.As(err, &ue):
		fmt.Fprintln(os.Stderr, "faas:", ue.msg)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "faas:", err)
		os.Exit(1)
	}
}

func dispatch(ctx context.Context, args []string) error {
	if len(args) == 2 && args[0] == "help" && !isHelp(args[1]) {
		args = []string{args[1], "-h"} // faas help COMMAND
	}
	if len(args) == 0 || isHelp(args[0]) {
		printUsage()
		if len(args) == 0 {
			return exitError{2}
		}
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:])
		}
	}
	printUsage()
	return usageError{fmt.Sprintf("unknown command %q", args[0])}
}

func printUsage() {
	fmt.Fprintln(os.Stderr, "usage: faas <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", c.name, c.usage)
	}
	fmt.Fprintln(os.Stderr, "\nfaas COMMAND -h (or faas help COMMAND) shows a command's usage and flags.")
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

var timeZero time.Time

func runVersion(ctx context.Context, args []string) error {
	fs := newFlagSet("faas version", "usage: faas version\n\nPrints the version of this binary.", os.Stderr)
	positional, err := parseFlags(fs, args, nil)
	if err != nil {
		return err
	}
	if len(positional) > 0 {
		return usageError{"version takes no arguments"}
	}
	fmt.Println("faas", version)
	return nil
}
