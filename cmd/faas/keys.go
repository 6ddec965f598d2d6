package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/faas-platform/faas/client"
)

const keysUsage = `usage: faas keys create [--name N] [--account A] [--scopes s1,s2] [--rate-per-minute R] [--burst B]
       faas keys list [--account A]
       faas keys revoke KEY_ID

Manages API keys (needs an admin key). A new key is printed once; the server keeps
only its hash. Flags may come before or after the arguments.`

// runKeys is `faas keys`.
func runKeys(ctx context.Context, args []string) error {
	fs := newFlagSet("faas keys", keysUsage, os.Stderr)
	conn := clientFlags(fs, "admin API key")
	name := fs.String("name", "", "a label for the key")
	account := fs.String("account", "", "account the key acts for (create: default a new account; list: filter)")
	scopes := fs.String("scopes", "", "comma-separated scopes: admin, execute, instances, snapshots (default: all but admin)")
	rate := fs.Int64("rate-per-minute", 0, "the key's own request rate (0: the server's default)")
	burst := fs.Int64("burst", 0, "the key's own burst (0: the server's default)")
	cmd, pos, err := subcommand(fs, args, nil)
	if err != nil {
		return err
	}
	n, known := map[string]int{"create": 0, "list": 0, "revoke": 1}[cmd]
	if !known {
		return usageError{fmt.Sprintf("unknown subcommand %q (see faas keys -h)", cmd)}
	}
	if len(pos) != n {
		if n == 0 {
			return usageError{fmt.Sprintf("keys %s takes no arguments, got %q (see faas keys -h)", cmd, pos)}
		}
		return usageError{"usage: faas keys revoke KEY_ID"}
	}
	c, endpoint, key := conn()
	switch cmd {
	case "create":
		req := client.KeyRequest{Name: *name, Account: *account, RatePerMinute: *rate, Burst: *burst}
		if *scopes != "" {
			req.Scopes = strings.Split(*scopes, ",")
		}
		k, err := c.CreateKey(ctx, req)
		if err != nil {
			return explainClientError(err, endpoint, key)
		}
		fmt.Fprintf(os.Stderr, "created key %s for account %s with scopes %s (shown once):\n", k.ID, k.Account, strings.Join(k.Scopes, ","))
		fmt.Println(k.Secret)
	case "list":
		keys, err := c.ListKeys(ctx, *account)
		if err != nil {
			return explainClientError(err, endpoint, key)
		}
		tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tPREFIX\tNAME\tACCOUNT\tSCOPES\tCREATED\tREVOKED")
		for _, k := range keys {
			revoked := "-"
			if k.RevokedAt != nil {
				revoked = k.RevokedAt.Format("2006-01-02 15:04")
			}
			fmt.Fprintf(tw, "%s\t%s…\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Prefix, k.Name, k.Account, strings.Join(k.Scopes, ","), k.CreatedAt.Format("2006-01-02 15:04"), revoked)
		}
		return tw.Flush()
	case "revoke":
		if err := c.RevokeKey(ctx, pos[0]); err != nil {
			return explainClientError(err, endpoint, key)
		}
		fmt.Fprintf(os.Stderr, "revoked %s\n", pos[0])
	}
	return nil
}

const usageUsage = `usage: faas usage [--by day|mode]

Shows this billing period's usage, volume tier, bill and projection for the API
key's account; --by breaks the month so far down by day or by execution mode.`

// runUsageReport is `faas usage`: this billing period, or a range grouped by day or mode.
func runUsageReport(ctx context.Context, args []string) error {
	fs := newFlagSet("faas usage", usageUsage, os.Stderr)
	conn := clientFlags(fs, "API key")
	group := fs.String("by", "", "group the month so far by day or mode")
	pos, err := parseFlags(fs, args, nil)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("usage takes no arguments, got %q (see faas usage -h)", pos)}
	}
	c, endpoint, key := conn()
	if *group != "" {
		r, err := c.Usage(ctx, timeZero, timeZero, *group)
		if err != nil {
			return explainClientError(err, endpoint, key)
		}
		tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, strings.ToUpper(*group)+"\tEXECUTIONS\tCPU-S\tGB-S\tCOST USD")
		for _, row := range append(r.Rows, client.UsageRow{Group: "total", Executions: r.Total.Executions, CPUSeconds: r.Total.CPUSeconds, GBSeconds: r.Total.GBSeconds, CostUSD: r.Total.CostUSD}) {
			fmt.Fprintf(tw, "%s\t%d\t%.3f\t%.3f\t%.6f\n", row.Group, row.Executions, row.CPUSeconds, row.GBSeconds, row.CostUSD)
		}
		return tw.Flush()
	}
	u, err := c.CurrentUsage(ctx)
	if err != nil {
		return explainClientError(err, endpoint, key)
	}
	fmt.Printf("period      %s to %s\nexecutions  %d\ncpu         %.3f vCPU-s\nmemory      %.3f GB-s\ntier        %s (%d%% off)\nbill        $%.6f\nprojected   $%.6f (%s)\n",
		u.PeriodStart.Format("2006-01-02"), u.PeriodEnd.Format("2006-01-02"), u.Usage.Executions, u.Usage.CPUSeconds,
		u.Usage.GBSeconds, u.Tier, u.DiscountPercent, u.BillUSD, u.ProjectedUSD, u.ProjectedTier)
	return nil
}
