package engine

import (
	"context"
	"reflect"
	"slices"
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

// TestStockDemand: a request of a language the stock does not warm makes the
// sandboxes it boots next start that language's zygote too, preferred for the
// next such request, until the demand window passes; with no window, never.
func TestStockDemand(t *testing.T) {
	const window = time.Second
	e := New(Config{StockSize: 2, StockLanguages: []string{"python"}, StockDemandWindow: window}, &fakeDriver{}, nil)
	defer e.Close(context.Background())
	take := func(lang string) *box {
		t.Helper()
		b, err := e.fresh(context.Background(), sandbox.Spec{Image: HostImage}, lang)
		if err != nil {
			t.Fatal(err)
		}
		e.destroyLater(b)
		return b
	}
	// waitWarm waits until n ready sandboxes run the node zygote.
	waitWarm := func(n int) ShelfStats {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; {
			sh := e.Stock().Shelves[0]
			if sh.Ready == 2 && sh.Warm["node"] == n {
				return sh
			}
			if time.Now().After(deadline) {
				t.Fatalf("stock %+v, want 2 ready, %d of them running node", sh, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if sh := waitWarm(0); sh.Warm["python"] != 2 || len(sh.Demanded) != 0 {
		t.Fatalf("stock before any demand: %+v", sh)
	}
	if b := take("javascript"); b.isWarm("javascript") {
		t.Fatal("the stock ran node before any request asked for it")
	}
	sh := waitWarm(1) // the one refill
	if !slices.Equal(sh.Demanded, []string{"javascript"}) || sh.Warm["python"] != 2 {
		t.Errorf("stock after a javascript request: %+v", sh)
	}
	if b := take("typescript"); !b.isWarm("typescript") || !b.isWarm("python") {
		t.Errorf("a typescript request got a sandbox warm for %v, want the one running node (and python)", b.warm)
	}
	waitWarm(1)
	// Each request of the language renews the demand, served warm or not.
	time.Sleep(window * 2 / 3)
	if b := take("javascript"); !b.isWarm("javascript") {
		t.Errorf("a javascript request got a sandbox warm for %v", b.warm)
	}
	time.Sleep(window * 2 / 3) // the first request's window is past, not the second's
	if sh := e.Stock().Shelves[0]; !slices.Equal(sh.Demanded, []string{"javascript"}) {
		t.Errorf("stock while javascript requests keep coming: %+v", sh)
	}
	time.Sleep(window + 50*time.Millisecond)
	take("python")
	if sh := waitWarm(1); len(sh.Demanded) != 0 { // the refill after the window does not run node
		t.Errorf("stock after the window: %+v", sh)
	}

	off := New(Config{StockSize: 1, StockLanguages: []string{"python"}}, &fakeDriver{}, nil)
	defer off.Close(context.Background())
	for range 2 {
		b, err := off.fresh(context.Background(), sandbox.Spec{Image: HostImage}, "javascript")
		if err != nil {
			t.Fatal(err)
		}
		if b.isWarm("javascript") {
			t.Error("with no demand window a stocked sandbox ran node")
		}
		off.destroyLater(b)
		for deadline := time.Now().Add(5 * time.Second); off.stock.len() != 1 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	}
}
