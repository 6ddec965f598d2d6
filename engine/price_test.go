package engine

import (
	"runtime"
	"testing"
	"time"
)

func TestTierFor(t *testing.T) {
	tests := []struct {
		spend    int64
		tier     string
		discount int64
	}{
		{0, "starter", 0},
		{99_999_999, "starter", 0},
		{100_000_000, "growth", 10},
		{999_999_999, "growth", 10},
		{1_000_000_000, "scale", 20},
		{9_999_999_999, "scale", 20},
		{10_000_000_000, "enterprise", 30},
		{1 << 50, "enterprise", 30},
	}
	for _, tt := range tests {
		got := TierFor(tt.spend)
		if got.Name != tt.tier || got.DiscountPercent != tt.discount {
			t.Errorf("TierFor(%d) = %+v, want %s at %d%%", tt.spend, got, tt.tier, tt.discount)
		}
	}
	if got := TierFor(200_000_000).Discounted(200_000_000); got != 180_000_000 {
		t.Errorf("growth discount of $200 = %d micro-dollars, want 180000000", got)
	}
}

func TestPrice(t *testing.T) {
	tests := []struct {
		name string
		mode string
		cpu  time.Duration
		mem  int64
		d    time.Duration
		want int64
	}{
		// One vCPU-second is $0.000024 = 24 micro-dollars.
		{"one cpu second", ModeEphemeral, time.Second, 0, time.Second, 24},
		// One GiB held for 1000 s is $0.003 = 3000 micro-dollars.
		{"one GB for 1000 s", ModeEphemeral, 0, 1 << 30, 1000 * time.Second, 3000},
		{"cached is 0.8x", ModeCached, 10 * time.Second, 0, time.Second, 192},
		{"branched is 1.5x", ModeBranched, 10 * time.Second, 0, time.Second, 360},
		{"persistent is 2x", ModePersistent, 10 * time.Second, 0, time.Second, 480},
		{"checkpointed is 1.2x", ModeCheckpointed, 10 * time.Second, 0, time.Second, 288},
		{"rounds to the micro-dollar", ModeEphemeral, 20 * time.Millisecond, 0, 0, 0},
	}
	for _, tt := range tests {
		if got := Price(tt.mode, tt.cpu, tt.mem, tt.d); got != tt.want {
			t.Errorf("%s: Price = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestSnapshotStorageCost(t *testing.T) {
	// 1 GiB kept for a 30-day month is $0.10; 10 GiB for 3 days is $0.10 too.
	month := float64(30 * 24 * 3600)
	for _, c := range []struct {
		byteSeconds float64
		micro       int64
	}{
		{float64(1<<30) * month, 100_000},
		{float64(10<<30) * month / 10, 100_000},
		{0, 0},
		{float64(1<<20) * 3600, 0}, // 1 MiB for an hour rounds to nothing
	} {
		if got := SnapshotStorageCost(c.byteSeconds); got != c.micro {
			t.Errorf("SnapshotStorageCost(%g) = %d, want %d", c.byteSeconds, got, c.micro)
		}
	}
}

// TestReportedBounds: what a sandbox's agent reports of an execution is billed
// only within what the execution could have used.
func TestReportedBounds(t *testing.T) {
	const kb = 1 << 10
	for _, tt := range []struct {
		kb      int64
		limitMB int
		want    int64
	}{
		{200 * kb, 512, 200 << 20},
		{-1, 512, 0},
		{1 << 52, 512, 512 << 20}, // 4 EiB claimed
		{1<<63 - 1, 8192, 8192 << 20},
	} {
		if got := reportedMemory(tt.kb, tt.limitMB); got != tt.want {
			t.Errorf("reportedMemory(%d KiB, %d MB) = %d, want %d", tt.kb, tt.limitMB, got, tt.want)
		}
	}
	most := time.Duration(1010*runtime.NumCPU()) * time.Millisecond
	for _, tt := range []struct {
		user, system int64
		want         time.Duration
	}{
		{300, 200, 500 * time.Millisecond},
		{-5_000_000, 200, 200 * time.Millisecond},
		{1<<63 - 1, 1<<63 - 1, most},
	} {
		if got := reportedCPU(tt.user, tt.system, time.Second); got != tt.want {
			t.Errorf("reportedCPU(%d, %d ms in 1 s) = %v, want %v", tt.user, tt.system, got, tt.want)
		}
	}
	if p := Price(ModeCached, reportedCPU(1<<62, 1<<62, time.Hour), reportedMemory(1<<62, 8192), time.Hour); p < 0 {
		t.Errorf("the most an hour's report can bill is negative: %d", p)
	}
}
