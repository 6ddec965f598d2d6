package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// MaxBranches bounds the branches one request may create.
const MaxBranches = 32

// Branch restores the snapshot req.ParentSnapshot into count new branches at once
// and runs req's code in each (mode branched). Each branch is a session of its
// own: later executions may name it (session_id), and it can be snapshotted. If
// any branch fails to start, the others are ended and the error returned; a
// branch whose code fails is not an error (its Result says so).
func (e *Engine) Branch(ctx context.Context, req Request, count int) ([]*Result, error) {
	if count < 1 || count > MaxBranches {
		return nil, invalid(fmt.Sprintf("count must be between 1 and %d", MaxBranches))
	}
	if req.ParentSnapshot == "" {
		return nil, invalid("parent_snapshot is required: the snapshot to branch from")
	}
	if req.SessionID != "" && count > 1 {
		return nil, invalid("session_id names one branch; leave it out when count is above 1")
	}
	req.Mode = ModeBranched
	req.fanOut = true
	results := make([]*Result, count)
	errs := make([]error, count)
	var wg sync.WaitGroup
	for i := range count {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = e.Execute(ctx, req)
		}()
	}
	wg.Wait()
	// Fan-outs tend to repeat: keep as many ready for the next one.
	if sn, err := e.store.GetSnapshot(ctx, req.Account, req.ParentSnapshot); err == nil {
		e.branches.demand(sn, count)
	}
	if err := errors.Join(errs...); err != nil {
		for _, res := range results {
			if res != nil && res.SessionID != "" {
				if s, lerr := e.lookupSession(req.Account, res.SessionID); lerr == nil {
					e.endSession(s)
				}
			}
		}
		for _, err := range errs {
			if err != nil {
				return nil, err // the first: they are usually all the same
			}
		}
	}
	return results, nil
}
