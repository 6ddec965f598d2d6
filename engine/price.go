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
