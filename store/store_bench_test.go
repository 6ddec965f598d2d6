package store

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkExecutionRecord is what the store costs every execution: one
// CreateExecution when it starts and one FinishExecution when it ends, on
// SQLite in a temporary directory. "parallel" runs GOMAXPROCS writers at once.
// Run: go test -run '^$' -bench . ./store/
func BenchmarkExecutionRecord(b *testing.B) {
	open := func(b *testing.B) *Store {
		s, err := Open(context.Background(), "", b.TempDir())
		if err != nil {
			b.Fatalf("Open: %v", err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	record := func(ctx context.Context, s *Store, id string) error {
		e := Execution{
			ID: id, Account: "default", KeyID: "key_0123456789abcdef", Mode: "ephemeral",
			Language: "python", Image: "host", Status: StatusRunning, CreatedAt: time.Now(),
		}
		if err := s.CreateExecution(ctx, e); err != nil {
			return err
		}
		now := time.Now()
		e.Status, e.DurationMS, e.CPUMS, e.MemoryPeakMB, e.CostMicroUSD = StatusSucceeded, 61, 20, 12, 3
		e.StdoutBytes, e.FinishedAt = 2, &now
		return s.FinishExecution(ctx, e)
	}

	b.Run("sequential", func(b *testing.B) {
		s := open(b)
		ctx := context.Background()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := record(ctx, s, fmt.Sprintf("exec_seq_%d", i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		s := open(b)
		ctx := context.Background()
		var n atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := record(ctx, s, fmt.Sprintf("exec_par_%d", n.Add(1))); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
