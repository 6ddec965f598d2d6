package api

import (
	"net/http"
	"time"

	"github.com/faas-platform/faas/engine"
	"github.com/faas-platform/faas/store"
)

// UsageRow is usage summed over a group of executions.
type UsageRow struct {
	Group        string  `json:"group,omitempty"`
	Executions   int64   `json:"executions"`
	CPUSeconds   float64 `json:"cpu_seconds"`
	GBSeconds    float64 `json:"gb_seconds"`
	CostMicroUSD int64   `json:"cost_micro_usd"`
	CostUSD      float64 `json:"cost_usd"`
}

func toUsageRow(r store.UsageRow) UsageRow {
	return UsageRow{
		Group: r.Group, Executions: r.Executions,
		CPUSeconds:   float64(r.CPUMS) / 1000,
		GBSeconds:    float64(r.MemoryMBMS) / 1024 / 1000,
		CostMicroUSD: r.CostMicroUSD, CostUSD: microToUSD(r.CostMicroUSD),
	}
}

// UsageResponse is the body of GET /api/v1/usage.
type UsageResponse struct {
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

// SnapshotUsage is snapshot storage over a range, measured from each snapshot's
// size and how long it existed in the range.
type SnapshotUsage struct {
	GBMonths     float64 `json:"gb_months"`
	CostMicroUSD int64   `json:"cost_micro_usd"`
	CostUSD      float64 `json:"cost_usd"`
}

// snapshotUsage measures the account's snapshot storage in [from, to).
func (s *Server) snapshotUsage(r *http.Request, account string, from, to time.Time) (SnapshotUsage, error) {
	bs, err := s.store.SnapshotByteSeconds(r.Context(), account, from, to)
	if err != nil {
		return SnapshotUsage{}, err
	}
	cost := engine.SnapshotStorageCost(bs)
	return SnapshotUsage{GBMonths: engine.SnapshotGBMonths(bs), CostMicroUSD: cost, CostUSD: microToUSD(cost)}, nil
}

// parseTime accepts RFC 3339 or a date (YYYY-MM-DD, UTC midnight).
func parseTime(name, v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", v); err == nil {
		return t, nil
	}
	return time.Time{}, newError(http.StatusBadRequest, "invalid_request", name+" must be an RFC 3339 time or a date (YYYY-MM-DD)")
}

// usage sums the account's usage over a range: ?from=&to= (default: this month
// so far) and ?group_by=day|mode.
func (s *Server) usage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	now := time.Now().UTC()
	from, to := monthStart(now), now.Add(time.Second)
	var err error
	if v := q.Get("from"); v != "" {
		if from, err = parseTime("from", v); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if v := q.Get("to"); v != "" {
		if to, err = parseTime("to", v); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if !to.After(from) {
		s.writeError(w, r, newError(http.StatusBadRequest, "invalid_request", "to must be after from"))
		return
	}
	group := q.Get("group_by")
	if group != store.GroupNone && group != store.GroupDay && group != store.GroupMode {
		s.writeError(w, r, newError(http.StatusBadRequest, "invalid_request", "group_by must be day or mode"))
		return
	}
	acct := principalFrom(r.Context()).Account
	rows, err := s.store.Usage(r.Context(), acct, from, to, group)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := UsageResponse{Account: acct, From: from, To: to, GroupBy: group, Rows: []UsageRow{}}
	var total store.UsageRow
	for _, row := range rows {
		resp.Rows = append(resp.Rows, toUsageRow(row))
		total.Executions += row.Executions
		total.CPUMS += row.CPUMS
		total.MemoryMBMS += row.MemoryMBMS
		total.CostMicroUSD += row.CostMicroUSD
	}
	// Snapshot storage is billed for the time it has been kept: up to now, not
	// to a to in the future.
	kept := to
	if kept.After(now) {
		kept = now
	}
	if !kept.After(from) {
		kept = from // a range all in the future: nothing kept in it yet
	}
	if resp.Snapshots, err = s.snapshotUsage(r, acct, from, kept); err != nil {
		s.writeError(w, r, err)
		return
	}
	total.CostMicroUSD += resp.Snapshots.CostMicroUSD
	resp.Total = toUsageRow(total)
	writeJSON(w, http.StatusOK, resp)
}

func monthStart(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// CurrentUsageResponse is the body of GET /api/v1/usage/current: this billing
// period (the calendar month, UTC) so far, its volume tier and the bill.
type CurrentUsageResponse struct {
	Account         string           `json:"account"`
	PeriodStart     time.Time        `json:"period_start"`
	PeriodEnd       time.Time        `json:"period_end"`
	Usage           UsageRow         `json:"usage"` // executions and instances, snapshots included in its cost
	Snapshots       SnapshotUsage    `json:"snapshots"`
	Tier            string           `json:"tier"`
	DiscountPercent int64            `json:"discount_percent"`
	BillMicroUSD    int64            `json:"bill_micro_usd"` // spend so far, discount applied
	BillUSD         float64          `json:"bill_usd"`
	ProjectedMicro  int64            `json:"projected_micro_usd"` // at this rate for the whole period, discount applied
	ProjectedUSD    float64          `json:"projected_usd"`
	ProjectedTier   string           `json:"projected_tier"`
	Prices          engine.PriceList `json:"prices"`
}

func (s *Server) currentUsage(w http.ResponseWriter, r *http.Request) {
	now := time.Now().UTC()
	start := monthStart(now)
	end := start.AddDate(0, 1, 0)
	acct := principalFrom(r.Context()).Account
	rows, err := s.store.Usage(r.Context(), acct, start, end, store.GroupNone)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var u store.UsageRow
	if len(rows) > 0 {
		u = rows[0]
	}
	snaps, err := s.snapshotUsage(r, acct, start, now)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	u.CostMicroUSD += snaps.CostMicroUSD
	tier := engine.TierFor(u.CostMicroUSD)
	elapsed := now.Sub(start)
	projected := u.CostMicroUSD
	if elapsed > time.Minute {
		projected = int64(float64(u.CostMicroUSD) * float64(end.Sub(start)) / float64(elapsed))
	}
	ptier := engine.TierFor(projected)
	bill, pbill := tier.Discounted(u.CostMicroUSD), ptier.Discounted(projected)
	writeJSON(w, http.StatusOK, CurrentUsageResponse{
		Account: acct, PeriodStart: start, PeriodEnd: end, Usage: toUsageRow(u), Snapshots: snaps,
		Tier: tier.Name, DiscountPercent: tier.DiscountPercent,
		BillMicroUSD: bill, BillUSD: microToUSD(bill),
		ProjectedMicro: pbill, ProjectedUSD: microToUSD(pbill), ProjectedTier: ptier.Name,
		Prices: engine.Prices(),
	})
}
