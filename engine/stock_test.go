package engine

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/faas-platform/faas/sandbox"
)

func TestParseStockTargets(t *testing.T) {
	got, err := ParseStockTargets(" python@python:3.12-slim=2, js+ts@node@sha256:ab=1,bash@host=64,")
	want := []StockTarget{
		{Image: "python:3.12-slim", Languages: []string{"python"}, Size: 2},
		{Image: "node@sha256:ab", Languages: []string{"javascript", "typescript"}, Size: 1},
		{Image: "host", Languages: []string{"bash"}, Size: 64},
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, %v; want %+v", got, err, want)
	}
	if got, err := ParseStockTargets(""); err != nil || got != nil {
		t.Errorf("empty: %+v, %v", got, err)
	}
	for _, bad := range []string{"python", "python@img", "python@img=0", "python@img=65", "python@img=x", "cobol@img=1", "python@=1", "@img=1"} {
		if _, err := ParseStockTargets(bad); err == nil || !strings.Contains(err.Error(), "LANGUAGE[+LANGUAGE]@IMAGE=SIZE") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestStockPrefersLanguage: of the stocked sandboxes of an image, a request
// takes one running its language's zygote; the stock refills each target.
func TestStockPrefersLanguage(t *testing.T) {
	d := &fakeDriver{}
	e := New(Config{StockTargets: []StockTarget{
		{Image: HostImage, Languages: []string{"python"}, Size: 1},
		{Image: HostImage, Languages: []string{"javascript"}, Size: 2},
	}}, d, nil)
	defer e.Close(context.Background())
	waitReady := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); e.stock.len() != want; {
			if time.Now().After(deadline) {
				t.Fatalf("stock: %+v, want %d ready", e.Stock(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitReady(3)
	for _, lang := range []string{"typescript", "python", "javascript", "python"} {
		b, err := e.fresh(context.Background(), sandbox.Spec{Image: HostImage}, lang)
		if err != nil {
			t.Fatal(err)
		}
		if !b.isWarm(lang) {
			t.Errorf("a %s request got a sandbox warm for %v", lang, b.warm)
		}
		e.destroyLater(b)
		waitReady(3)
	}
	st := e.Stock()
	if st.Target != 3 || st.Ready != 3 || st.Booted != 7 || len(st.Shelves) != 2 || st.Shelves[0].Booted != 3 || st.Shelves[1].Booted != 4 {
		t.Errorf("stock: %+v", st)
	}
}
