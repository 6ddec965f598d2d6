package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// latencySVG draws one strip per scenario on a logarithmic milliseconds axis:
// every run as a dot, the interquartile range as a box, the median as a bar,
// min to max as a whisker, and the target (and end goal) as dashed marks.
func latencySVG(rows []*benchRow, m machineInfo) string {
	const (
		width  = 1100.0
		labelW = 440.0 // label column
		plotX0 = labelW + 10
		plotX1 = width - 110 // room for the p50 figure on the right
		top    = 70.0
		rowH   = 30.0
		bottom = 80.0
	)
	height := top + rowH*float64(len(rows)) + bottom

	// Axis range: every sample and every target, widened to 1-2-5 steps.
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range rows {
		for _, d := range r.result.durations {
			ms := d.Seconds() * 1000
			lo, hi = math.Min(lo, ms), math.Max(hi, ms)
		}
		for _, t := range []float64{r.scenario.targetMS, r.scenario.goalMS} {
			if t > 0 && len(r.result.durations) > 0 {
				lo, hi = math.Min(lo, t), math.Max(hi, t)
			}
		}
	}
	if math.IsInf(lo, 1) {
		lo, hi = 1, 1000
	}
	ticks := logTicks(lo, hi)
	amin, amax := math.Log10(ticks[0]), math.Log10(ticks[len(ticks)-1])
	x := func(ms float64) float64 {
		return plotX0 + (math.Log10(ms)-amin)/(amax-amin)*(plotX1-plotX0)
	}

	var w strings.Builder
	fmt.Fprintf(&w, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">`+"\n",
		width, height, width, height)
	fmt.Fprintf(&w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&w, `<text x="20" y="28" font-size="18" font-weight="bold">faas bench: latency per run (ms, log scale)</text>`+"\n")
	fmt.Fprintf(&w, `<text x="20" y="48" font-size="11" fill="#555">%s</text>`+"\n",
		esc(fmt.Sprintf("%s · %s, %d cores · %s · runsc %s · %d runs after %d warm-up", m.date, m.cpu, m.cores, m.kernel, m.runsc, m.runs, m.warmup)))

	// Grid and axis.
	axisY := top + rowH*float64(len(rows))
	for _, t := range ticks {
		tx := x(t)
		fmt.Fprintf(&w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e3e3e3"/>`+"\n", tx, top-6, tx, axisY)
		fmt.Fprintf(&w, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle" fill="#333">%s</text>`+"\n", tx, axisY+16, trimFloat(t))
	}
	fmt.Fprintf(&w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`+"\n", plotX0, axisY, plotX1, axisY)
	fmt.Fprintf(&w, `<text x="%.1f" y="%.1f" font-size="12" text-anchor="middle" fill="#333">milliseconds</text>`+"\n", (plotX0+plotX1)/2, axisY+34)

	for i, r := range rows {
		cy := top + rowH*float64(i) + rowH/2
		if i%2 == 1 {
			fmt.Fprintf(&w, `<rect x="10" y="%.1f" width="%.0f" height="%.0f" fill="#f6f7f9"/>`+"\n", cy-rowH/2, width-20, rowH)
		}
		color := "#2b6cb0" // platform
		switch {
		case r.scenario.server == noServer:
			color = "#718096" // baselines
		case strings.HasPrefix(r.scenario.id, "throughput"):
			color = "#805ad5"
		}
		labelColor := "#111"
		if len(r.result.durations) == 0 {
			labelColor = "#999"
		}
		fmt.Fprintf(&w, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="end" fill="%s">%s</text>`+"\n",
			labelW, cy+4, labelColor, esc(shorten(r.scenario.name, 72)))

		if len(r.result.durations) == 0 {
			msg := "not available in this build"
			switch {
			case r.skipped != "":
				msg = r.skipped
			case r.failed != "":
				msg = "failed: " + shorten(r.failed, 60)
			}
			fmt.Fprintf(&w, `<text x="%.1f" y="%.1f" font-size="11" font-style="italic" fill="#999">%s</text>`+"\n", plotX0+6, cy+4, esc(msg))
			continue
		}
		s := summarize(r.result.durations)
		// Targets first, under the data.
		for _, t := range []struct {
			ms    float64
			color string
		}{{r.scenario.targetMS, "#e53e3e"}, {r.scenario.goalMS, "#dd6b20"}} {
			if t.ms > 0 {
				fmt.Fprintf(&w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2" stroke-dasharray="3,2"/>`+"\n",
					x(t.ms), cy-rowH/2+2, x(t.ms), cy+rowH/2-2, t.color)
			}
		}
		// Whisker (min to max) and box (p25 to p75).
		fmt.Fprintf(&w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1"/>`+"\n", x(s.min), cy, x(s.max), cy, color)
		fmt.Fprintf(&w, `<rect x="%.1f" y="%.1f" width="%.1f" height="12" fill="%s" fill-opacity="0.15" stroke="%s"/>`+"\n",
			x(s.p25), cy-6, math.Max(x(s.p75)-x(s.p25), 1), color, color)
		// Every run, jittered vertically so ties stay visible.
		for j, v := range s.sorted {
			jy := float64((j*7)%9-4) * 1.4
			fmt.Fprintf(&w, `<circle cx="%.1f" cy="%.1f" r="2.2" fill="%s" fill-opacity="0.45"/>`+"\n", x(v), cy+jy, color)
		}
		fmt.Fprintf(&w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#111" stroke-width="2.5"/>`+"\n", x(s.p50), cy-9, x(s.p50), cy+9)
		fmt.Fprintf(&w, `<text x="%.1f" y="%.1f" font-size="11" fill="#111">p50 %s ms</text>`+"\n", plotX1+10, cy+4, esc(fmtMS(s.p50)))
	}

	// Legend.
	ly := axisY + 58
	items := []struct{ mark, label string }{
		{fmt.Sprintf(`<circle cx="%%.1f" cy="%.1f" r="3" fill="#2b6cb0" fill-opacity="0.6"/>`, ly-4), "one run (platform)"},
		{fmt.Sprintf(`<circle cx="%%.1f" cy="%.1f" r="3" fill="#718096" fill-opacity="0.6"/>`, ly-4), "one run (baseline)"},
		{fmt.Sprintf(`<rect x="%%.1f" y="%.1f" width="14" height="10" fill="#2b6cb0" fill-opacity="0.15" stroke="#2b6cb0"/>`, ly-9), "p25–p75, whisker min–max"},
		{fmt.Sprintf(`<rect x="%%.1f" y="%.1f" width="3" height="14" fill="#111"/>`, ly-11), "p50"},
		{fmt.Sprintf(`<rect x="%%.1f" y="%.1f" width="3" height="14" fill="#e53e3e"/>`, ly-11), "target now"},
		{fmt.Sprintf(`<rect x="%%.1f" y="%.1f" width="3" height="14" fill="#dd6b20"/>`, ly-11), "end goal"},
	}
	lx := 20.0
	for _, it := range items {
		fmt.Fprintf(&w, it.mark+"\n", lx)
		fmt.Fprintf(&w, `<text x="%.1f" y="%.1f" font-size="11" fill="#333">%s</text>`+"\n", lx+18, ly, esc(it.label))
		lx += 40 + 6.5*float64(len(it.label))
	}
	w.WriteString("</svg>\n")
	return w.String()
}

// logTicks returns 1-2-5 ticks from at or below lo to at or above hi.
func logTicks(lo, hi float64) []float64 {
	lo, hi = math.Max(lo, 0.01), math.Max(hi, 0.02)
	var ticks []float64
	for e := math.Floor(math.Log10(lo)); ; e++ {
		for _, m := range []float64{1, 2, 5} {
			t := m * math.Pow(10, e)
			if t*2.5 <= lo && len(ticks) == 0 { // start at the step just below lo
				continue
			}
			ticks = append(ticks, t)
			if t >= hi {
				return ticks
			}
		}
	}
}

func trimFloat(f float64) string {
	s := fmt.Sprintf("%.2f", f)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func esc(s string) string { return html.EscapeString(s) }
