package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"
)

// Key is an API key as the server lists it. Secret is only set in the answer to
// CreateKey: the server shows a key once and keeps only its hash.
type Key struct {
	ID            string     `json:"id"`
	Secret        string     `json:"key,omitempty"`
	Name          string     `json:"name"`
	Account       string     `json:"account"`
	Prefix        string     `json:"prefix"`
	Scopes        []string   `json:"scopes"`
	RatePerMinute int64      `json:"rate_per_minute,omitempty"`
	Burst         int64      `json:"burst,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	RevokedAt     *time.Time `json:"revoked_at,omitempty"`
}

// KeyRequest asks for a new key. An empty Account gives the key a new account
// of its own; empty Scopes means execute, instances and snapshots.
type KeyRequest struct {
	Name          string   `json:"name,omitempty"`
	Account       string   `json:"account,omitempty"`
	Scopes        []string `json:"scopes,omitempty"`
	RatePerMinute int64    `json:"rate_per_minute,omitempty"`
	Burst         int64    `json:"burst,omitempty"`
}

// CreateKey creates an API key (admin scope).
func (c *Client) CreateKey(ctx context.Context, req KeyRequest) (*Key, error) {
	var k Key
	if err := c.do(ctx, http.MethodPost, "/api/v1/keys", req, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

// ListKeys lists the keys of an account, or of every account for "" (admin scope).
func (c *Client) ListKeys(ctx context.Context, account string) ([]Key, error) {
	path := "/api/v1/keys"
	if account != "" {
		path += "?account=" + url.QueryEscape(account)
	}
	var out struct {
		Keys []Key `json:"keys"`
	}
	if err := c.do(ctx, http.MethodGet, path, nil, &out); err != nil {
		return nil, err
	}
	return out.Keys, nil
}

// RevokeKey revokes a key by its id (admin scope).
func (c *Client) RevokeKey(ctx context.Context, id string) error {
	if id == "" {
		return errors.New("client: empty key id")
	}
	return c.do(ctx, http.MethodDelete, "/api/v1/keys/"+url.PathEscape(id), nil, nil)
}

// UsageRow is usage summed over a group of executions.
type UsageRow struct {
	Group        string  `json:"group,omitempty"`
	Executions   int64   `json:"executions"`
	CPUSeconds   float64 `json:"cpu_seconds"`
	GBSeconds    float64 `json:"gb_seconds"`
	CostMicroUSD int64   `json:"cost_micro_usd"`
	CostUSD      float64 `json:"cost_usd"`
}

// UsageReport is the caller's usage over a time range.
type UsageReport struct {
	Account string     `json:"account"`
	From    time.Time  `json:"from"`
	To      time.Time  `json:"to"`
	GroupBy string     `json:"group_by,omitempty"`
	Rows    []UsageRow `json:"rows"`
	// Snapshots is snapshot storage over the range (not in Rows); Total
	// includes its cost.
	Snapshots SnapshotUsage `json:"snapshots"`
	Total     UsageRow      `json:"total"`
}

// SnapshotUsage is snapshot storage over a range: each snapshot's size for as
// long as it existed in the range.
type SnapshotUsage struct {
	GBMonths     float64 `json:"gb_months"`
	CostMicroUSD int64   `json:"cost_micro_usd"`
	CostUSD      float64 `json:"cost_usd"`
}

// Usage returns the caller's usage in [from, to) (zero times: this month so far),
// grouped by "day", "mode" or not at all ("").
func (c *Client) Usage(ctx context.Context, from, to time.Time, groupBy string) (*UsageReport, error) {
	q := url.Values{}
	if !from.IsZero() {
		q.Set("from", from.UTC().Format(time.RFC3339))
	}
	if !to.IsZero() {
		q.Set("to", to.UTC().Format(time.RFC3339))
	}
	if groupBy != "" {
		q.Set("group_by", groupBy)
	}
	path := "/api/v1/usage"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var r UsageReport
	if err := c.do(ctx, http.MethodGet, path, nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// CurrentUsage is this billing period (the calendar month, UTC) so far.
// Usage covers executions and instances, and its cost includes Snapshots'.
// The bill and the projection (at this rate for the whole period) have the
// tier's discount applied.
type CurrentUsage struct {
	Account           string        `json:"account"`
	PeriodStart       time.Time     `json:"period_start"`
	PeriodEnd         time.Time     `json:"period_end"`
	Usage             UsageRow      `json:"usage"`
	Snapshots         SnapshotUsage `json:"snapshots"`
	Tier              string        `json:"tier"`
	DiscountPercent   int64         `json:"discount_percent"`
	BillMicroUSD      int64         `json:"bill_micro_usd"`
	BillUSD           float64       `json:"bill_usd"`
	ProjectedMicroUSD int64         `json:"projected_micro_usd"`
	ProjectedUSD      float64       `json:"projected_usd"`
	ProjectedTier     string        `json:"projected_tier"`
	Prices            PriceList     `json:"prices"`
}

// PriceList is the server's published price list.
type PriceList struct {
	CPUPerVCPUSecondUSD   float64 `json:"cpu_per_vcpu_second_usd"`
	MemoryPerGBSecondUSD  float64 `json:"memory_per_gb_second_usd"`
	GPUPerHourUSD         float64 `json:"gpu_per_hour_usd"`
	SnapshotPerGBMonthUSD float64 `json:"snapshot_per_gb_month_usd"`
	EgressPerGBUSD        float64 `json:"egress_per_gb_usd"`
	// ModeMultipliers scale the price of an execution by its mode.
	ModeMultipliers map[string]float64 `json:"mode_multipliers"`
}

// CurrentUsage returns the caller's usage and bill for this billing period.
func (c *Client) CurrentUsage(ctx context.Context) (*CurrentUsage, error) {
	var u CurrentUsage
	if err := c.do(ctx, http.MethodGet, "/api/v1/usage/current", nil, &u); err != nil {
		return nil, err
	}
	return &u, nil
}
