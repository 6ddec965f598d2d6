package engine

import (
	"context"
	"sync"
	"time"
)

// Event is one thing that happened in an execution, in order: output as it was
// written, then its end.
type Event struct {
	Type string // EventStdout, EventStderr or EventExit
	Data []byte // output bytes (stdout, stderr)
}

// Event types.
const (
	EventStdout = "stdout"
	EventStderr = "stderr"
	EventExit   = "exit"
)

// Live is an execution while it runs and for a while after (LiveRetention): its
// output as events, for any number of followers, each at its own pace. The
// events are the execution's output as kept in its result (bounded by the output
// limit), so a follower that never reads costs nothing more than that: there is
// no per-follower buffer.
type Live struct {
	ID      string
	Account string
	Mode    string

	mu      sync.Mutex
	events  []Event
	bytes   int64         // output held in events
	changed chan struct{} // closed and replaced on every change
	done    chan struct{}
	ended   time.Time
	res     *Result
	err     error

	stdin     chan []byte // interactive executions only
	stdinOnce sync.Once
	stop      chan struct{}
	stopOnce  sync.Once
}

// LiveRetention is how long a finished execution's output stays attachable, as
// long as finished executions hold no more than liveRetainBytes of output and
// liveRetainCount executions together (the oldest go first).
const (
	LiveRetention   = 10 * time.Minute
	liveRetainBytes = 256 << 20
	liveRetainCount = 10000
)

func newLive(id, account, mode string, interactive bool) *Live {
	l := &Live{ID: id, Account: account, Mode: mode, changed: make(chan struct{}), done: make(chan struct{}), stop: make(chan struct{})}
	if interactive {
		l.stdin = make(chan []byte, 64)
	}
	return l
}

func (l *Live) appendEvent(ev Event) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.bytes += int64(len(ev.Data))
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

// liveWriter appends what is written as events of one type.
type liveWriter struct {
	l   *Live
	typ string
}

func (w liveWriter) Write(p []byte) (int, error) {
	w.l.appendEvent(Event{Type: w.typ, Data: append([]byte(nil), p...)})
	return len(p), nil
}

func (l *Live) finish(res *Result, err error) {
	l.mu.Lock()
	l.res, l.err = res, err
	l.ended = time.Now()
	l.events = append(l.events, Event{Type: EventExit})
	close(l.changed)
	l.changed = make(chan struct{})
	close(l.done)
	l.mu.Unlock()
}

// Done is closed when the execution has ended.
func (l *Live) Done() <-chan struct{} { return l.done }

// Result returns the execution's result once Done is closed.
func (l *Live) Result() (*Result, error) {
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.res, l.err
}

// Next returns the events after the first from ones (from 0: all, a replay), waiting
// until there is at least one or ctx ends. The last event of an execution is
// EventExit.
func (l *Live) Next(ctx context.Context, from int) ([]Event, error) {
	for {
		l.mu.Lock()
		if from < len(l.events) {
			evs := l.events[from:len(l.events):len(l.events)]
			l.mu.Unlock()
			return evs, nil
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// WriteStdin sends bytes to an interactive execution's standard input. It blocks
// while the process does not read (back-pressure), until ctx ends.
func (l *Live) WriteStdin(ctx context.Context, b []byte) error {
	if l.stdin == nil {
		return invalid("this execution was not started with interactive stdin")
	}
	select {
	case l.stdin <- append([]byte(nil), b...):
		return nil
	case <-l.done:
		return invalid("the execution has ended")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CloseStdin ends an interactive execution's standard input.
func (l *Live) CloseStdin() {
	if l.stdin != nil {
		l.stdinOnce.Do(func() { close(l.stdin) })
	}
}

// Stop kills the execution's process tree; its result says it was stopped.
func (l *Live) Stop() { l.stopOnce.Do(func() { close(l.stop) }) }

// lives indexes running and recently finished executions.
type lives struct {
	mu       sync.Mutex
	m        map[string]*Live
	finished []*Live // oldest first
	retained int64   // output bytes of finished
}

func (ls *lives) add(l *Live) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.m[l.ID] = l
}

// ended moves l among the finished, forgetting the oldest beyond the retention
// time, bytes or count.
func (ls *lives) ended(l *Live) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.finished = append(ls.finished, l)
	ls.retained += l.size()
	now := time.Now()
	for len(ls.finished) > 0 {
		old := ls.finished[0]
		if now.Sub(old.endedAt()) <= LiveRetention && ls.retained <= liveRetainBytes && len(ls.finished) <= liveRetainCount {
			break
		}
		ls.finished = ls.finished[1:]
		ls.retained -= old.size()
		delete(ls.m, old.ID)
	}
}

func (l *Live) size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bytes
}

func (l *Live) endedAt() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ended
}

// Attach returns the live execution id of the account, running or finished within
// LiveRetention; ErrNotFound otherwise (also for another account's).
func (e *Engine) Attach(account, id string) (*Live, error) {
	e.lives.mu.Lock()
	l := e.lives.m[id]
	e.lives.mu.Unlock()
	if l == nil || l.Account != account {
		return nil, errorf(ErrNotFound, "execution %q is not running and its output is not kept any more (output is kept %v after the end)", id, LiveRetention)
	}
	l.mu.Lock()
	expired := !l.ended.IsZero() && time.Since(l.ended) > LiveRetention
	l.mu.Unlock()
	if expired {
		return nil, errorf(ErrNotFound, "the output of execution %q is not kept any more", id)
	}
	return l, nil
}
