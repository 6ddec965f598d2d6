package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Flag parsing shared by every subcommand.
//
// Go's flag package stops at the first argument that is not a flag, so
// `faas instances expose ID 8000 --name web` would silently lose --name.
// parseFlags lets flags and positional arguments mix, as the usage texts show
// them; "--" ends the flags. -h and --help print the command's usage and
// return flag.ErrHelp, which main turns into exit status 0.

// newFlagSet returns the flag set of a subcommand named name (such as
// "faas instances"). Its usage prints usage, then the flags, to out.
func newFlagSet(name, usage string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), strings.TrimRight(usage, "\n"))
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(fs.Output(), "\nflags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args into fs and returns the positional arguments. Flags
// may come before, between and after positional arguments. Everything after
// "--" is positional, and so is everything after the positional arguments for
// which stop (when not nil) returns true: a command line to run in a sandbox,
// say, whose own flags are not ours. A "--" right after that point is dropped.
//
// On -h or --help it prints fs's usage and returns flag.ErrHelp; any other
// mistake is a usageError naming it (the usage is not printed again).
func parseFlags(fs *flag.FlagSet, args []string, stop func(positional []string) bool) ([]string, error) {
	// The flag package prints an error and the whole usage on any mistake;
	// keep quiet while parsing and print the usage on -h only.
	usage, out := fs.Usage, fs.Output()
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	restore := func() { fs.Usage = usage; fs.SetOutput(out) }
	defer restore()

	var positional []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			restore()
			fs.Usage()
			return nil, flag.ErrHelp
		}
		if err != nil {
			return nil, usageError{fmt.Sprintf("%v (see %s -h)", err, fs.Name())}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if endedByDashes(fs, args[:len(args)-len(rest)]) {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
		if stop != nil && stop(positional) {
			if len(args) > 0 && args[0] == "--" {
				args = args[1:]
			}
			return append(positional, args...), nil
		}
	}
}

// endedByDashes reports whether the flag package stopped after consumed
// because it met the terminator "--" (rather than "--" as a flag's value, as
// in `-c --`). consumed holds only flags and their values.
func endedByDashes(fs *flag.FlagSet, consumed []string) bool {
	for i := 0; i < len(consumed); i++ {
		a := consumed[i]
		if a == "--" {
			return true
		}
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue // -x: a boolean takes no separate value
		}
		i++ // skip the flag's value
	}
	return false
}

// isHelp reports whether arg asks for help in place of a subcommand.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

// subcommand parses the arguments of a command group such as `faas
// instances`: the first positional argument is the subcommand, the rest are
// its arguments. Without a subcommand it prints the usage and asks for exit
// status 2; "help" prints it and returns flag.ErrHelp.
func subcommand(fs *flag.FlagSet, args []string, stop func(positional []string) bool) (string, []string, error) {
	positional, err := parseFlags(fs, args, stop)
	if err != nil {
		return "", nil, err
	}
	if len(positional) == 0 {
		fs.Usage()
		return "", nil, exitError{2}
	}
	if isHelp(positional[0]) {
		fs.Usage()
		return "", nil, flag.ErrHelp
	}
	return positional[0], positional[1:], nil
}
