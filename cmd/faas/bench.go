package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/faas-platform/faas/client"
	"github.com/faas-platform/faas/internal/testimage"
	"github.com/faas-platform/faas/sandbox/gvisor"
)

// runBench is `faas bench`: it starts a real server in this process (temporary
// data directory, loopback port, its own admin key), measures the platform's
// latency over HTTP with the Go SDK next to baselines measured in the same run
// (bare python3 and node on the host, `runsc do`, `docker run` where an engine
// runs), and writes a Markdown report and an SVG chart of the distributions.
//
// Scenarios are a table (benchScenarios); a scenario is one function that
// returns the durations it measured. A mode this build does not offer answers
// 501 (or its endpoint does not exist yet): its row says so instead of numbers.
func runBench(ctx context.Context, args []string) error {
	o, err := parseBenchArgs(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("faas bench runs gVisor sandboxes (an in-process server and runsc do) and needs root")
	}
	for _, p := range []struct{ what, path string }{{"runsc", o.runsc}, {"faas-agent", o.agent}} {
		if err := gvisor.CheckExecutable(p.path); err != nil {
			return fmt.Errorf("%s: %w (build it, or pass --%s)", p.what, err, p.what)
		}
	}

	// A closed pipe on stdout (faas bench | head) must not kill the process
	// before it has stopped its server and removed its state: writes fail
	// with EPIPE instead.
	signal.Ignore(syscall.SIGPIPE)

	tmp, err := os.MkdirTemp(os.TempDir(), "faas-bench-")
	if err != nil {
		return err
	}
	b := &bench{opts: o, tmp: tmp, progress: os.Stderr}
	defer func() {
		// Stop the server (it drains and destroys its sandboxes) before the
		// directory holding its state goes; also on Ctrl-C, when ctx is done.
		b.stopServer()
		if err := os.RemoveAll(tmp); err != nil {
			fmt.Fprintf(os.Stderr, "faas bench: removing %s: %v\n", tmp, err)
		}
	}()

	info := collectMachineInfo(ctx, o)
	fmt.Fprintf(b.progress, "faas bench: %d runs per scenario (%d warm-up), state in %s\n", o.runs, o.warmup, tmp)

	rows := make([]*benchRow, 0, len(o.scenarios))
	for _, s := range o.scenarios {
		rows = append(rows, &benchRow{scenario: s})
	}
	// Run the scenarios grouped by the server they need (none, stocked, no
	// stock), so only one server runs at a time and each starts once; the
	// report keeps the table's order.
	order := slices.Clone(rows)
	sort.SliceStable(order, func(i, j int) bool { return order[i].scenario.server < order[j].scenario.server })
	failed := 0
	for _, r := range order {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(b.progress, "  %-22s ", r.scenario.id)
		start := time.Now()
		b.runScenario(ctx, r)
		if ctx.Err() != nil {
			fmt.Fprintln(b.progress, "interrupted")
			break
		}
		fmt.Fprintf(b.progress, "%s (%.1fs)\n", r.summary(), time.Since(start).Seconds())
		if r.failed != "" {
			failed++
			b.printLogTail()
		}
	}
	b.stopServer()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}

	report := markdownReport(info, rows, o)
	fmt.Println()
	fmt.Print(report)
	if err := writeFileMkdir(o.out, []byte(report)); err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	if err := writeFileMkdir(o.svg, []byte(latencySVG(rows, info))); err != nil {
		return fmt.Errorf("writing chart: %w", err)
	}
	fmt.Fprintf(os.Stderr, "\nwrote %s and %s\n", o.out, o.svg)
	if failed > 0 {
		return fmt.Errorf("%d scenario(s) failed; see the report", failed)
	}
	return nil
}

// benchOptions are the parsed flags of `faas bench`.
type benchOptions struct {
	runs, warmup int
	out, svg     string
	runsc, agent string
	stock        int
	verbose      bool
	scenarios    []benchScenario // selected by --only, in table order
}

const benchUsage = `usage: faas bench [flags]

Starts a faas server in this process (temporary data directory, loopback port),
measures execution latency over HTTP next to baselines measured in the same
run, prints a Markdown report and writes it with an SVG chart. Needs root.

scenarios (for --only):
%s`

func parseBenchArgs(args []string, stderr io.Writer) (*benchOptions, error) {
	def, err := parseServe(nil)
	if err != nil {
		return nil, err
	}
	o := &benchOptions{}
	var only string
	var names strings.Builder
	for _, s := range benchScenarios() {
		fmt.Fprintf(&names, "  %-20s %s\n", s.id, s.name)
	}
	fs := newFlagSet("faas bench", fmt.Sprintf(benchUsage, names.String()), stderr)
	fs.IntVar(&o.runs, "runs", 30, "measured runs per scenario")
	fs.IntVar(&o.warmup, "warmup", 3, "unmeasured runs before each scenario")
	fs.StringVar(&o.out, "out", filepath.Join(".bench", "results.md"), "Markdown report `file`")
	fs.StringVar(&o.svg, "svg", filepath.Join(".bench", "latency.svg"), "SVG chart `file`")
	fs.StringVar(&only, "only", "", "comma-separated scenario `names` to run (default: all)")
	fs.StringVar(&o.runsc, "runsc", def.runsc, "static runsc `binary`")
	fs.StringVar(&o.agent, "agent", def.agent, "faas-agent `binary`")
	fs.IntVar(&o.stock, "stock", 2, "pre-booted sandboxes of the benchmarked server")
	fs.BoolVar(&o.verbose, "verbose", false, "show the in-process server's log instead of writing it to a file")
	positional, err := parseFlags(fs, args, nil)
	if err != nil {
		return nil, err
	}
	if len(positional) > 0 {
		return nil, usageError{fmt.Sprintf("bench takes no arguments, got %q", positional)}
	}
	if o.runs < 1 || o.warmup < 0 {
		return nil, usageError{"--runs must be at least 1 and --warmup not negative"}
	}
	if o.stock < 1 {
		return nil, usageError{"--stock must be at least 1 (the no-stock figure is its own scenario, ephemeral-cold)"}
	}
	all := benchScenarios()
	if only == "" {
		o.scenarios = all
		return o, nil
	}
	for _, name := range strings.Split(only, ",") {
		name = strings.TrimSpace(name)
		i := slices.IndexFunc(all, func(s benchScenario) bool { return s.id == name })
		if i < 0 {
			return nil, usageError{fmt.Sprintf("--only: unknown scenario %q (see faas bench -h)", name)}
		}
		if !slices.ContainsFunc(o.scenarios, func(s benchScenario) bool { return s.id == name }) {
			o.scenarios = append(o.scenarios, all[i])
		}
	}
	sort.SliceStable(o.scenarios, func(i, j int) bool {
		return slices.IndexFunc(all, func(s benchScenario) bool { return s.id == o.scenarios[i].id }) <
			slices.IndexFunc(all, func(s benchScenario) bool { return s.id == o.scenarios[j].id })
	})
	return o, nil
}

// Servers a scenario needs; the order is the order scenarios run in.
const (
	noServer      = iota // measures the host only
	stockedServer        // the benchmarked server, with --stock pre-booted sandboxes
	coldServer           // a server with no stock: every execution boots a sandbox
)

// benchScenario is one row of the report.
type benchScenario struct {
	id     string // for --only
	name   string // in the report
	server int    // noServer, stockedServer or coldServer
	// target is the goal from DESIGN.md ("Targets"); targetMS its number for
	// the chart and the met/missed verdict (0: none).
	target   string
	targetMS float64
	goalMS   float64 // the end goal, when stricter than today's target
	// seed is what the product README claims for it.
	seed string
	// run measures the scenario. It returns errNotAvailable when this build
	// does not offer it, and errSkipped when the machine cannot run it.
	run func(ctx context.Context, b *bench) (benchResult, error)
}

// benchResult is what a scenario measured.
type benchResult struct {
	durations []time.Duration
	note      string
}

// errNotAvailable marks a scenario the server refused with 501 (or whose
// endpoint does not exist yet): "not available in this build".
type errNotAvailable struct{ why string }

func (e errNotAvailable) Error() string { return "not available in this build: " + e.why }

// errSkipped marks a scenario the machine cannot run (no Docker engine).
type errSkipped struct{ why string }

func (e errSkipped) Error() string { return e.why }

const (
	pythonPrint = "print(1)"
	nodePrint   = "console.log(1)"
	shellPrint  = "echo 1"
)

// benchScenarios is the table of scenarios, in report order. Adding a row is
// one entry here and one function returning durations.
func benchScenarios() []benchScenario {
	const (
		ephemeralTarget = "p50 ≤ 150 ms now, ≤ 50 ms goal"
		seedEphemeral   = "200 ms"
	)
	return []benchScenario{
		{id: "python3", name: "baseline: bare python3 -c 'print(1)' on the host", server: noServer,
			target: "baseline", seed: "–", run: hostCommand("/usr/bin/python3", "-c", pythonPrint)},
		{id: "node", name: "baseline: bare node -e 'console.log(1)' on the host", server: noServer,
			target: "baseline", seed: "–", run: hostCommand("node", "-e", nodePrint)},
		{id: "bash", name: "baseline: bare bash -c 'echo 1' on the host", server: noServer,
			target: "baseline", seed: "–", run: hostCommand("bash", "-c", shellPrint)},
		{id: "runsc-do", name: "baseline: runsc --network=none do python3 -c 'print(1)'", server: noServer,
			target: "baseline", seed: "–", run: runscDo},
		{id: "docker", name: "baseline: docker run --rm python:3 python -c 'print(1)'", server: noServer,
			target: "baseline", seed: "–", run: dockerRun},
		{id: "ephemeral-python", name: "ephemeral python print(1), HTTP end to end, stocked", server: stockedServer,
			target: ephemeralTarget, targetMS: 150, goalMS: 50, seed: seedEphemeral, run: ephemeral(client.LanguagePython, pythonPrint)},
		{id: "ephemeral-js", name: "ephemeral javascript console.log(1), HTTP end to end, stocked", server: stockedServer,
			target: ephemeralTarget, targetMS: 150, goalMS: 50, seed: seedEphemeral, run: ephemeral(client.LanguageJavaScript, nodePrint)},
		{id: "ephemeral-bash", name: "ephemeral bash echo 1, HTTP end to end, stocked", server: stockedServer,
			target: "–", seed: seedEphemeral, run: ephemeral(client.LanguageBash, shellPrint)},
		{id: "ephemeral-cold", name: "ephemeral python print(1), no stock (sandbox boots per request)", server: coldServer,
			target: "– (reference: stock exhausted)", seed: seedEphemeral, run: ephemeral(client.LanguagePython, pythonPrint)},
		{id: "shell-cold-host", name: "ephemeral sh -c 'echo 1', no stock, host image", server: coldServer,
			target: "– (reference for image-cold)", seed: "–", run: shellCold(false)},
		{id: "image-cold", name: "ephemeral sh -c 'echo 1', no stock, an imported OCI image", server: coldServer,
			target: "–", seed: "–", run: shellCold(true)},
		{id: "throughput-1", name: "throughput python print(1), 1 client back to back", server: stockedServer,
			target: "–", seed: "–", run: throughput(1)},
		{id: "throughput-8", name: "throughput python print(1), 8 concurrent clients", server: stockedServer,
			target: "–", seed: "–", run: throughput(8)},
		{id: "throughput-32", name: "throughput python print(1), 32 concurrent clients", server: stockedServer,
			target: "–", seed: "–", run: throughput(32)},
		{id: "cached", name: "cached (warm) python print(1), HTTP end to end", server: stockedServer,
			target: "p50 ≤ 5 ms", targetMS: 5, seed: "5 ms (warm)", run: cachedExecution(client.LanguagePython, pythonPrint)},
		{id: "cached-js", name: "cached (warm) javascript console.log(1), HTTP end to end", server: stockedServer,
			target: "–", seed: "–", run: cachedExecution(client.LanguageJavaScript, nodePrint)},
		{id: "cached-bash", name: "cached (warm) bash echo 1, HTTP end to end", server: stockedServer,
			target: "–", seed: "–", run: cachedExecution(client.LanguageBash, shellPrint)},
		{id: "cached-throughput-8", name: "throughput cached python print(1), 8 concurrent clients", server: stockedServer,
			target: "≥ 200 exec/s", seed: "–", run: cachedThroughput},
		{id: "fork-floor", name: "fresh process floor: python fork + _exit + wait inside a warm sandbox, per fork", server: stockedServer,
			target: "– (reference for cached-throughput-8)", seed: "–", run: forkFloor},
		{id: "warm-memory", name: "prewarm one python sandbox (time); idle memory per warm sandbox (note)", server: stockedServer,
			target: "–", seed: "KSM: 60% less (claim)", run: warmMemory},
		{id: "checkpoint", name: "checkpoint of a running python session (POST /snapshots)", server: stockedServer,
			target: "p50 ≤ 60 ms", targetMS: 60, seed: "–", run: checkpointExecution},
		{id: "restore", name: "restore a snapshot into a new session and print a variable, cold", server: coldServer,
			target: "–", seed: "150 ms (checkpointed, cold)", run: restoreExecution},
		{id: "branch-1", name: "branch: 1 child of a snapshot until its output, restored ahead of demand", server: stockedServer,
			target: "p50 ≤ 120 ms", targetMS: 120, seed: "240 ms", run: branchExecution(1)},
		{id: "branch-1-cold", name: "branch: 1 child of a snapshot until its output, cold restore", server: coldServer,
			target: "p50 ≤ 120 ms", targetMS: 120, seed: "240 ms", run: branchExecution(1)},
		{id: "branch", name: "branch: 8 children of one snapshot until every output, restored ahead of demand", server: stockedServer,
			target: "p50 ≤ 120 ms, 8 at once", targetMS: 120, seed: "240 ms", run: branchExecution(8)},
		{id: "branch-8-cold", name: "branch: 8 children of one snapshot until every output, cold restores", server: coldServer,
			target: "p50 ≤ 120 ms, 8 at once", targetMS: 120, seed: "240 ms", run: branchExecution(8)},
		{id: "snapshot-size", name: "snapshot of a python session: size on disk; memory of 8 branches (note)", server: stockedServer,
			target: "–", seed: "70% smaller; CoW 85% less memory (claims)", run: snapshotSize},
		{id: "instance", name: "persistent instance ready: create until the first exec answers", server: stockedServer,
			target: "p50 ≤ 300 ms", targetMS: 300, seed: "2000 ms (persistent, cold)", run: instanceReady},
		{id: "pause-resume", name: "persistent instance pause + resume", server: stockedServer,
			target: "–", seed: "–", run: pauseResume},
		{id: "stream", name: "streaming: WebSocket open + request to first stdout byte, python print(1)", server: stockedServer,
			target: "–", seed: "–", run: streamFirstByte},
	}
}

// benchRow is a scenario and what became of it.
type benchRow struct {
	scenario    benchScenario
	result      benchResult
	unavailable string // why, when the build does not offer it
	skipped     string // why, when the machine cannot run it
	failed      string // the error, when it failed
}

func (r *benchRow) summary() string {
	switch {
	case r.unavailable != "":
		return "not available in this build"
	case r.skipped != "":
		return r.skipped
	case r.failed != "":
		return "FAILED: " + r.failed
	}
	s := summarize(r.result.durations)
	line := fmt.Sprintf("p50 %s ms  p95 %s ms  (%d runs)", fmtMS(s.p50), fmtMS(s.p95), s.n)
	if r.result.note != "" {
		line += "  " + r.result.note
	}
	return line
}

// bench is the state of one `faas bench` run.
type bench struct {
	opts     *benchOptions
	tmp      string
	progress io.Writer
	srv      *benchServer // the running server, if any
}

func (b *bench) runScenario(ctx context.Context, r *benchRow) {
	res, err := func() (benchResult, error) {
		if r.scenario.server != noServer {
			stock := b.opts.stock
			if r.scenario.server == coldServer {
				stock = 0
			}
			if _, err := b.server(ctx, stock); err != nil {
				return benchResult{}, err
			}
		}
		return r.scenario.run(ctx, b)
	}()
	var na errNotAvailable
	var sk errSkipped
	switch {
	case errors.As(err, &na):
		r.unavailable = na.why
	case errors.As(err, &sk):
		r.skipped = sk.why
	case err != nil:
		r.failed = err.Error()
	default:
		r.result = res
	}
}

// measure runs op warmup times, then runs times, timing each run. prepare,
// when not nil, runs untimed before every run (to let the server settle).
func (b *bench) measure(ctx context.Context, prepare, op func(ctx context.Context) error) ([]time.Duration, error) {
	var ds []time.Duration
	for i := 0; i < b.opts.warmup+b.opts.runs; i++ {
		if prepare != nil {
			if err := prepare(ctx); err != nil {
				return nil, err
			}
		}
		start := time.Now()
		if err := op(ctx); err != nil {
			return nil, err
		}
		if d := time.Since(start); i >= b.opts.warmup {
			ds = append(ds, d)
		}
	}
	return ds, nil
}

// hostCommand measures fork+exec+wait of a program on the host, which must
// print "1".
func hostCommand(name string, args ...string) func(ctx context.Context, b *bench) (benchResult, error) {
	return func(ctx context.Context, b *bench) (benchResult, error) {
		path, err := exec.LookPath(name)
		if err != nil {
			return benchResult{}, errSkipped{name + " is not installed"}
		}
		ds, err := b.measure(ctx, nil, func(ctx context.Context) error {
			return runPrintsOne(exec.CommandContext(ctx, path, args...))
		})
		return benchResult{durations: ds}, err
	}
}

// runscDo measures `runsc do`: a fresh gVisor sandbox around the host's root
// filesystem, no network; the floor of any sandbox booted per request.
func runscDo(ctx context.Context, b *bench) (benchResult, error) {
	root := filepath.Join(b.tmp, "runsc-do")
	if err := os.MkdirAll(root, 0o700); err != nil {
		return benchResult{}, err
	}
	ds, err := b.measure(ctx, nil, func(ctx context.Context) error {
		return runPrintsOne(exec.CommandContext(ctx, b.opts.runsc, "--root="+root, "--network=none",
			"do", "/usr/bin/python3", "-c", pythonPrint))
	})
	return benchResult{durations: ds}, err
}

// dockerRun measures `docker run` where a Docker engine answers.
func dockerRun(ctx context.Context, b *bench) (benchResult, error) {
	docker, err := exec.LookPath("docker")
	if err != nil {
		return benchResult{}, errSkipped{"no Docker engine (docker is not installed)"}
	}
	ictx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := exec.CommandContext(ictx, docker, "info").Run(); err != nil {
		return benchResult{}, errSkipped{"no Docker engine (docker info fails)"}
	}
	ds, err := b.measure(ctx, nil, func(ctx context.Context) error {
		return runPrintsOne(exec.CommandContext(ctx, docker, "run", "--rm", "--network=none",
			"python:3", "python", "-c", pythonPrint))
	})
	return benchResult{durations: ds}, err
}

func runPrintsOne(cmd *exec.Cmd) error {
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("%s: %w: %s", cmd.Path, err, strings.TrimSpace(string(ee.Stderr)))
		}
		return fmt.Errorf("%s: %w", cmd.Path, err)
	}
	if strings.TrimSpace(string(out)) != "1" {
		return fmt.Errorf("%s printed %q, want 1", cmd.Path, out)
	}
	return nil
}

// ephemeral measures one ephemeral execution end to end over HTTP. Before
// each run the server is let settle (stock full, the previous sandbox
// destroyed), so the figure is that of a server under light load.
func ephemeral(language, code string) func(ctx context.Context, b *bench) (benchResult, error) {
	return func(ctx context.Context, b *bench) (benchResult, error) {
		req := client.ExecuteRequest{Language: language, Code: code, Mode: client.ModeEphemeral}
		ds, err := b.measure(ctx, b.srv.waitIdle, func(ctx context.Context) error {
			return b.srv.executePrintsOne(ctx, req)
		})
		return benchResult{durations: ds}, err
	}
}

// shellCold measures an ephemeral `echo 1` (sh -c) in a never-used sandbox of
// image: the host image, or a busybox image built here and imported first, so
// the two rows compare the cold start of an imported image with the host's.
func shellCold(imported bool) func(ctx context.Context, b *bench) (benchResult, error) {
	return func(ctx context.Context, b *bench) (benchResult, error) {
		req := client.ExecuteRequest{Command: "echo 1", Mode: client.ModeEphemeral}
		note := "host image"
		if imported {
			const tag = "faas-bench/busybox:1"
			archive, err := testimage.DockerArchive(tag, nil)
			if err != nil {
				return benchResult{}, errSkipped{err.Error()}
			}
			hreq, err := http.NewRequestWithContext(ctx, "POST", b.srv.url+"/api/v1/images/import", bytes.NewReader(archive))
			if err != nil {
				return benchResult{}, err
			}
			hreq.Header.Set("Authorization", "Bearer "+b.srv.key)
			resp, err := b.srv.hc.Do(hreq)
			if err != nil {
				return benchResult{}, err
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				return benchResult{}, notAvailableOr(newHTTPError(resp.StatusCode, body), true)
			}
			req.Image = tag
			note = fmt.Sprintf("busybox image (%.1f MB archive) imported into the store", float64(len(archive))/(1<<20))
		}
		ds, err := b.measure(ctx, b.srv.waitIdle, func(ctx context.Context) error {
			return b.srv.executePrintsOne(ctx, req)
		})
		return benchResult{durations: ds, note: note}, err
	}
}

// throughput runs executions back to back from clients at once: the latency
// of each and the executions per second of the whole. 8 clients run twice as
// many executions as --runs.
func throughput(clients int) func(ctx context.Context, b *bench) (benchResult, error) {
	return func(ctx context.Context, b *bench) (benchResult, error) {
		if err := b.srv.waitIdle(ctx); err != nil {
			return benchResult{}, err
		}
		return throughputOf(ctx, b, clients, client.ExecuteRequest{Language: client.LanguagePython, Code: pythonPrint})
	}
}

// throughputOf runs req back to back from clients at once.
func throughputOf(ctx context.Context, b *bench, clients int, req client.ExecuteRequest) (benchResult, error) {
	n := b.opts.runs
	if clients > 1 {
		n = max(2*b.opts.runs, 2*clients)
	}
	jobs := make(chan struct{}, n)
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	type sample struct {
		d   time.Duration
		err error
	}
	samples := make(chan sample, n)
	start := time.Now()
	for range clients {
		go func() {
			for range jobs {
				t := time.Now()
				err := b.srv.executePrintsOne(ctx, req)
				samples <- sample{time.Since(t), err}
			}
		}()
	}
	var ds []time.Duration
	var errs []error
	for range n {
		s := <-samples
		if s.err != nil {
			errs = append(errs, s.err)
			continue
		}
		ds = append(ds, s.d)
	}
	wall := time.Since(start)
	if len(errs) > 0 {
		return benchResult{}, fmt.Errorf("%d of %d executions failed, first: %w", len(errs), n, errs[0])
	}
	return benchResult{durations: ds, note: fmt.Sprintf("%.1f exec/s (%d executions in %.1f s)",
		float64(n)/wall.Seconds(), n, wall.Seconds())}, nil
}

// cachedExecution measures a warm execution in a reused sandbox. Before each run
// (untimed) it waits for the previous run's sandbox to be back in the pool, so
// every measured run is a hit.
func cachedExecution(language, code string) func(context.Context, *bench) (benchResult, error) {
	return func(ctx context.Context, b *bench) (benchResult, error) {
		req := client.ExecuteRequest{Language: language, Code: code, Mode: client.ModeCached}
		if err := b.srv.executePrintsOne(ctx, req); err != nil {
			return benchResult{}, notAvailableOr(err, false)
		}
		// At rest before each run: a warm sandbox idle and nothing else at
		// work (no stock refill still booting after the scenario before).
		settle := func(ctx context.Context) error {
			if err := b.srv.waitWarm(ctx); err != nil {
				return err
			}
			return b.srv.waitIdle(ctx)
		}
		ds, err := b.measure(ctx, settle, func(ctx context.Context) error { return b.srv.executePrintsOne(ctx, req) })
		return benchResult{durations: ds}, err
	}
}

// cachedThroughput runs cached executions back to back from 8 clients of one
// account: executions per second when every sandbox is warm.
func cachedThroughput(ctx context.Context, b *bench) (benchResult, error) {
	req := client.ExecuteRequest{Language: client.LanguagePython, Code: pythonPrint, Mode: client.ModeCached}
	if err := b.srv.post(ctx, "/api/v1/prewarm", map[string]any{"language": "python", "count": 8}, nil); err != nil {
		return benchResult{}, notAvailableOr(err, true)
	}
	return throughputOf(ctx, b, 8, req)
}

// forkFloorCode forks (from a zygote's fresh process, as each cached execution
// is one) a child that exits at once, waits for it, and prints each round's
// wall time in microseconds.
const forkFloorCode = `import os, time
for _ in range(%d):
    t = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    print(int((time.perf_counter() - t) * 1e6))
`

// forkFloor measures what a new process costs in gVisor, the least any
// execution in a fresh process costs: one cached execution forks --runs
// children in a row. The note gives the CPU the execution used per fork (as
// the server bills it) and the executions per second the machine's cores
// could run at that cost if nothing else were done per execution.
func forkFloor(ctx context.Context, b *bench) (benchResult, error) {
	n := b.opts.runs
	var res *client.ExecuteResult
	for i, forks := range []int{b.opts.warmup, n} { // a warm-up (which leaves a warm sandbox), then the measure
		if i > 0 {
			if err := b.srv.waitWarm(ctx); err != nil {
				return benchResult{}, err
			}
		}
		if err := b.srv.waitIdle(ctx); err != nil {
			return benchResult{}, err
		}
		var err error
		res, err = b.srv.client.Execute(ctx, client.ExecuteRequest{Language: client.LanguagePython, Mode: client.ModeCached,
			Code: fmt.Sprintf(forkFloorCode, max(forks, 1)), TimeoutMS: 120_000})
		if err != nil {
			return benchResult{}, notAvailableOr(err, false)
		}
	}
	if res.Status != client.StatusSucceeded {
		return benchResult{}, fmt.Errorf("fork loop: status %s, stderr %q, error %q", res.Status, res.Stderr, res.Error)
	}
	var ds []time.Duration
	for _, f := range strings.Fields(res.Stdout) {
		us, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return benchResult{}, fmt.Errorf("fork loop printed %q", f)
		}
		ds = append(ds, time.Duration(us)*time.Microsecond)
	}
	if len(ds) != n {
		return benchResult{}, fmt.Errorf("fork loop printed %d times, want %d", len(ds), n)
	}
	perFork := float64(res.Usage.CPUMS) / float64(n)
	note := fmt.Sprintf("%.1f ms of CPU per fork (the execution's cpu_ms / %d)", perFork, n)
	if perFork > 0 {
		note += fmt.Sprintf("; %d cores at that cost: at most %.0f exec/s", runtime.NumCPU(), float64(runtime.NumCPU())*1000/perFork)
	}
	return benchResult{durations: ds, note: note}, nil
}

// warmMemory prewarms sandboxes one at a time into a fresh account's pool, timing
// each, and reports the memory an idle warm sandbox holds (host cgroup usage,
// zygote and its standby processes included).
func warmMemory(ctx context.Context, b *bench) (benchResult, error) {
	var key struct {
		Key string `json:"key"`
	}
	if err := b.srv.post(ctx, "/api/v1/keys", map[string]any{"name": "bench-warm-memory", "scopes": []string{"execute"}}, &key); err != nil {
		return benchResult{}, notAvailableOr(err, true)
	}
	acct := &benchServer{url: b.srv.url, key: key.Key, hc: b.srv.hc}
	n := min(b.opts.runs, 8)
	var ds []time.Duration
	for range n {
		start := time.Now()
		if err := acct.post(ctx, "/api/v1/prewarm", map[string]any{"language": "python", "count": 1}, nil); err != nil {
			return benchResult{}, notAvailableOr(err, true)
		}
		ds = append(ds, time.Since(start))
	}
	var p struct {
		Pools []struct {
			Idle         int     `json:"idle"`
			IdleMemoryMB float64 `json:"idle_memory_mb"`
		} `json:"pools"`
	}
	if err := acct.get(ctx, "/api/v1/pools", &p); err != nil {
		return benchResult{}, err
	}
	if len(p.Pools) == 0 || p.Pools[0].Idle == 0 {
		return benchResult{}, fmt.Errorf("no idle warm sandbox after prewarming %d", n)
	}
	return benchResult{durations: ds, note: fmt.Sprintf("%.1f MB per idle warm sandbox (%d sandboxes, %.0f MB together)",
		p.Pools[0].IdleMemoryMB/float64(p.Pools[0].Idle), p.Pools[0].Idle, p.Pools[0].IdleMemoryMB)}, nil
}

// sessionCode builds a little state in a python session: a variable and an
// imported module.
const sessionCode = "import json\nx = 1\nprint(x)"

// makeSnapshot starts a python session named id with some state and snapshots it.
func (b *bench) makeSnapshot(ctx context.Context, id string) (string, error) {
	res, err := b.srv.client.Execute(ctx, client.ExecuteRequest{
		Language: client.LanguagePython, Code: sessionCode, Mode: client.ModeCheckpointed, SessionID: id, CheckpointAfter: true,
	})
	if err != nil {
		return "", notAvailableOr(err, false)
	}
	if res.SnapshotID == "" {
		return "", fmt.Errorf("checkpointed execution %s returned no snapshot_id (status %s: %s %s)", res.ExecutionID, res.Status, res.Error, res.SnapshotError)
	}
	return res.SnapshotID, nil
}

// endSessions deletes sessions (untimed clean-up between runs) and waits for the
// server to settle.
func (b *bench) endSessions(ctx context.Context, ids *[]string) error {
	for _, id := range *ids {
		if err := b.srv.client.DeleteSession(ctx, id); err != nil && !client.IsNotFound(err) {
			return err
		}
	}
	*ids = nil
	return b.srv.waitIdle(ctx)
}

// checkpointExecution measures POST /api/v1/snapshots of a running python
// session (memory, processes and files saved; the session runs on).
func checkpointExecution(ctx context.Context, b *bench) (benchResult, error) {
	const session = "bench-checkpoint"
	first, err := b.makeSnapshot(ctx, session)
	if err != nil {
		return benchResult{}, err
	}
	last := []string{first}
	defer b.srv.client.DeleteSession(context.WithoutCancel(ctx), session)
	prepare := func(ctx context.Context) error {
		for _, id := range last {
			if err := b.srv.client.DeleteSnapshot(ctx, id); err != nil {
				return err
			}
		}
		last = nil
		return b.srv.waitIdle(ctx)
	}
	ds, err := b.measure(ctx, prepare, func(ctx context.Context) error {
		sn, err := b.srv.client.CreateSnapshot(ctx, client.SnapshotRequest{SessionID: session})
		if err == nil {
			last = append(last, sn.ID)
		}
		return err
	})
	if err == nil {
		err = prepare(ctx)
	}
	return benchResult{durations: ds}, err
}

// restoreExecution measures an execution that restores a snapshot into a new
// session and prints a variable of it.
func restoreExecution(ctx context.Context, b *bench) (benchResult, error) {
	snap, err := b.makeSnapshot(ctx, "bench-restore")
	if err != nil {
		return benchResult{}, err
	}
	defer b.srv.client.DeleteSnapshot(context.WithoutCancel(ctx), snap) // frees what the server restored ahead of demand
	sessions := []string{"bench-restore"}
	defer b.endSessions(context.WithoutCancel(ctx), &sessions)
	req := client.ExecuteRequest{Language: client.LanguagePython, Code: "print(x)", Mode: client.ModeCheckpointed, SnapshotID: snap}
	ds, err := b.measure(ctx, func(ctx context.Context) error { return b.endSessions(ctx, &sessions) }, func(ctx context.Context) error {
		res, err := b.srv.client.Execute(ctx, req)
		if err != nil {
			return err
		}
		sessions = append(sessions, res.SessionID)
		if strings.TrimSpace(res.Stdout) != "1" {
			return fmt.Errorf("restored session printed %q (stderr %q, error %q)", res.Stdout, res.Stderr, res.Error)
		}
		return nil
	})
	return benchResult{durations: ds}, err
}

// branchExecution measures POST /api/v1/branches with n children of one
// snapshot, each printing a variable of it, until the answer with every output.
// On a server that restores ahead of demand, each run starts once the branch
// stock holds n sandboxes of the snapshot (the warm figure); with none, every
// branch restores on the request's path (the cold figure).
func branchExecution(n int) func(ctx context.Context, b *bench) (benchResult, error) {
	return func(ctx context.Context, b *bench) (benchResult, error) {
		snap, err := b.makeSnapshot(ctx, "bench-branch")
		if err != nil {
			return benchResult{}, err
		}
		defer b.srv.client.DeleteSnapshot(context.WithoutCancel(ctx), snap) // frees what the server restored ahead of demand
		sessions := []string{"bench-branch"}
		defer b.endSessions(context.WithoutCancel(ctx), &sessions)
		req := client.ExecuteRequest{Language: client.LanguagePython, Code: "print(x)", ParentSnapshot: snap}
		op := func(ctx context.Context) error {
			results, err := b.srv.client.CreateBranches(ctx, req, n)
			if err != nil {
				return err
			}
			for _, r := range results {
				sessions = append(sessions, r.BranchID)
				if strings.TrimSpace(r.Stdout) != "1" {
					return fmt.Errorf("branch %s printed %q (stderr %q, error %q)", r.BranchID, r.Stdout, r.Stderr, r.Error)
				}
			}
			return nil
		}
		// The first request also tells the server how many to keep ready.
		if err := op(ctx); err != nil {
			return benchResult{}, notAvailableOr(err, true)
		}
		prepare := func(ctx context.Context) error {
			if err := b.endSessions(ctx, &sessions); err != nil {
				return err
			}
			if b.srv.stock > 0 {
				return b.srv.waitBranchStock(ctx, n)
			}
			return nil
		}
		ds, err := b.measure(ctx, prepare, op)
		return benchResult{durations: ds}, err
	}
}

// snapshotSize reports the size on disk of a python session's snapshot (note) and
// the memory 8 branches of it hold next to 8 sessions built independently.
func snapshotSize(ctx context.Context, b *bench) (benchResult, error) {
	snap, err := b.makeSnapshot(ctx, "bench-size")
	if err != nil {
		return benchResult{}, err
	}
	defer b.srv.client.DeleteSnapshot(context.WithoutCancel(ctx), snap) // frees what the server restored ahead of demand
	sessions := []string{"bench-size"}
	defer b.endSessions(context.WithoutCancel(ctx), &sessions)
	sn, err := b.srv.client.GetSnapshot(ctx, snap)
	if err != nil {
		return benchResult{}, notAvailableOr(err, true)
	}
	if err := b.endSessions(ctx, &sessions); err != nil {
		return benchResult{}, err
	}
	// 8 branches of the snapshot, and 8 sessions that each built the same state.
	branches, err := b.srv.client.CreateBranches(ctx, client.ExecuteRequest{Language: client.LanguagePython, Code: "print(x)", ParentSnapshot: snap}, 8)
	if err != nil {
		return benchResult{}, err
	}
	branchIDs := map[string]bool{}
	for _, r := range branches {
		sessions = append(sessions, r.BranchID)
		branchIDs[r.BranchID] = true
	}
	for i := range 8 {
		id := fmt.Sprintf("bench-independent-%d", i)
		if _, err := b.srv.client.Execute(ctx, client.ExecuteRequest{Language: client.LanguagePython, Code: sessionCode, Mode: client.ModeCheckpointed, SessionID: id}); err != nil {
			return benchResult{}, err
		}
		sessions = append(sessions, id)
	}
	list, err := b.srv.client.ListSessions(ctx)
	if err != nil {
		return benchResult{}, err
	}
	var branchMB, independentMB float64
	for _, s := range list {
		if branchIDs[s.ID] {
			branchMB += s.MemoryUsedMB
		} else if strings.HasPrefix(s.ID, "bench-independent-") {
			independentMB += s.MemoryUsedMB
		}
	}
	return benchResult{note: fmt.Sprintf("%.1f MB on disk; memory of 8 branches %.0f MB vs 8 independent sessions %.0f MB",
		float64(sn.SizeBytes)/(1<<20), branchMB, independentMB)}, nil
}

// pauseResume measures pausing a persistent instance (checkpoint to disk) and
// resuming it, together.
func pauseResume(ctx context.Context, b *bench) (benchResult, error) {
	var inst struct {
		ID         string `json:"id"`
		InstanceID string `json:"instance_id"`
	}
	if err := b.srv.post(ctx, "/api/v1/instances", map[string]any{"language": client.LanguagePython}, &inst); err != nil {
		return benchResult{}, notAvailableOr(err, true)
	}
	id := cmpOr(inst.InstanceID, inst.ID)
	defer b.srv.delete(context.WithoutCancel(ctx), "/api/v1/instances/"+id)
	// A little state to carry: a file and a variable of the instance's interpreter.
	if _, err := b.srv.client.ExecInstance(ctx, id, client.ExecuteRequest{Code: "x = 1\nopen('/workspace/f', 'w').write('1')"}); err != nil {
		return benchResult{}, notAvailableOr(err, true)
	}
	var pauses, resumes []time.Duration
	op := func(ctx context.Context) error {
		start := time.Now()
		if err := b.srv.post(ctx, "/api/v1/instances/"+id+"/pause", nil, nil); err != nil {
			return err
		}
		mid := time.Now()
		if err := b.srv.post(ctx, "/api/v1/instances/"+id+"/resume", nil, nil); err != nil {
			return err
		}
		pauses, resumes = append(pauses, mid.Sub(start)), append(resumes, time.Since(mid))
		return nil
	}
	if err := op(ctx); err != nil {
		return benchResult{}, notAvailableOr(err, true)
	}
	pauses, resumes = nil, nil
	ds, err := b.measure(ctx, func(ctx context.Context) error { return b.srv.waitIdle(ctx) }, op)
	if err != nil {
		return benchResult{}, err
	}
	res, err := b.srv.client.ExecInstance(ctx, id, client.ExecuteRequest{Code: "print(x, open('/workspace/f').read())"})
	if err != nil || strings.TrimSpace(res.Stdout) != "1 1" {
		return benchResult{}, fmt.Errorf("state after pause and resume: %v %+v", err, res)
	}
	return benchResult{durations: ds, note: fmt.Sprintf("pause p50 %s ms, resume p50 %s ms",
		fmtMS(summarize(pauses).p50), fmtMS(summarize(resumes).p50))}, nil
}

// instanceReady measures POST /api/v1/instances until the instance is
// answered; each is deleted again before the next run (untimed).
func instanceReady(ctx context.Context, b *bench) (benchResult, error) {
	var last string
	cleanup := func(ctx context.Context) error {
		if last != "" {
			if err := b.srv.delete(ctx, "/api/v1/instances/"+last); err != nil {
				return err
			}
			last = ""
		}
		return b.srv.waitIdle(ctx)
	}
	defer cleanup(context.WithoutCancel(ctx))
	create := func(ctx context.Context) error {
		in, err := b.srv.client.CreateInstance(ctx, client.InstanceRequest{Language: client.LanguagePython})
		if err != nil {
			return err
		}
		last = in.ID
		// Ready means answering: the first exec is part of it.
		res, err := b.srv.client.ExecInstance(ctx, in.ID, client.ExecuteRequest{Command: "echo 1"})
		if err != nil {
			return err
		}
		if strings.TrimSpace(res.Stdout) != "1" {
			return fmt.Errorf("first exec in instance %s printed %q (stderr %q)", in.ID, res.Stdout, res.Stderr)
		}
		return nil
	}
	if err := create(ctx); err != nil {
		return benchResult{}, notAvailableOr(err, true)
	}
	ds, err := b.measure(ctx, cleanup, create)
	return benchResult{durations: ds}, err
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func writeFileMkdir(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
