package loadtest

import (
	"fmt"
	"html"
	"html/template"
	"io"
	"math"
	"strings"
)

// flowColour is the plot colour of a flow.
func flowColour(f Flow) string {
	switch f {
	case FlowBrowse:
		return "#4e79a7"
	case FlowProduct:
		return "#f28e2b"
	case FlowComment:
		return "#59a14f"
	case FlowCart:
		return "#b07aa1"
	case FlowCheckout:
		return "#e15759"
	}
	return "#888888"
}

// series is one line of a chart: a value per second, NaN for none.
type series struct {
	name   string
	colour string
	dashed bool
	ys     []float64
}

// mark is a labelled vertical line on a time chart.
type mark struct {
	x     float64 // seconds
	label string
}

// frame is the geometry of a chart in SVG user units: the whole picture
// and the margins around the plot area.
type frame struct {
	w, h                   float64
	padL, padR, padT, padB float64
}

func (f frame) plotW() float64  { return f.w - f.padL - f.padR }
func (f frame) plotH() float64  { return f.h - f.padT - f.padB }
func (f frame) bottom() float64 { return f.h - f.padB }

// Colours of the chart furniture.
const (
	axisColour = "#444444"
	gridColour = "#e3e3e3"
	inkColour  = "#222222"
)

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 || math.IsNaN(v) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p*(1+1e-9) {
			return m * p
		}
	}
	return 10 * p
}

// yScale returns the top of a y axis for values up to maxY and the step
// between its grid lines: about n steps of 1, 2, 2.5 or 5 times a power
// of ten.
func yScale(maxY float64, n int) (top, step float64) {
	if maxY <= 0 || math.IsNaN(maxY) {
		return 1, 1 / float64(n)
	}
	raw := maxY / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	step = 10 * p
	for _, m := range []float64{1, 2, 2.5, 5} {
		if raw <= m*p*(1+1e-9) {
			step = m * p
			break
		}
	}
	return step * math.Ceil(maxY/step-1e-9), step
}

// fmtNum formats an axis value compactly.
func fmtNum(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 1000 && math.Mod(v, 1000) == 0:
		return fmt.Sprintf("%gk", v/1000)
	}
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
}

// fmtMs formats milliseconds for a histogram label.
func fmtMs(v float64) string {
	if v >= 1000 {
		return fmtNum(v/1000) + "s"
	}
	return fmtNum(v) + "ms"
}

// svgOpen starts a chart of frame f with an accessible title.
func svgOpen(b *strings.Builder, f frame, title string) {
	fmt.Fprintf(b, `<svg viewBox="0 0 %.0f %.0f" width="100%%" role="img" aria-label="%s" font-family="system-ui, sans-serif"><title>%s</title>`,
		f.w, f.h, html.EscapeString(title), html.EscapeString(title))
}

// yGrid draws horizontal grid lines every step from 0 to top, labelled.
func yGrid(b *strings.Builder, f frame, top, step float64, y func(float64) float64) {
	for i := 0; float64(i)*step <= top*(1+1e-9); i++ {
		v := float64(i) * step
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`, f.padL, y(v), f.padL+f.plotW(), y(v), gridColour)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" font-size="11" fill="%s">%s</text>`, f.padL-6, y(v)+4, inkColour, fmtNum(v))
	}
}

// timeChart draws series over seconds as an inline SVG line chart.
func timeChart(title, yLabel string, seconds int, ss []series, marks []mark) template.HTML {
	f := frame{w: 880, h: 300, padL: 64, padR: 16, padT: 34, padB: 40}
	var b strings.Builder
	seconds = max(seconds, 1)
	maxY := 0.0
	for _, s := range ss {
		for _, v := range s.ys {
			if !math.IsNaN(v) {
				maxY = max(maxY, v)
			}
		}
	}
	top, ystep := yScale(maxY*1.05, 5)
	x := func(sec float64) float64 { return f.padL + f.plotW()*sec/float64(seconds) }
	y := func(v float64) float64 { return f.bottom() - f.plotH()*v/top }

	svgOpen(&b, f, title)
	yGrid(&b, f, top, ystep, y)
	fmt.Fprintf(&b, `<text x="14" y="%.1f" font-size="11" fill="%s" transform="rotate(-90 14 %.1f)" text-anchor="middle">%s</text>`,
		f.padT+f.plotH()/2, inkColour, f.padT+f.plotH()/2, html.EscapeString(yLabel))
	step := niceCeil(float64(seconds) / 10)
	for s := 0.0; s <= float64(seconds)+1e-9; s += step {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`, x(s), f.bottom(), x(s), f.bottom()+4, axisColour)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="11" fill="%s">%ss</text>`, x(s), f.bottom()+17, inkColour, fmtNum(s))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="11" fill="%s">seconds since start</text>`, f.padL+f.plotW()/2, f.h-6, inkColour)
	for _, m := range marks {
		if m.x <= 0 || m.x >= float64(seconds) {
			continue
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="4 4"/>`, x(m.x), f.padT, x(m.x), f.bottom(), axisColour)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" fill="%s">%s</text>`, x(m.x)+4, f.padT+12, inkColour, html.EscapeString(m.label))
	}
	// One line per series, broken where a second has no value; each
	// point sits in the middle of its second.
	for _, s := range ss {
		var pts [][2]float64
		flush := func() {
			switch len(pts) {
			case 0:
			case 1:
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2" fill="%s"/>`, pts[0][0], pts[0][1], s.colour)
			default:
				dash := ""
				if s.dashed {
					dash = ` stroke-dasharray="6 3"`
				}
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.6"%s points="`, s.colour, dash)
				for i, p := range pts {
					if i > 0 {
						b.WriteByte(' ')
					}
					fmt.Fprintf(&b, "%.1f,%.1f", p[0], p[1])
				}
				b.WriteString(`"/>`)
			}
			pts = pts[:0]
		}
		for i, v := range s.ys {
			if math.IsNaN(v) {
				flush()
				continue
			}
			pts = append(pts, [2]float64{x(float64(i) + 0.5), y(v)})
		}
		flush()
	}
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`, f.padL, f.bottom(), f.padL+f.plotW(), f.bottom(), axisColour)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`, f.padL, f.padT, f.padL, f.bottom(), axisColour)
	for i, s := range ss {
		lx := f.padL + float64(i)*120
		fmt.Fprintf(&b, `<rect x="%.1f" y="8" width="14" height="4" fill="%s"/>`, lx, s.colour)
		fmt.Fprintf(&b, `<text x="%.1f" y="14" font-size="12" fill="%s">%s</text>`, lx+18, inkColour, html.EscapeString(s.name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// histogramChart draws coarse latency bins as an inline SVG bar chart;
// the bins are logarithmic, so equal widths are equal ratios.
func histogramChart(title, colour string, bins []Bin) template.HTML {
	f := frame{w: 440, h: 240, padL: 44, padR: 8, padT: 30, padB: 36}
	var b strings.Builder
	svgOpen(&b, f, title)
	var maxC uint64
	for _, bin := range bins {
		maxC = max(maxC, bin.Count)
	}
	top, ystep := yScale(float64(maxC), 4)
	if maxC < 4 {
		top, ystep = max(float64(maxC), 1), 1 // whole requests
	}
	y := func(v float64) float64 { return f.bottom() - f.plotH()*v/top }
	yGrid(&b, f, top, ystep, y)
	fmt.Fprintf(&b, `<text x="%.1f" y="18" font-size="13" fill="%s">%s</text>`, f.padL, inkColour, html.EscapeString(title))
	if len(bins) == 0 {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="13" fill="%s">no requests</text>`, f.padL+f.plotW()/2, f.padT+f.plotH()/2, inkColour)
	}
	w := f.plotW() / float64(max(len(bins), 1))
	for i, bin := range bins {
		x := f.padL + float64(i)*w
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>up to %s: %d</title></rect>`,
			x+1, y(float64(bin.Count)), max(w-2, 1), f.bottom()-y(float64(bin.Count)), colour, fmtMs(bin.UpToMs), bin.Count)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10" fill="%s">%s</text>`, x+w/2, f.bottom()+13, inkColour, fmtMs(bin.UpToMs))
	}
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`, f.padL, f.bottom(), f.padL+f.plotW(), f.bottom(), axisColour)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="11" fill="%s">latency, up to (logarithmic bins)</text>`, f.padL+f.plotW()/2, f.h-6, inkColour)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// phaseMarks marks where the hold and the spike begin.
func (r *Report) phaseMarks() []mark {
	p := r.Profile
	var m []mark
	if p.RampSeconds > 0 && p.HoldSeconds > 0 {
		m = append(m, mark{p.RampSeconds, "hold"})
	}
	if p.SpikeSeconds > 0 && p.RampSeconds+p.HoldSeconds > 0 {
		m = append(m, mark{p.RampSeconds + p.HoldSeconds, "launch spike"})
	}
	return m
}

// plots draws the report's charts.
func (r *Report) plots() (throughput, p99 template.HTML, hists []template.HTML) {
	n := len(r.Timeline)
	target := series{name: "target", colour: "#333333", dashed: true, ys: make([]float64, n)}
	var rates, tails []series
	for _, f := range Flows() {
		rs := series{name: string(f), colour: flowColour(f), ys: make([]float64, n)}
		ts := series{name: string(f), colour: flowColour(f), ys: make([]float64, n)}
		for i, s := range r.Timeline {
			pt, ok := s.Flows[f]
			rs.ys[i] = float64(pt.Requests)
			ts.ys[i] = math.NaN()
			if ok && pt.Requests > 0 && pt.P99Ms > 0 {
				ts.ys[i] = pt.P99Ms
			}
		}
		rates = append(rates, rs)
		tails = append(tails, ts)
	}
	for i, s := range r.Timeline {
		target.ys[i] = s.TargetRate
	}
	throughput = timeChart("Requests sent per second, by flow", "requests per second", n, append([]series{target}, rates...), r.phaseMarks())
	p99 = timeChart("p99 latency per second, by flow", "p99 latency (ms)", n, tails, r.phaseMarks())
	for _, f := range r.Flows {
		hists = append(hists, histogramChart("Latency of "+string(f.Flow)+" ("+fmt.Sprint(f.Requests)+" requests)", flowColour(f.Flow), f.Histogram))
	}
	return throughput, p99, hists
}

// pageTemplate returns the report page: self-contained, with inline CSS
// and SVG, no scripts and no external references.
func pageTemplate() *template.Template {
	return template.Must(template.New("report").Funcs(template.FuncMap{
		"ms":     func(v float64) string { return fmt.Sprintf("%.1f", v) },
		"pct":    pct,
		"codes":  errorCodes,
		"served": func(m map[string]int64, k string) int64 { return m[k] },
		"rate": func(r *Report) string {
			if r.LoadSeconds <= 0 {
				return "-"
			}
			return fmt.Sprintf("%.1f/s", r.achievedRate())
		},
	}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Contoso Shoes load test — {{.R.Edge}}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 960px; color: #222; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }
th, td { padding: .25rem .6rem; text-align: right; border-bottom: 1px solid #eee; }
th:first-child, td:first-child { text-align: left; }
td.codes { text-align: left; font-family: ui-monospace, monospace; font-size: .8rem; }
.meta { color: #555; font-size: .9rem; }
.verdict { display: inline-block; padding: .3rem .7rem; border-radius: .3rem; font-weight: 600; }
.ok { background: #e3f4e1; color: #1d5e1a; }
.bad { background: #fbe3e3; color: #8a1c1c; }
tr.bad td { background: #fbe3e3; }
figure { margin: 1rem 0; }
figcaption { font-size: .85rem; color: #555; }
details { margin: .5rem 0; }
summary { cursor: pointer; color: #555; font-size: .9rem; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: .5rem 1rem; }
</style>
</head>
<body>
<h1>Contoso Shoes load test</h1>
<p class="meta">Edge {{.R.Edge}} · client regions {{range $i, $r := .R.Regions}}{{if $i}}, {{end}}{{$r}}{{end}} · {{.Profile}}<br>
Started {{.R.Started.Format "2006-01-02 15:04:05 MST"}} · ended {{.R.Ended.Format "2006-01-02 15:04:05 MST"}}</p>
<p><span class="verdict {{if eq .Verdict "OK"}}ok{{else}}bad{{end}}">{{.Verdict}}</span></p>
{{if .R.Error}}<p>The run could not be made: {{.R.Error}}</p>{{end}}

<h2>Summary</h2>
<table>
<tr><th>requests sent</th><td>{{.R.Total.Requests}} of {{.R.Planned}} planned</td></tr>
<tr><th>achieved rate</th><td>{{rate .R}} over {{printf "%.1f" .R.LoadSeconds}} s</td></tr>
<tr><th>successes (2xx)</th><td>{{.R.Total.Successes}}</td></tr>
<tr><th>errors</th><td>{{.R.Total.Errors}} ({{pct .R.Total.Errors .R.Total.Requests}})</td></tr>
<tr><th>latency p50 / p95 / p99 / max</th><td>{{ms .R.Total.Latency.P50Ms}} / {{ms .R.Total.Latency.P95Ms}} / {{ms .R.Total.Latency.P99Ms}} / {{ms .R.Total.Latency.MaxMs}} ms</td></tr>
<tr{{if .R.IdempotentFailures.Count}} class="bad"{{end}}><th>idempotent failures (the edge promises none)</th><td>{{.R.IdempotentFailures.Count}}</td></tr>
<tr{{if .R.RateLimited.Edge}} class="bad"{{end}}><th>429 from the edge's client limit</th><td>{{.R.RateLimited.Edge}}</td></tr>
<tr><th>429 from order admission</th><td>{{.R.RateLimited.Admission}}</td></tr>
<tr{{if .R.Oversold}} class="bad"{{end}}><th>oversold launch SKUs</th><td>{{if .R.Oversold}}YES{{else}}none{{end}}</td></tr>
</table>
{{if .R.RateLimited.Edge}}<p>The edge limits each client address; for load tests start <code>contoso up --client-rate 1e9 --client-burst 1000000000</code>.</p>{{end}}

<h2>By flow</h2>
<table>
<tr><th>flow</th><th>requests</th><th>ok</th><th>errors</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>max ms</th><th>error codes</th></tr>
{{range .R.Flows}}<tr><td>{{.Flow}}</td><td>{{.Requests}}</td><td>{{.Successes}}</td><td>{{.Errors}}</td><td>{{ms .Latency.P50Ms}}</td><td>{{ms .Latency.P95Ms}}</td><td>{{ms .Latency.P99Ms}}</td><td>{{ms .Latency.MaxMs}}</td><td class="codes">{{codes .Stats}}</td></tr>
{{end}}</table>

<h2>By client region</h2>
<table>
<tr><th>client region</th><th>requests</th><th>ok</th><th>errors</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>max ms</th><th>error codes</th></tr>
{{range .R.ClientRegions}}<tr><td>{{.Region}}</td><td>{{.Requests}}</td><td>{{.Successes}}</td><td>{{.Errors}}</td><td>{{ms .Latency.P50Ms}}</td><td>{{ms .Latency.P95Ms}}</td><td>{{ms .Latency.P99Ms}}</td><td>{{ms .Latency.MaxMs}}</td><td class="codes">{{codes .Stats}}</td></tr>
{{end}}</table>

<h3>Flow by client region (requests / errors / p99 ms)</h3>
<table>
<tr><th>flow</th>{{range .R.Regions}}<th>{{.}}</th>{{end}}</tr>
{{range .CellRows}}<tr><td>{{.Flow}}</td>{{range .Cells}}<td>{{.Requests}} / {{.Errors}} / {{ms .P99Ms}}</td>{{end}}</tr>
{{end}}</table>

<h2>Where requests were served</h2>
<table>
<tr><th>client region</th>{{range .Served}}<th>served by {{.}}</th>{{end}}</tr>
{{range $c := .R.Regions}}<tr><td>{{$c}}</td>{{range $s := $.Served}}<td>{{served (index $.R.ServedByClientRegion $c) $s}}</td>{{end}}</tr>
{{end}}<tr><td>all</td>{{range $s := .Served}}<td>{{served $.R.ServedRegions $s}} ({{pct (served $.R.ServedRegions $s) $.R.Total.Requests}})</td>{{end}}</tr>
</table>

<h2>Over time</h2>
<figure>{{.Throughput}}<figcaption>Requests by the second they were sent in; the dashed line is the target rate.</figcaption></figure>
<figure>{{.P99}}<figcaption>p99 latency of the requests sent in each second (within 2 %).</figcaption></figure>

<h2>Latency histograms</h2>
<div class="grid">
{{range .Hists}}<figure>{{.}}</figure>
{{end}}</div>

<h2>Orders</h2>
<table>
<tr><th>checkouts sent</th><td>{{.R.Orders.Attempted}}</td></tr>
<tr><th>accepted (202/200)</th><td>{{.R.Orders.Accepted}}</td></tr>
<tr><th>confirmed</th><td>{{.R.Orders.Confirmed}}</td></tr>
<tr><th>rejected</th><td>{{.R.Orders.Rejected}}{{range $k, $v := .R.Orders.RejectReasons}} ({{$k}}: {{$v}}){{end}}</td></tr>
<tr{{if .R.Orders.Unsettled}} class="bad"{{end}}><th>unsettled after {{printf "%.1f" .R.Orders.SettleSeconds}} s</th><td>{{.R.Orders.Unsettled}}</td></tr>
</table>
{{if .R.Orders.UnsettledIDs}}<p class="meta">Unsettled: {{range $i, $id := .R.Orders.UnsettledIDs}}{{if $i}}, {{end}}{{$id}}{{end}}</p>{{end}}

<h2>Launch stock and oversell</h2>
<p class="meta">A SKU is oversold when the run's confirmed units exceed its stock before the load, or its available stock is negative afterwards. Unaccounted = initial + initially held − confirmed − available − held.</p>
{{with .Launch}}{{if .SKUs}}<table>
<tr><th>launch SKUs</th><th>initial</th><th>confirmed</th><th>available</th><th>held</th><th>unaccounted</th><th>oversold</th></tr>
<tr{{if .Oversold}} class="bad"{{end}}><td>{{.SKUs}}</td><td>{{.Initial}}</td><td>{{.Confirmed}}</td><td>{{.Available}}</td><td>{{.Held}}</td><td>{{.Unaccounted}}</td><td>{{.Oversold}}</td></tr>
</table>{{end}}{{end}}
{{if .R.Oversold}}<table>
<tr><th>oversold SKU</th><th>initial</th><th>confirmed</th><th>available</th><th>held</th><th>unaccounted</th></tr>
{{range .R.LaunchStock}}{{if .Oversold}}<tr class="bad"><td>{{.SKU}}</td><td>{{.Initial}}</td><td>{{.Confirmed}}</td><td>{{.Available}}</td><td>{{.Held}}</td><td>{{.Unaccounted}}</td></tr>
{{end}}{{end}}</table>{{end}}
<details><summary>Every launch SKU</summary>
<table>
<tr><th>SKU</th><th>initial</th><th>confirmed</th><th>available</th><th>held</th><th>unaccounted</th><th>verdict</th></tr>
{{range .R.LaunchStock}}<tr{{if .Oversold}} class="bad"{{end}}><td>{{.SKU}}</td><td>{{.Initial}}</td><td>{{.Confirmed}}</td><td>{{.Available}}</td><td>{{.Held}}</td><td>{{.Unaccounted}}</td><td>{{if .Oversold}}OVERSOLD{{else if .ReadError}}not read: {{.ReadError}}{{else}}ok{{end}}</td></tr>
{{end}}</table>
</details>

{{if .R.IdempotentFailures.Samples}}<h2>Idempotent failures (first {{len .R.IdempotentFailures.Samples}})</h2>
<table>
<tr><th>flow</th><th>request</th><th>client region</th><th>status</th><th>served by</th><th>request id</th></tr>
{{range .R.IdempotentFailures.Samples}}<tr><td>{{.Flow}}</td><td>{{.Method}} {{.Path}}</td><td>{{.ClientRegion}}</td><td>{{.Status}}</td><td>{{.ServedRegion}}</td><td>{{.RequestID}}</td></tr>
{{end}}</table>{{end}}

{{if .R.Warnings}}<h2>Warnings</h2>
<ul>{{range .R.Warnings}}<li>{{.}}</li>{{end}}</ul>{{end}}
</body>
</html>
`))
}

// launchTotals sums the launch stock checks.
type launchTotals struct {
	SKUs, Initial, Confirmed, Available, Held, Unaccounted, Oversold int
	Unread                                                           int // SKUs whose stock could not be read back
}

// launchTotals sums r's launch stock checks, for the text and the page.
func (r *Report) launchTotals() launchTotals {
	var t launchTotals
	for _, c := range r.LaunchStock {
		t.SKUs++
		t.Initial += c.Initial
		t.Confirmed += c.Confirmed
		t.Available += c.Available
		t.Held += c.Held
		t.Unaccounted += c.Unaccounted
		if c.Oversold {
			t.Oversold++
		}
		if c.ReadError != "" {
			t.Unread++
		}
	}
	return t
}

// achievedRate is the requests per second of the run's wall time; 0
// without one.
func (r *Report) achievedRate() float64 {
	if r.LoadSeconds <= 0 {
		return 0
	}
	return float64(r.Total.Requests) / r.LoadSeconds
}

// cellRow is one flow's row of the flow by client region table.
type cellRow struct {
	Flow  Flow
	Cells []Cell
}

// WriteHTML writes the report as a self-contained HTML page: tables,
// inline SVG plots (requests and p99 latency over time, a latency
// histogram per flow), orders and the oversell check. It needs no script
// and loads nothing.
func (r *Report) WriteHTML(w io.Writer) error {
	throughput, p99, hists := r.plots()
	var rows []cellRow
	for _, c := range r.Cells {
		if len(rows) == 0 || rows[len(rows)-1].Flow != c.Flow {
			rows = append(rows, cellRow{Flow: c.Flow})
		}
		rows[len(rows)-1].Cells = append(rows[len(rows)-1].Cells, c)
	}
	return pageTemplate().Execute(w, struct {
		R          *Report
		Profile    string
		Verdict    string
		CellRows   []cellRow
		Served     []string
		Throughput template.HTML
		P99        template.HTML
		Hists      []template.HTML
		Launch     launchTotals
	}{r, r.profileLine(), r.Verdict(), rows, orderedKeys(r.ServedRegions, r.Regions), throughput, p99, hists, r.launchTotals()})
}
