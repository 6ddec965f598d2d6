package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/faas-platform/faas/client"
)

const instancesUsage = `usage: faas instances create [--name N] [--language L] [--memory-mb M] [--disk-mb D] [--ssh] [--snapshot ID]
       faas instances list
       faas instances get|pause|resume|stop|start|delete ID
       faas instances exec ID COMMAND...
       faas instances expose ID PORT [--name N] [--public]
       faas instances ssh-info ID
       faas instances ssh ID [COMMAND...]

Manages persistent instances. ssh-info prints where to connect and saves a new key
for the instance under ~/.faas/ssh/; ssh connects with the system's ssh client
(the instance must be created with --ssh). Flags may come before or after the
arguments, except after exec's and ssh's ID: what follows it is the command. exec
runs one argument as a shell command line ('ls | wc -l'), several as one command
and its arguments, each passed as written (sh -c 'echo $HOME').`

// runInstances is `faas instances`.
func runInstances(ctx context.Context, args []string) error {
	fs := newFlagSet("faas instances", instancesUsage, os.Stderr)
	conn := clientFlags(fs, "API key")
	name := fs.String("name", "", "instance name (create) or exposure name (expose)")
	language := fs.String("language", "", "the instance's language (create)")
	memory := fs.Int("memory-mb", 0, "memory limit (create)")
	disk := fs.Int("disk-mb", 0, "disk limit (create)")
	withSSH := fs.Bool("ssh", false, "allow SSH (create)")
	snapshot := fs.String("snapshot", "", "start from this snapshot (create)")
	public := fs.Bool("public", false, "reachable without a key (expose)")
	// After exec's and ssh's ID comes a command line with flags of its own.
	cmd, pos, err := subcommand(fs, args, func(p []string) bool {
		return len(p) == 2 && (p[0] == "exec" || p[0] == "ssh")
	})
	if err != nil {
		return err
	}
	c, endpoint, key := conn()
	// needID checks that pos holds at least lo and at most hi arguments
	// (hi < 0: no limit), the first an instance id, and returns that id.
	needID := func(lo, hi int, what string) (string, error) {
		if len(pos) < lo || hi >= 0 && len(pos) > hi {
			return "", usageError{fmt.Sprintf("usage: faas instances %s %s (see faas instances -h)", cmd, what)}
		}
		return pos[0], nil
	}
	fail := func(err error) error { return explainClientError(err, endpoint, key) }
	switch cmd {
	case "create":
		if len(pos) > 0 {
			return usageError{fmt.Sprintf("instances create takes no arguments, got %q", pos)}
		}
		req := client.InstanceRequest{Name: *name, Language: *language, DiskMB: *disk, EnableSSH: *withSSH, SnapshotID: *snapshot}
		if *memory > 0 {
			req.Resources = &client.Resources{MemoryMB: *memory}
		}
		in, err := c.CreateInstance(ctx, req)
		if err != nil {
			return fail(err)
		}
		fmt.Println(in.ID)
	case "list":
		if len(pos) > 0 {
			return usageError{fmt.Sprintf("instances list takes no arguments, got %q", pos)}
		}
		list, err := c.ListInstances(ctx)
		if err != nil {
			return fail(err)
		}
		tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tSTATE\tLANGUAGE\tMEMORY\tSSH\tCREATED")
		for _, in := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d MB\t%v\t%s\n", in.ID, in.Name, in.State, in.Language, in.Resources.MemoryMB, in.EnableSSH, in.CreatedAt.Format("2006-01-02 15:04"))
		}
		return tw.Flush()
	case "get", "pause", "resume", "stop", "start":
		id, err := needID(1, 1, "ID")
		if err != nil {
			return err
		}
		var in *client.Instance
		if cmd == "get" {
			in, err = c.GetInstance(ctx, id)
		} else {
			in, err = c.InstanceAction(ctx, id, cmd)
		}
		if err != nil {
			return fail(err)
		}
		fmt.Printf("%s %s%s\n", in.ID, in.State, map[bool]string{true: " (" + in.Error + ")"}[in.Error != ""])
	case "delete":
		id, err := needID(1, 1, "ID")
		if err != nil {
			return err
		}
		if err := c.DeleteInstance(ctx, id); err != nil {
			return fail(err)
		}
		fmt.Fprintf(os.Stderr, "deleted %s\n", id)
	case "exec":
		id, err := needID(2, -1, "ID COMMAND...")
		if err != nil {
			return err
		}
		res, err := c.ExecInstance(ctx, id, client.ExecuteRequest{Command: commandLine(pos[1:])})
		if err != nil {
			return fail(err)
		}
		os.Stdout.WriteString(res.Stdout)
		os.Stderr.WriteString(res.Stderr)
		if res.ExitCode != 0 {
			return exitError{code: res.ExitCode}
		}
	case "expose":
		id, err := needID(2, 2, "ID PORT [--name N] [--public]")
		if err != nil {
			return err
		}
		port, err := strconv.Atoi(pos[1])
		if err != nil {
			return usageError{"PORT must be a number"}
		}
		ex, err := c.Expose(ctx, id, port, *name, *public)
		if err != nil {
			return fail(err)
		}
		fmt.Println(ex.URL)
		if ex.HostURL != "" {
			fmt.Println(ex.HostURL)
		}
	case "ssh-info":
		id, err := needID(1, 1, "ID")
		if err != nil {
			return err
		}
		info, keyFile, knownHosts, err := sshAccess(ctx, c, id, true)
		if err != nil {
			return fail(err)
		}
		fmt.Printf("host %s\nport %d\nuser %s\nkey  %s\n\nssh -i %s -o UserKnownHostsFile=%s -p %d %s@%s\n",
			info.Host, info.Port, info.User, keyFile, keyFile, knownHosts, info.Port, info.User, info.Host)
	case "ssh":
		id, err := needID(1, -1, "ID [COMMAND...]")
		if err != nil {
			return err
		}
		sshBin, err := exec.LookPath("ssh")
		if err != nil {
			return errors.New("the ssh client is not installed (Debian: apt install openssh-client)")
		}
		info, keyFile, knownHosts, err := sshAccess(ctx, c, id, false)
		if err != nil {
			return fail(err)
		}
		defer os.RemoveAll(filepath.Dir(keyFile))
		argv := []string{"-i", keyFile, "-p", strconv.Itoa(info.Port), "-o", "UserKnownHostsFile=" + knownHosts,
			"-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-F", "/dev/null", info.User + "@" + info.Host}
		argv = append(argv, pos[1:]...)
		sh := exec.CommandContext(ctx, sshBin, argv...)
		sh.Stdin, sh.Stdout, sh.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := sh.Run(); err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return exitError{code: ee.ExitCode()}
			}
			return err
		}
	default:
		return usageError{fmt.Sprintf("unknown subcommand %q (see faas instances -h)", cmd)}
	}
	return nil
}

// sshAccess asks for a key for the instance and writes it with a known_hosts
// file: under ~/.faas/ssh/ID to keep (ssh-info), or in a temporary directory.
func sshAccess(ctx context.Context, c *client.Client, id string, keep bool) (*client.SSHInfo, string, string, error) {
	info, err := c.InstanceSSH(ctx, id)
	if err != nil {
		return nil, "", "", err
	}
	var dir string
	if keep {
		home, herr := os.UserHomeDir()
		if herr != nil {
			return nil, "", "", herr
		}
		dir = filepath.Join(home, ".faas", "ssh", id)
		err = os.MkdirAll(dir, 0o700)
	} else {
		dir, err = os.MkdirTemp("", "faas-ssh-")
	}
	if err != nil {
		return nil, "", "", err
	}
	keyFile, knownHosts := filepath.Join(dir, "id_ed25519"), filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(keyFile, []byte(info.PrivateKey), 0o600); err != nil {
		return nil, "", "", err
	}
	if err := os.WriteFile(knownHosts, []byte(info.KnownHosts+"\n"), 0o600); err != nil {
		return nil, "", "", err
	}
	return info, keyFile, knownHosts, nil
}

// commandLine is the shell command line exec runs: one argument as it is (a
// command line of its own), several quoted for the shell, each one word.
func commandLine(args []string) string {
	if len(args) == 1 {
		return args[0]
	}
	words := make([]string, len(args))
	for i, a := range args {
		words[i] = shellQuote(a)
	}
	return strings.Join(words, " ")
}

// shellQuote quotes s as one word for a POSIX shell, leaving plain words as
// they are.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
