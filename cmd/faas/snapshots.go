package main

import (
	"context"
	"flag"
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
prints its id; run code in it with faas run --session.`

// runSnapshots is `faas snapshots`.
func runSnapshots(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageError{snapshotsUsage}
	}
	fs := flag.NewFlagSet("snapshots "+args[0], flag.ContinueOnError)
	conn := clientFlags(fs, "API key")
	session := fs.String("session", "", "session (create: the one to snapshot; restore: the new one's id)")
	execution := fs.String("execution", "", "execution whose session to snapshot (create)")
	name := fs.String("name", "", "snapshot name (create)")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	c, endpoint, key := conn()
	fail := func(err error) error { return explainClientError(err, endpoint, key) }
	switch args[0] {
	case "list":
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
		if fs.NArg() != 1 {
			return usageError{snapshotsUsage}
		}
		sn, err := c.GetSnapshot(ctx, fs.Arg(0))
		if err != nil {
			return fail(err)
		}
		fmt.Printf("id       %s\nname     %s\nparent   %s\nchildren %s\nlanguage %s\nsize     %d bytes\nsha256   %s\nstatus   %s %s\ncreated  %s\n",
			sn.ID, sn.Name, cmpOr(sn.ParentID, "-"), strings.Join(sn.Children, " "), sn.Language, sn.SizeBytes, sn.SHA256, sn.Status, sn.Error, sn.CreatedAt)
	case "delete":
		if fs.NArg() != 1 {
			return usageError{snapshotsUsage}
		}
		if err := c.DeleteSnapshot(ctx, fs.Arg(0)); err != nil {
			return fail(err)
		}
		fmt.Fprintf(os.Stderr, "deleted %s\n", fs.Arg(0))
	case "create":
		sn, err := c.CreateSnapshot(ctx, client.SnapshotRequest{SessionID: *session, ExecutionID: *execution, Name: *name})
		if err != nil {
			return fail(err)
		}
		fmt.Println(sn.ID)
	case "restore":
		if fs.NArg() != 1 {
			return usageError{snapshotsUsage}
		}
		s, err := c.RestoreSnapshot(ctx, fs.Arg(0), *session)
		if err != nil {
			return fail(err)
		}
		fmt.Println(s.ID)
	default:
		return usageError{snapshotsUsage}
	}
	return nil
}
