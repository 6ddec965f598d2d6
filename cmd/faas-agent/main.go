// Command faas-agent is the in-sandbox agent: PID 1 of every sandbox, serving the
// host over its stdin and stdout (see package agent). It is built static
// (CGO_ENABLED=0) and mounted read-only into each sandbox.
//
// With arguments it runs one filesystem operation of package agent/files as an
// ordinary process inside the sandbox and exits (see usage): 0 on success, 1 on
// failure (the error on stderr), 2 on a usage error.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/faas-platform/faas/agent"
	"github.com/faas-platform/faas/agent/files"
)

const usage = `usage:
  faas-agent                  serve the host on stdin and stdout (as PID 1)
  faas-agent manifest ROOT...
      write a JSON line per file, directory and symlink under each ROOT to stdout
  faas-agent pack [-r] [-missing-ok] PATH...
      write a tar stream of the PATHs (with -r, directories with their contents) to stdout;
      with -missing-ok, paths that do not exist are skipped
  faas-agent unpack [--max-bytes N] [--max-entries N] [--uid N --gid N | --keep-owner] DEST
      extract a tar stream from stdin under DEST (owned by uid:gid, default 0:0,
      or as in the archive with --keep-owner) and print the number of entries written
  faas-agent remove [--root DIR] [--contents] PATH...
      delete the PATHs (recursively) below DIR, default /; with --contents,
      what is in the directories PATH, keeping them
`

func main() {
	if len(os.Args) < 2 {
		serve()
		return
	}
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func serve() {
	// As PID 1 the agent must not be stopped by terminal or pipe signals. They
	// are caught and dropped rather than ignored: an ignored signal stays ignored
	// in every program the agent starts (a user's `kill -TERM` would do nothing,
	// `yes | head` would end in "Broken pipe", a session's interrupt would be
	// lost), a caught one is back to its default there.
	drop := make(chan os.Signal, 8)
	signal.Notify(drop, syscall.SIGPIPE, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		for range drop {
		}
	}()
	if err := agent.Serve(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "faas-agent:", err)
		os.Exit(1)
	}
}

// commands are the subcommands; each parses its arguments with fs.
var commands = map[string]func(fs *flag.FlagSet, args []string, stdin io.Reader, stdout io.Writer) error{
	"manifest": manifest,
	"pack":     pack,
	"unpack":   unpack,
	"remove":   remove,
}

// usageError is a bad command line: exit code 2 instead of 1. A nil err means flag
// has already reported it.
type usageError struct{ err error }

func (e usageError) Error() string {
	if e.err == nil {
		return "bad usage"
	}
	return e.err.Error()
}

// run executes the subcommand args[0] and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "faas-agent: unknown command %q\n%s", args[0], usage)
		return 2
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	err := cmd(fs, args[1:], stdin, stdout)
	var uerr usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &uerr):
		if uerr.err != nil {
			fmt.Fprintf(stderr, "faas-agent: %s: %v\n%s", args[0], uerr.err, usage)
		}
		return 2
	default:
		fmt.Fprintf(stderr, "faas-agent: %v\n", err)
		return 1
	}
}

// parse parses args with fs and checks the number of operands left.
func parse(fs *flag.FlagSet, args []string, minArgs, maxArgs int) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{} // flag printed the error and the usage
	}
	if n := fs.NArg(); n < minArgs || maxArgs >= 0 && n > maxArgs {
		return usageError{fmt.Errorf("wrong number of operands (%d)", n)}
	}
	return nil
}

func manifest(fs *flag.FlagSet, args []string, _ io.Reader, stdout io.Writer) error {
	if err := parse(fs, args, 1, -1); err != nil {
		return err
	}
	return files.Manifest(fs.Args(), stdout)
}

func pack(fs *flag.FlagSet, args []string, _ io.Reader, stdout io.Writer) error {
	recursive := fs.Bool("r", false, "pack directories with their contents")
	missingOK := fs.Bool("missing-ok", false, "skip paths that do not exist (none left: an empty archive)")
	if err := parse(fs, args, 1, -1); err != nil {
		return err
	}
	paths := fs.Args()
	if *missingOK {
		paths = paths[:0:0]
		for _, p := range fs.Args() {
			if _, err := os.Lstat(p); err == nil {
				paths = append(paths, p)
			}
		}
	}
	w := bufio.NewWriterSize(stdout, 1<<16)
	if err := files.Pack(paths, *recursive, w); err != nil {
		return err
	}
	return w.Flush()
}

func unpack(fs *flag.FlagSet, args []string, stdin io.Reader, stdout io.Writer) error {
	var opt files.UnpackOptions
	fs.Int64Var(&opt.MaxBytes, "max-bytes", 0, "total file content allowed, 0 for no limit")
	fs.IntVar(&opt.MaxEntries, "max-entries", 0, "archive entries allowed, 0 for no limit")
	fs.IntVar(&opt.UID, "uid", 0, "owner of what is written")
	fs.IntVar(&opt.GID, "gid", 0, "group of what is written")
	fs.BoolVar(&opt.KeepOwner, "keep-owner", false, "keep owners (and setuid/setgid bits) from the archive")
	if err := parse(fs, args, 1, 1); err != nil {
		return err
	}
	if opt.KeepOwner {
		var err error
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "uid" || f.Name == "gid" {
				err = usageError{fmt.Errorf("--%s and --keep-owner exclude each other", f.Name)}
			}
		})
		if err != nil {
			return err
		}
	}
	n, err := files.Unpack(fs.Arg(0), stdin, opt)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, n)
	return err
}

func remove(fs *flag.FlagSet, args []string, _ io.Reader, _ io.Writer) error {
	root := fs.String("root", "/", "directory the paths must be below")
	contents := fs.Bool("contents", false, "empty the directories PATH, keeping them")
	if err := parse(fs, args, 1, -1); err != nil {
		return err
	}
	if *contents {
		for _, dir := range fs.Args() {
			if err := files.RemoveContents(*root, dir); err != nil {
				return err
			}
		}
		return nil
	}
	return files.Remove(*root, fs.Args())
}
