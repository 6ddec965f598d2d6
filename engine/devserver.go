package engine

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"
)

// ErrUnprocessable: the request is well formed but the object cannot do it (an
// image lacks the program a service needs).
var ErrUnprocessable = errors.New("unprocessable")

// devService is a development server an instance can run if its image has it.
type devService struct {
	bins []string // the programs it needs, all of them (alternatives separated by |)
	port int
	// command starts it in the background; prefix is the path it is proxied under.
	command    func(prefix string) string
	keepPrefix bool // it serves under prefix itself (so the proxy keeps it)
}

// DevServices are the development servers of POST /api/v1/instances/{id}/{name}.
var devServices = map[string]devService{
	"jupyter": {bins: []string{"jupyter-notebook|jupyter"}, port: 8888, keepPrefix: true, command: func(prefix string) string {
		return "jupyter-notebook --no-browser --ip=127.0.0.1 --port=8888 --NotebookApp.token='' --NotebookApp.password='' " +
			"--NotebookApp.base_url=" + prefix + " --notebook-dir=/workspace"
	}},
	"vscode": {bins: []string{"code-server"}, port: 8443, command: func(string) string {
		return "code-server --bind-addr 127.0.0.1:8443 --auth none /workspace"
	}},
	"vnc": {bins: []string{"Xvfb", "x11vnc", "websockify"}, port: 6080, command: func(string) string {
		return "Xvfb :1 -screen 0 1280x800x24 & sleep 1; x11vnc -display :1 -forever -nopw -localhost -quiet & websockify 6080 localhost:5900"
	}},
}

// DevServiceNames lists the development servers.
func DevServiceNames() []string { return []string{"jupyter", "vscode", "vnc"} }

// StartDevServer starts a development server in a running instance (if it is not
// running yet), exposes it (to the owner's key only) under the service's name,
// and returns the exposure once the server answers. prefix is the URL path it will
// be proxied under.
func (e *Engine) StartDevServer(ctx context.Context, account, id, name string, prefix func(Exposure) string) (Exposure, error) {
	svc, ok := devServices[name]
	if !ok {
		return Exposure{}, errorf(ErrNotFound, "no service %q; services are %s", name, strings.Join(DevServiceNames(), ", "))
	}
	ex := Exposure{Name: name, Port: svc.port, KeepPrefix: svc.keepPrefix}
	b, release, err := e.runningBox(account, id)
	if err != nil {
		return Exposure{}, err
	}
	var missing []string
	for _, alts := range svc.bins {
		found := false
		for _, bin := range strings.Split(alts, "|") {
			if e.rootExec(ctx, b, []string{"/bin/sh", "-c", "command -v " + bin}, nil, io.Discard) == nil {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, strings.ReplaceAll(alts, "|", " or "))
		}
	}
	if len(missing) > 0 {
		release()
		return Exposure{}, errorf(ErrUnprocessable, "the instance's image (%s) lacks %s, which %s needs; use an image that provides it",
			e.imageOf(account, id), strings.Join(missing, ", "), name)
	}
	release()
	if t, err := e.DialInstance(ctx, account, id, svc.port); err == nil {
		t.Close() // already running
	} else {
		cmd := "nohup sh -c " + shellQuote(svc.command(prefix(ex))) + " >/tmp/" + name + ".log 2>&1 &"
		res, err := e.ExecInstance(ctx, account, id, InstanceExecRequest{Command: cmd, Timeout: 30 * time.Second})
		if err != nil {
			return Exposure{}, err
		}
		if res.ExitCode != 0 {
			return Exposure{}, errorf(ErrUnprocessable, "starting %s failed: %s", name, res.Stderr)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			t, err := e.DialInstance(ctx, account, id, svc.port)
			if err == nil {
				t.Close()
				break
			}
			if time.Now().After(deadline) {
				return Exposure{}, errorf(ErrUnprocessable, "%s did not start listening on port %d within 60 s (its log is /tmp/%s.log in the instance)", name, svc.port, name)
			}
			select {
			case <-ctx.Done():
				return Exposure{}, ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	if _, err := e.Expose(account, id, ex); err != nil {
		return Exposure{}, err
	}
	return ex, nil
}

func (e *Engine) imageOf(account, id string) string {
	if info, err := e.Instance(account, id); err == nil {
		return info.Image
	}
	return "?"
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
