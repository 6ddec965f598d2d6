package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// stats summarizes one scenario's durations, in milliseconds.
type stats struct {
	n                            int
	min, p25, p50, p75, p95, max float64
	mean                         float64
	sorted                       []float64
}

func summarize(ds []time.Duration) stats {
	s := stats{n: len(ds)}
	if s.n == 0 {
		return s
	}
	s.sorted = make([]float64, s.n)
	sum := 0.0
	for i, d := range ds {
		s.sorted[i] = float64(d) / float64(time.Millisecond)
		sum += s.sorted[i]
	}
	slices.Sort(s.sorted)
	s.mean = sum / float64(s.n)
	s.min, s.max = s.sorted[0], s.sorted[s.n-1]
	s.p25, s.p50, s.p75, s.p95 = s.pct(25), s.pct(50), s.pct(75), s.pct(95)
	return s
}

// pct is the nearest-rank percentile p of the sorted sample.
func (s stats) pct(p float64) float64 {
	i := int(math.Ceil(p/100*float64(s.n))) - 1
	return s.sorted[min(max(i, 0), s.n-1)]
}

func fmtMS(ms float64) string {
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0f", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1f", ms)
	}
	return fmt.Sprintf("%.2f", ms)
}

// machineInfo describes where the numbers were measured.
type machineInfo struct {
	date, cpu, kernel, goVersion string
	cores                        int
	runsc, python, node, loadAvg string
	faas                         string
	stock                        int
	runs, warmup                 int
}

func collectMachineInfo(ctx context.Context, o *benchOptions) machineInfo {
	m := machineInfo{
		date:      time.Now().Format("2006-01-02 15:04:05 MST"),
		cores:     runtime.NumCPU(),
		goVersion: runtime.Version(),
		faas:      version,
		stock:     o.stock,
		runs:      o.runs,
		warmup:    o.warmup,
		cpu:       "unknown",
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.loadAvg = strings.Join(f[:3], " ")
		}
	}
	first := func(name string, args ...string) string {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(cctx, name, args...).CombinedOutput()
		if err != nil {
			return "unavailable"
		}
		line, _, _ := strings.Cut(string(bytes.TrimSpace(out)), "\n")
		return strings.TrimSpace(line)
	}
	m.kernel = first("uname", "-srm")
	m.runsc = strings.TrimPrefix(first(o.runsc, "--version"), "runsc version ")
	m.python = first("/usr/bin/python3", "--version")
	m.node = first("node", "--version")
	return m
}

// ratio is a/b as "4.2×", or "–" when either is missing.
func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// baselineP50 is the p50 of the scenario id among rows, or 0.
func baselineP50(rows []*benchRow, id string) float64 {
	for _, r := range rows {
		if r.scenario.id == id && len(r.result.durations) > 0 {
			return summarize(r.result.durations).p50
		}
	}
	return 0
}

// verdict adds "met"/"missed" to a measured row's target.
func verdict(r *benchRow, s stats) string {
	t := r.scenario.target
	if r.scenario.targetMS <= 0 || s.n == 0 {
		return t
	}
	word := func(limit float64) string {
		if s.p50 <= limit {
			return "met"
		}
		return "missed"
	}
	if r.scenario.goalMS > 0 {
		return fmt.Sprintf("%s (now: %s; goal: %s)", t, word(r.scenario.targetMS), word(r.scenario.goalMS))
	}
	return fmt.Sprintf("%s (%s)", t, word(r.scenario.targetMS))
}

func markdownReport(m machineInfo, rows []*benchRow, o *benchOptions) string {
	var w strings.Builder
	fmt.Fprintf(&w, "# faas bench\n\n")
	fmt.Fprintf(&w, "| | |\n|---|---|\n")
	for _, kv := range [][2]string{
		{"date", m.date},
		{"CPU", fmt.Sprintf("%s, %d cores", m.cpu, m.cores)},
		{"kernel", m.kernel},
		{"load average at start", m.loadAvg},
		{"Go", m.goVersion},
		{"faas", m.faas},
		{"runsc", m.runsc},
		{"python3 / node", m.python + " / node " + m.node},
		{"runs", fmt.Sprintf("%d measured per scenario after %d warm-up", m.runs, m.warmup)},
		{"server", fmt.Sprintf("in-process `faas serve` on 127.0.0.1, SQLite, stock %d (ephemeral-cold: stock 0)", m.stock)},
	} {
		fmt.Fprintf(&w, "| %s | %s |\n", kv[0], kv[1])
	}

	py, do := baselineP50(rows, "python3"), baselineP50(rows, "runsc-do")
	fmt.Fprintf(&w, "\n| scenario | p50 ms | p95 ms | mean ms | runs | vs bare python3 | vs runsc do | target | seed README claim | notes |\n")
	fmt.Fprintf(&w, "|---|--:|--:|--:|--:|--:|--:|---|---|---|\n")
	for _, r := range rows {
		sc := r.scenario
		name := fmt.Sprintf("%s `%s`", sc.name, sc.id)
		switch {
		case r.unavailable != "":
			fmt.Fprintf(&w, "| %s | – | – | – | – | – | – | %s | %s | not available in this build (%s) |\n",
				name, sc.target, sc.seed, mdCell(r.unavailable))
		case r.skipped != "":
			fmt.Fprintf(&w, "| %s | – | – | – | – | – | – | %s | %s | %s |\n", name, sc.target, sc.seed, mdCell(r.skipped))
		case r.failed != "":
			fmt.Fprintf(&w, "| %s | – | – | – | – | – | – | %s | %s | **failed**: %s |\n", name, sc.target, sc.seed, mdCell(r.failed))
		default:
			s := summarize(r.result.durations)
			fmt.Fprintf(&w, "| %s | %s | %s | %s | %d | %s | %s | %s | %s | %s |\n",
				name, fmtMS(s.p50), fmtMS(s.p95), fmtMS(s.mean), s.n, ratio(s.p50, py), ratio(s.p50, do),
				verdict(r, s), sc.seed, mdCell(r.result.note))
		}
	}

	fmt.Fprintf(&w, "\nHow it was measured:\n\n")
	for _, line := range []string{
		"Wall time per run, client side. Baselines: fork+exec+wait of the host program; `runsc do` with its own `--root`, `--network=none`, the host's root filesystem.",
		"Platform rows go through the Go SDK over loopback HTTP to a server in the same process: `POST /api/v1/execute`, JSON decode, auth, SQLite record, sandbox, agent, response. Each answer is checked (status succeeded, stdout `1`).",
		"Ephemeral rows wait, untimed, before each run until the server is at rest (stock full, the previous sandbox destroyed): the figure of a lightly loaded server. Cached rows wait the same way, and for a warm sandbox idle in the pool. `ephemeral-cold` is a second server with no stock, so every request boots a sandbox.",
		"Throughput rows send executions back to back (1 client: --runs of them; 8 clients: twice --runs), without waiting for the stock: under load the stock runs out, and the latency shows it.",
		"`ephemeral-js` runs on the default stock (`python,bash`): its warm-up requests make the stock start node ahead from then on (`--stock-demand-window`), as a server's first JavaScript request does.",
		"`fork-floor` is one cached execution whose code forks --runs children that exit at once, each timed inside the sandbox: the least a new process costs there, and so any execution in a fresh process; its CPU is the execution's billed `cpu_ms`.",
		"Rows marked not available were probed with one real request; the server answered 501, or the endpoint does not exist in this build (404).",
		"The machine is shared and noisy: compare rows of the same run, not runs of different days.",
	} {
		fmt.Fprintf(&w, "- %s\n", line)
	}
	return w.String()
}

func mdCell(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "|", `\|`)
}
