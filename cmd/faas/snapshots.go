package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/faas-platform/faas/client"
)

const snapshotsUsage = `usage: faas snapshots list
       faas snapshots get|delete ID
       faas snapshots create --session S | --execution E [--name N]
       faas snapshots restore ID [--session S]

Manages snapshots of sessions. restore starts a new session from a snapshot and
prints its id; run code in it with faas run --session. Flags may come before or
after the arguments.`

// runSnapshots is `faas snapshots`.
func runSnapshots(ctx context.Context, args []string) error {
	fs := newFlagSet("faas snapshots", snapshotsUsage, os.Stderr)
	conn := clientFlags(fs, "API key")
	session := fs.String("session", "", "session (create: the one to snapshot; restore: the new one's id)")
	execution := fs.String("execution", "", "execution whose session to snapshot (create)")
	name := fs.String("name", "", "snapshot name (create)")
	cmd, pos, err := subcommand(fs, args, nil)
	if err != nil {
		return err
	}
	// wantArgs checks the number of arguments after the subcommand.
	wantArgs := func(n int, what string) error {
		if len(pos) != n {
			return usageError{fmt.Sprintf("usage: %s (see faas snapshots -h)", strings.TrimSpace("faas snapshots "+cmd+" "+what))}
		}
		return nil
	}
	c, endpoint, key := conn()
	fail := func(err error) error { return explainClientError(err, endpoint, key) }
	switch cmd {
	case "list":
		if err := wantArgs(0, ""); err != nil {
			return err
		}
		list, err := c.ListSnapshots(ctx)
		if err != nil {
			return fail(err)
		}
		tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tPARENT\tLANGUAGE\tSIZE\tSTATUS\tCREATED")
		for _, sn := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1f MB\t%s\t%s\n", sn.ID, sn.Name, cmpOr(sn.ParentID, "-"), sn.Language,
				float64(sn.SizeBytes)/(1<<20), sn.Status, sn.CreatedAt.Format("2006-01-02 15:04"))
		}
		return tw.Flush()
	case "get":
		if err := wantArgs(1, "ID"); err != nil {
			return err
		}
		sn, err := c.GetSnapshot(ctx, pos[0])
		if err != nil {
			return fail(err)
		}
		fmt.Printf("id       %s\nname     %s\nparent   %s\nchildren %s\nlanguage %s\nsize     %d bytes\nsha256   %s\nstatus   %s %s\ncreated  %s\n",
			sn.ID, sn.Name, cmpOr(sn.ParentID, "-"), strings.Join(sn.Children, " "), sn.Language, sn.SizeBytes, sn.SHA256, sn.Status, sn.Error, sn.CreatedAt)
	case "delete":
		if err := wantArgs(1, "ID"); err != nil {
			return err
		}
		if err := c.DeleteSnapshot(ctx, pos[0]); err != nil {
			return fail(err)
		}
		fmt.Fprintf(os.Stderr, "deleted %s\n", pos[0])
	case "create":
		if err := wantArgs(0, "--session S | --execution E [--name N]"); err != nil {
			return err
		}
		sn, err := c.CreateSnapshot(ctx, client.SnapshotRequest{SessionID: *session, ExecutionID: *execution, Name: *name})
		if err != nil {
			return fail(err)
		}
		fmt.Println(sn.ID)
	case "restore":
		if err := wantArgs(1, "ID [--session S]"); err != nil {
			return err
		}
		s, err := c.RestoreSnapshot(ctx, pos[0], *session)
		if err != nil {
			return fail(err)
		}
		fmt.Println(s.ID)
	default:
		return usageError{fmt.Sprintf("unknown subcommand %q (see faas snapshots -h)", cmd)}
	}
	return nil
}
