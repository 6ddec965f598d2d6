package engine

import (
	"fmt"
	"sync"
)

// Quota bounds what one account may run at once. Zero fields are unlimited.
type Quota struct {
	// Executions is how many executions may run at once (each holds a sandbox).
	Executions int
	// VCPU bounds the CPU cores the account's running executions ask for together.
	VCPU float64
	// MemoryMB bounds the memory they ask for together.
	MemoryMB int
	// SnapshotMB bounds the disk the account's snapshots take together; a new
	// snapshot is refused once they reach it.
	SnapshotMB int
}

type quotas struct {
	limit Quota
	mu    sync.Mutex
	used  map[string]*held
}

type held struct {
	executions int
	vcpu       float64
	memoryMB   int
}

func newQuotas(limit Quota) *quotas {
	return &quotas{limit: limit, used: make(map[string]*held)}
}

// acquire reserves one running execution of cpu cores and memMB for the account,
// or fails with ErrQuota naming the limit. The caller must call release.
func (q *quotas) acquire(account string, cpu float64, memMB int) (release func(), err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	h := q.used[account]
	if h == nil {
		h = &held{}
		q.used[account] = h
	}
	l := q.limit
	switch {
	case l.Executions > 0 && h.executions+1 > l.Executions:
		return nil, fmt.Errorf("%w: the account already runs %d executions, its limit", ErrQuota, h.executions)
	case l.VCPU > 0 && h.vcpu+cpu > l.VCPU+1e-9:
		return nil, fmt.Errorf("%w: %g more CPU cores would take the account's running executions over its limit of %g (in use: %g)", ErrQuota, cpu, l.VCPU, h.vcpu)
	case l.MemoryMB > 0 && h.memoryMB+memMB > l.MemoryMB:
		return nil, fmt.Errorf("%w: %d MB more memory would take the account's running executions over its limit of %d MB (in use: %d MB)", ErrQuota, memMB, l.MemoryMB, h.memoryMB)
	}
	h.executions++
	h.vcpu += cpu
	h.memoryMB += memMB
	var once sync.Once
	return func() {
		once.Do(func() {
			q.mu.Lock()
			defer q.mu.Unlock()
			h.executions--
			h.vcpu -= cpu
			h.memoryMB -= memMB
			if h.executions == 0 {
				delete(q.used, account)
			}
		})
	}, nil
}
