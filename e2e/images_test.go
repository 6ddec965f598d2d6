package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faas-platform/faas/internal/testimage"
	"github.com/faas-platform/faas/internal/testserver"
)

// busyboxImage builds a docker-archive of a tiny busybox image (testimage).
func busyboxImage(t *testing.T, tag string, extra map[string]string) []byte {
	t.Helper()
	if _, err := os.Stat(testimage.Busybox); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("busybox-static is missing: scripts/setup.sh installs it for the tests")
		}
		t.Skip("no " + testimage.Busybox)
	}
	b, err := testimage.DockerArchive(tag, extra)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestImages imports an image built here, runs code in it (its own root
// filesystem, not the host's; its Env and WorkingDir), and checks the errors.
func TestImages(t *testing.T) {
	s := testserver.Start(t, testserver.Options{})
	ctx := context.Background()
	archive := busyboxImage(t, "faas-test/busybox:1", nil)
	status, b, _ := s.Do(ctx, "POST", "/api/v1/images/import", archive)
	if status != http.StatusCreated || !strings.Contains(string(b), "faas-test/busybox:1") {
		t.Fatalf("import: %d %s", status, b)
	}
	out := mustCall(t, s, http.StatusOK, "POST", "/api/v1/execute", map[string]any{"image": "faas-test/busybox:1",
		"command": "echo $GREETING; pwd; cat /etc/os-release; test -e /usr/bin/python3 && echo host-usr || echo no-host-usr"})
	if got := str(out["stdout"]); got != "hello from the image\n/app\nID=faas-test\n\nno-host-usr\n" || out["exit_code"].(float64) != 0 {
		t.Errorf("in the image: %v", out)
	}
	// Cached mode and instances run images too.
	if out := mustCall(t, s, http.StatusOK, "POST", "/api/v1/execute", map[string]any{"mode": "cached", "image": "faas-test/busybox:1", "command": "id -u"}); str(out["stdout"]) != "1000\n" {
		t.Errorf("cached in the image: %v", out)
	}
	// An image without node: cached JavaScript cannot have a node standby; it
	// fails as node -e would (not found), at once rather than after waiting for one.
	start := time.Now()
	if out := mustCall(t, s, http.StatusOK, "POST", "/api/v1/execute", map[string]any{"mode": "cached", "image": "faas-test/busybox:1", "language": "javascript", "code": "console.log(1)"}); out["exit_code"].(float64) != 127 {
		t.Errorf("cached javascript in an image without node: %v", out)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("cached javascript in an image without node took %v", took)
	}
	inst := mustCall(t, s, http.StatusCreated, "POST", "/api/v1/instances", map[string]any{"image": "faas-test/busybox:1"})
	if out := instExec(t, s, str(inst["id"]), map[string]any{"command": "echo $GREETING > /tmp/f; cat /tmp/f; pwd"}); str(out["stdout"]) != "hello from the image\n/app\n" {
		t.Errorf("instance of the image: %v", out)
	}
	mustCall(t, s, http.StatusOK, "DELETE", "/api/v1/instances/"+str(inst["id"]), nil)

	list := mustCall(t, s, http.StatusOK, "GET", "/api/v1/images", nil)
	if n := len(list["images"].([]any)); n != 1 {
		t.Errorf("images: %v", list)
	}
	// The CLI imports a file (a second name for the same image) and lists it.
	file := filepath.Join(t.TempDir(), "busybox.tar")
	if err := os.WriteFile(file, archive, 0o600); err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(testserver.Binaries(t), "faas"), args...)
		cmd.Env = append(os.Environ(), "FAAS_ENDPOINT="+s.URL, "FAAS_API_KEY="+s.Key)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("faas %v: %v %s", args, err, out)
		}
		return string(out)
	}
	cli("images", "import", "--name", "faas-test/busybox:cli", file)
	if out := cli("images", "ls"); !strings.Contains(out, "faas-test/busybox:cli") || !strings.Contains(out, "faas-test/busybox:1") {
		t.Errorf("faas images ls: %s", out)
	}
	cli("images", "rm", "faas-test/busybox:cli")
	// Errors: unknown image, a bad archive, a non-admin import, an unreachable registry.
	if status, out := call(t, s, s.Key, "POST", "/api/v1/execute", map[string]any{"image": "nope/nothing:1", "command": "true"}); status != http.StatusNotFound || !strings.Contains(str(out["error"]), "nope/nothing") {
		t.Errorf("unknown image: %d %v", status, out)
	}
	if status, b, _ := s.Do(ctx, "POST", "/api/v1/images/import", []byte("this is not an image archive at all")); status != http.StatusBadRequest {
		t.Errorf("garbage import: %d %s", status, b)
	}
	if status, b, _ := s.DoWithKey(ctx, s.NewKey(ctx, "execute"), "POST", "/api/v1/images/import", archive); status != http.StatusForbidden {
		t.Errorf("import without admin: %d %s", status, b)
	}
	if status, out := call(t, s, s.Key, "POST", "/api/v1/images/pull", map[string]any{"ref": "127.0.0.1:1/nothing:1"}); status != http.StatusBadGateway {
		t.Errorf("pull from an unreachable registry: %d %v", status, out)
	}
	if list := mustCall(t, s, http.StatusOK, "GET", "/api/v1/images", nil); len(list["images"].([]any)) != 1 {
		t.Errorf("failed imports left images listed: %v", list)
	}
	// The instance's sandbox goes in the background; then the image is free.
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, out := call(t, s, s.Key, "DELETE", "/api/v1/images/faas-test/busybox:1", nil)
		if status == http.StatusOK {
			break
		}
		if status != http.StatusConflict || time.Now().After(deadline) {
			t.Fatalf("removing the image: %d %v", status, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if status, _ := call(t, s, s.Key, "POST", "/api/v1/execute", map[string]any{"image": "faas-test/busybox:1", "command": "true"}); status != http.StatusNotFound {
		t.Errorf("removed image still runs: %d", status)
	}
}

// TestStockImages keeps a stock of pre-booted sandboxes of an image (configured
// before the image is there) and of the host image for JavaScript, and checks
// that requests take them and that the image can still be removed.
func TestStockImages(t *testing.T) {
	const ref = "faas-test/busybox:stock"
	s := testserver.Start(t, testserver.Options{Env: []string{
		"FAAS_STOCK=0", "FAAS_STOCK_IMAGES=bash@" + ref + "=2,javascript@host=1",
	}})
	ctx := context.Background()
	type target struct {
		Image     string
		Languages []string
		Target    int
		Ready     int
		Booted    int
		Error     string
	}
	stock := func() map[string]target {
		t.Helper()
		var p struct{ Stock struct{ Targets []target } }
		status, b, _ := s.Do(ctx, "GET", "/api/v1/pools", nil)
		if status != http.StatusOK || json.Unmarshal(b, &p) != nil {
			t.Fatalf("pools: %d %s", status, b)
		}
		out := map[string]target{}
		for _, tg := range p.Stock.Targets {
			out[tg.Image] = tg
		}
		return out
	}
	// waitFor waits until the image's stock has ready sandboxes, booted so far.
	waitFor := func(image string, ready, booted int, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			tg := stock()[image]
			if tg.Ready == ready && tg.Booted == booted {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("stock of %s: %+v, want %d ready, %d booted", image, tg, ready, booted)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	waitFor("host", 1, 1, time.Minute)
	if tg := stock()[ref]; tg.Target != 2 || tg.Ready != 0 || !strings.Contains(tg.Error, ref) || !slices.Equal(tg.Languages, []string{"bash"}) {
		t.Errorf("stock of an image not imported yet: %+v", tg)
	}
	// Importing the image fills its stock at once (not at the next retry, 30 s on).
	archive := busyboxImage(t, ref, nil)
	if status, b, _ := s.Do(ctx, "POST", "/api/v1/images/import", archive); status != http.StatusCreated {
		t.Fatalf("import: %d %s", status, b)
	}
	waitFor(ref, 2, 2, 20*time.Second)
	if tg := stock()[ref]; tg.Error != "" {
		t.Errorf("stock of an imported image: %+v", tg)
	}

	// An ephemeral execution in the image takes a stocked sandbox (which the
	// stock replaces) and runs in the image.
	out := mustCall(t, s, http.StatusOK, "POST", "/api/v1/execute", map[string]any{"image": ref, "command": "echo $GREETING; pwd"})
	if got := str(out["stdout"]); got != "hello from the image\n/app\n" {
		t.Errorf("ephemeral in a stocked image: %v", out)
	}
	waitFor(ref, 2, 3, 20*time.Second)
	// So does a cached execution's first request (its pool's first sandbox).
	out = mustCall(t, s, http.StatusOK, "POST", "/api/v1/execute", map[string]any{"mode": "cached", "image": ref, "command": "id -u"})
	if str(out["stdout"]) != "1000\n" {
		t.Errorf("cached in a stocked image: %v", out)
	}
	waitFor(ref, 2, 4, 20*time.Second)
	// Cached JavaScript takes the host sandbox stocked with a node standby.
	out = mustCall(t, s, http.StatusOK, "POST", "/api/v1/execute", map[string]any{"mode": "cached", "language": "javascript", "code": "console.log(6 * 7)"})
	if str(out["stdout"]) != "42\n" || out["warm"] != false {
		t.Errorf("cached javascript from the stock: %v", out)
	}
	waitFor("host", 1, 2, 20*time.Second)

	// The stocked sandboxes do not keep the image from being removed (the idle
	// cached sandbox does not either); its stock is then empty.
	mustCall(t, s, http.StatusOK, "DELETE", "/api/v1/images/"+ref, nil)
	if tg := stock()[ref]; tg.Ready != 0 {
		t.Errorf("stock of a removed image: %+v", tg)
	}
	// A request for it now fails as for any unknown image.
	if status, out := call(t, s, s.Key, "POST", "/api/v1/execute", map[string]any{"image": ref, "command": "true"}); status != http.StatusNotFound {
		t.Errorf("a removed image: %d %v", status, out)
	}
}

// TestLanguageImages maps a language to an image: requests of that language that
// name no image run in it, and prewarming it warms that image's pool.
func TestLanguageImages(t *testing.T) {
	const ref = "faas-test/busybox:lang"
	s := testserver.Start(t, testserver.Options{Env: []string{"FAAS_LANGUAGE_IMAGES=python=" + ref}})
	ctx := context.Background()
	if status, b, _ := s.Do(ctx, "POST", "/api/v1/images/import", busyboxImage(t, ref, nil)); status != http.StatusCreated {
		t.Fatalf("import: %d %s", status, b)
	}
	// The image has no python3: the request ran in it.
	out := mustCall(t, s, http.StatusOK, "POST", "/api/v1/execute", map[string]any{"language": "python", "code": "print(1)"})
	if out["exit_code"] != float64(127) || !strings.Contains(str(out["error"])+str(out["stderr"]), "python3") {
		t.Errorf("python, mapped to an image without python: %v", out)
	}
	// Naming the host image, or another language, runs on the host.
	if out := mustCall(t, s, http.StatusOK, "POST", "/api/v1/execute", map[string]any{"language": "python", "image": "host", "code": "print(1)"}); str(out["stdout"]) != "1\n" {
		t.Errorf("python on the host image: %v", out)
	}
	if out := mustCall(t, s, http.StatusOK, "POST", "/api/v1/execute", map[string]any{"language": "bash", "code": "echo 2"}); str(out["stdout"]) != "2\n" {
		t.Errorf("bash, not mapped: %v", out)
	}
	pw := mustCall(t, s, http.StatusOK, "POST", "/api/v1/prewarm", map[string]any{"language": "python", "count": 1})
	if pw["image"] != ref || pw["added"] != float64(1) {
		t.Errorf("prewarm of a mapped language: %v", pw)
	}
	if pool, _ := pw["pool"].(map[string]any); pool == nil || pool["image"] != ref || pool["idle"] != float64(1) {
		t.Errorf("prewarm of a mapped language, its pool: %v", pw)
	}
}

// TestStockDemandedLanguage: the default stock starts the Python and bash
// interpreters ahead, not node; once a JavaScript request takes a stocked
// sandbox, the stock's next sandboxes run node's standby too, and the next
// JavaScript request takes one.
func TestStockDemandedLanguage(t *testing.T) {
	s := testserver.Start(t, testserver.Options{Env: []string{"FAAS_STOCK=1", "FAAS_STOCK_LANGUAGES=python,bash"}})
	ctx := context.Background()
	type target struct {
		Image     string
		Languages []string
		Demanded  []string
		Warm      map[string]int
		Ready     int
		Booted    int
	}
	host := func() target {
		t.Helper()
		var p struct{ Stock struct{ Targets []target } }
		status, b, _ := s.Do(ctx, "GET", "/api/v1/pools", nil)
		if status != http.StatusOK || json.Unmarshal(b, &p) != nil || len(p.Stock.Targets) == 0 {
			t.Fatalf("pools: %d %s", status, b)
		}
		return p.Stock.Targets[0]
	}
	// waitFor waits until the stock holds its one sandbox, booted-th so far,
	// running node or not.
	waitFor := func(booted int, node bool) target {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); ; {
			tg := host()
			if tg.Ready == 1 && tg.Booted == booted && (tg.Warm["node"] == 1) == node && tg.Warm["python"] == 1 {
				return tg
			}
			if time.Now().After(deadline) {
				t.Fatalf("stock %+v, want its sandbox %d booted, running node: %v", tg, booted, node)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	js := func() {
		t.Helper()
		status, res := call(t, s, s.Key, "POST", "/api/v1/execute", map[string]any{"language": "javascript", "code": "console.log(6 * 7)"})
		if status != http.StatusOK || res["status"] != "succeeded" || res["stdout"] != "42\n" {
			t.Fatalf("javascript execution: %d %v", status, res)
		}
	}
	if tg := waitFor(1, false); tg.Image != "host" || !slices.Equal(tg.Languages, []string{"python", "bash"}) || len(tg.Demanded) != 0 || tg.Warm["bash"] != 1 {
		t.Errorf("stock before any JavaScript request: %+v", tg)
	}
	js() // takes the stocked sandbox, node started for it
	if tg := waitFor(2, true); !slices.Equal(tg.Demanded, []string{"javascript"}) {
		t.Errorf("stock after a JavaScript request: %+v", tg)
	}
	js() // takes the stocked sandbox running node's standby
	waitFor(3, true)
}
