package engine

import (
	"fmt"
	"testing"
)

func TestLiveRetentionBound(t *testing.T) {
	ls := &lives{m: make(map[string]*Live)}
	big := make([]byte, 64<<20)
	var ids []string
	for i := range 6 { // 6 x 64 MiB finished: only the newest 4 fit in 256 MiB
		l := newLive(fmt.Sprint("exec_", i), "a", ModeEphemeral, false)
		ls.add(l)
		l.appendEvent(Event{Type: EventStdout, Data: big})
		l.finish(&Result{}, nil)
		ls.ended(l)
		ids = append(ids, l.ID)
	}
	for i, id := range ids {
		_, kept := ls.m[id]
		if want := i >= 2; kept != want {
			t.Errorf("%s kept = %v, want %v (retained %d bytes)", id, kept, want, ls.retained)
		}
	}
	if ls.retained > liveRetainBytes {
		t.Errorf("retained %d bytes, over the bound", ls.retained)
	}
}
