package engine

import "time"

// Prices from the product's price list, in pico-dollars so that per-millisecond
// amounts stay whole numbers; results are rounded to micro-dollars.
const (
	picoPerMicro          = 1_000_000
	cpuPicoPerCoreMS      = 24_000 // $0.000024 per vCPU-second
	memPicoPerGiBMS       = 3_000  // $0.000003 per GB-second
	multiplierDenominator = 10
)

// modeMultiplier is each mode's price multiplier, in tenths.
var modeMultiplier = map[string]int64{
	ModeEphemeral:    10,
	ModeCached:       8,
	ModeCheckpointed: 12,
	ModeBranched:     15,
	ModePersistent:   20,
}

// Price is the cost in micro-dollars (rounded half up) of an execution that used cpu
// CPU time and held memPeak bytes of memory for d, in the given mode.
func Price(mode string, cpu time.Duration, memPeak int64, d time.Duration) int64 {
	m, ok := modeMultiplier[mode]
	if !ok {
		m = 10
	}
	cpuPico := cpu.Milliseconds() * cpuPicoPerCoreMS
	// GiB-ms = bytes * ms / 2^30; keep precision by multiplying first (fits: 8 GiB *
	// 15 min * 3000 is far below 2^63).
	memPico := memPeak / (1 << 20) * d.Milliseconds() * memPicoPerGiBMS / 1024
	total := (cpuPico + memPico) * m / multiplierDenominator
	return (total + picoPerMicro/2) / picoPerMicro
}

// Tier is a volume discount level, reached by monthly spend.
type Tier struct {
	Name            string
	MinMicroUSD     int64 // monthly spend (before discount) from which it applies
	DiscountPercent int64
}

// Tiers are the volume discounts, lowest first.
var Tiers = []Tier{
	{Name: "starter", MinMicroUSD: 0, DiscountPercent: 0},
	{Name: "growth", MinMicroUSD: 100_000_000, DiscountPercent: 10},
	{Name: "scale", MinMicroUSD: 1_000_000_000, DiscountPercent: 20},
	{Name: "enterprise", MinMicroUSD: 10_000_000_000, DiscountPercent: 30},
}

// TierFor returns the tier a monthly spend (micro-dollars, before discount) reaches.
func TierFor(spendMicroUSD int64) Tier {
	t := Tiers[0]
	for _, c := range Tiers {
		if spendMicroUSD >= c.MinMicroUSD {
			t = c
		}
	}
	return t
}

// Discounted applies a tier's discount to an amount, rounding half up.
func (t Tier) Discounted(microUSD int64) int64 {
	return (microUSD*(100-t.DiscountPercent) + 50) / 100
}

// PriceList is the published price list, for clients that show it.
type PriceList struct {
	CPUPerVCPUSecondUSD   float64            `json:"cpu_per_vcpu_second_usd"`
	MemoryPerGBSecondUSD  float64            `json:"memory_per_gb_second_usd"`
	GPUPerHourUSD         float64            `json:"gpu_per_hour_usd"`
	SnapshotPerGBMonthUSD float64            `json:"snapshot_per_gb_month_usd"`
	EgressPerGBUSD        float64            `json:"egress_per_gb_usd"`
	ModeMultipliers       map[string]float64 `json:"mode_multipliers"`
}

// Prices returns the price list.
func Prices() PriceList {
	m := map[string]float64{}
	for mode, tenths := range modeMultiplier {
		m[mode] = float64(tenths) / multiplierDenominator
	}
	return PriceList{
		CPUPerVCPUSecondUSD: 0.000024, MemoryPerGBSecondUSD: 0.000003, GPUPerHourUSD: 0.50,
		SnapshotPerGBMonthUSD: 0.10, EgressPerGBUSD: 0.09, ModeMultipliers: m,
	}
}

// Snapshot storage is billed per GB-month ($0.10); a month here is 30 days.
const (
	secondsPerMonth               = 30 * 24 * 3600
	snapshotMicroUSDPerGBMonth    = 100_000
	bytesPerGB                    = 1 << 30
	snapshotByteSecondsPerGBMonth = float64(bytesPerGB) * secondsPerMonth
)

// SnapshotGBMonths converts byte-seconds of snapshot storage to GB-months.
func SnapshotGBMonths(byteSeconds float64) float64 {
	return byteSeconds / snapshotByteSecondsPerGBMonth
}

// SnapshotStorageCost prices byte-seconds of snapshot storage in micro-dollars.
func SnapshotStorageCost(byteSeconds float64) int64 {
	return int64(SnapshotGBMonths(byteSeconds)*snapshotMicroUSDPerGBMonth + 0.5)
}
