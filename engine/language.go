package engine

import (
	"fmt"
	"sort"
	"strings"

	"github.com/evanw/esbuild/pkg/api"
)

// MaxCodeBytes bounds a request's code or command: each is passed to its
// interpreter as one argument, and Linux takes none longer than 128 KiB (with its
// terminating NUL).
const MaxCodeBytes = 128<<10 - 1

// command returns the argv that runs a request's code or command in the host image.
// TypeScript is compiled to JavaScript here, on the host, by esbuild (types are
// stripped, nothing is type-checked), so every image with node runs it.
func command(r *Request) ([]string, error) {
	if r.Command != "" {
		return []string{"/bin/sh", "-c", r.Command}, nil
	}
	switch r.Language {
	case "python":
		return []string{"python3", "-c", r.Code}, nil
	case "javascript":
		return []string{"node", "-e", r.Code}, nil
	case "typescript":
		js, err := compileTypeScript(r.Code)
		if err != nil {
			return nil, err
		}
		if len(js) > MaxCodeBytes {
			return nil, invalid(fmt.Sprintf("typescript compiles to %d bytes of javascript; the limit is %d", len(js), MaxCodeBytes))
		}
		return []string{"node", "-e", js}, nil
	case "bash":
		return []string{"bash", "-c", r.Code}, nil
	}
	return nil, invalid(fmt.Sprintf("unknown language %q", r.Language))
}

func compileTypeScript(code string) (string, error) {
	res := api.Transform(code, api.TransformOptions{
		Loader:   api.LoaderTS,
		Format:   api.FormatCommonJS,
		Target:   api.ES2022,
		Platform: api.PlatformNode,
	})
	if len(res.Errors) > 0 {
		var b strings.Builder
		b.WriteString("typescript does not compile:")
		for _, m := range res.Errors {
			if m.Location != nil {
				fmt.Fprintf(&b, " line %d:%d: %s;", m.Location.Line, m.Location.Column+1, m.Text)
			} else {
				fmt.Fprintf(&b, " %s;", m.Text)
			}
		}
		return "", invalid(strings.TrimSuffix(b.String(), ";"))
	}
	return string(res.Code), nil
}

// environment returns the process environment: sane defaults, then the request's.
func environment(r *Request) []string { return environmentWith(r, nil) }

// environmentWith returns the process environment: sane defaults, then the
// image's (KEY=value), then the request's.
func environmentWith(r *Request, image []string) []string {
	env := map[string]string{
		"PATH":             "/usr/local/bin:/usr/bin:/bin",
		"HOME":             "/home/user",
		"USER":             "user",
		"LANG":             "C.UTF-8",
		"TZ":               "UTC",
		"TERM":             "xterm",
		"PYTHONUNBUFFERED": "1",
	}
	for _, kv := range image {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			env[k] = v
		}
	}
	for k, v := range r.Env {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// Environment is the environment of a process started for a client (a shell or
// command in an instance): the sane defaults, then extra.
func Environment(extra map[string]string) []string {
	return environment(&Request{Env: extra})
}
