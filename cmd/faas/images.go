package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/faas-platform/faas/engine"
	"github.com/faas-platform/faas/image"
)

// imageSource gives the engine the images of the store.
type imageSource struct{ s *image.Store }

func (i imageSource) Resolve(ref string) (string, engine.ImageConfig, func(), error) {
	img, release, err := i.s.Acquire(ref)
	if err != nil {
		return "", engine.ImageConfig{}, nil, err
	}
	return img.RootFS, engine.ImageConfig{Env: img.Config.Env, WorkingDir: img.Config.WorkingDir, User: img.Config.User}, release, nil
}

const imagesUsage = `usage: faas images import [--name NAME] FILE
       faas images pull REF
       faas images ls
       faas images rm REF

Manages the server's local image store (admin key). import takes a docker-archive
(docker save) or an OCI image layout tarball; - reads it from stdin. Flags may
come before or after the arguments.`

type imageLine struct {
	Digest    string    `json:"digest"`
	Names     []string  `json:"names"`
	SizeBytes int64     `json:"size_bytes"`
	CreatedAt time.Time `json:"created_at"`
}

// runImages is `faas images`.
func runImages(ctx context.Context, args []string) error {
	fs := newFlagSet("faas images", imagesUsage, os.Stderr)
	conn := clientFlags(fs, "admin API key")
	name := fs.String("name", "", "a name for the imported image (import)")
	cmd, pos, err := subcommand(fs, args, nil)
	if err != nil {
		return err
	}
	n, known := map[string]int{"import": 1, "pull": 1, "ls": 0, "list": 0, "rm": 1, "remove": 1}[cmd]
	if !known {
		return usageError{fmt.Sprintf("unknown subcommand %q (see faas images -h)", cmd)}
	}
	if len(pos) != n {
		return usageError{fmt.Sprintf("images %s takes %d argument(s), got %q (see faas images -h)", cmd, n, pos)}
	}
	_, endpoint, key := conn()
	call := func(method, path string, body io.Reader, out any) error {
		req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(endpoint, "/")+path, body)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("%w\nis a server running at %s? start one with `faas serve` or set FAAS_ENDPOINT", err, endpoint)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			var e struct{ Error string }
			if json.Unmarshal(b, &e) == nil && e.Error != "" {
				return fmt.Errorf("%s (%d)", e.Error, resp.StatusCode)
			}
			return fmt.Errorf("%s: %s", resp.Status, b)
		}
		if out != nil {
			return json.Unmarshal(b, out)
		}
		return nil
	}
	printImages := func(list []imageLine) error {
		tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DIGEST\tNAMES\tSIZE\tCREATED")
		for _, img := range list {
			fmt.Fprintf(tw, "%s\t%s\t%.1f MB\t%s\n", img.Digest, strings.Join(img.Names, ","), float64(img.SizeBytes)/(1<<20), img.CreatedAt.Format("2006-01-02 15:04"))
		}
		return tw.Flush()
	}
	switch cmd {
	case "import":
		var in io.Reader = os.Stdin
		if pos[0] != "-" {
			f, err := os.Open(pos[0])
			if err != nil {
				return err
			}
			defer f.Close()
			in = f
		}
		var out struct{ Images []imageLine }
		if err := call("POST", "/api/v1/images/import?name="+url.QueryEscape(*name), in, &out); err != nil {
			return err
		}
		return printImages(out.Images)
	case "pull":
		var img imageLine
		b, _ := json.Marshal(map[string]string{"ref": pos[0]})
		if err := call("POST", "/api/v1/images/pull", strings.NewReader(string(b)), &img); err != nil {
			return err
		}
		return printImages([]imageLine{img})
	case "ls", "list":
		var out struct{ Images []imageLine }
		if err := call("GET", "/api/v1/images", nil, &out); err != nil {
			return err
		}
		return printImages(out.Images)
	case "rm", "remove":
		if err := call("DELETE", "/api/v1/images/"+pos[0], nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "removed %s\n", pos[0])
	}
	return nil
}
