package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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
