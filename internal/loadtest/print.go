package loadtest

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Verdict sums the report up in one line: "OK", or what went wrong.
func (r *Report) Verdict() string {
	var bad []string
	if r.Error != "" {
		bad = append(bad, "the run could not be made: "+r.Error)
	}
	if r.Interrupted {
		bad = append(bad, "interrupted")
	}
	if r.Oversold {
		bad = append(bad, "OVERSOLD")
	}
	if n := r.IdempotentFailures.Count; n > 0 {
		bad = append(bad, fmt.Sprintf("%d idempotent requests failed", n))
	}
	if n := r.Orders.Unsettled; n > 0 {
		bad = append(bad, fmt.Sprintf("%d orders did not settle", n))
	}
	if n := r.RateLimited.Edge; n > 0 {
		bad = append(bad, fmt.Sprintf("%d requests refused by the edge's client limit", n))
	}
	if len(bad) == 0 {
		return "OK"
	}
	return strings.Join(bad, "; ")
}

// profileLine describes the schedule in words.
func (r *Report) profileLine() string {
	p := r.Profile
	var parts []string
	if p.RampSeconds > 0 {
		parts = append(parts, fmt.Sprintf("ramp %gs to %g/s", p.RampSeconds, p.Rate))
	}
	if p.HoldSeconds > 0 {
		parts = append(parts, fmt.Sprintf("hold %gs at %g/s", p.HoldSeconds, p.Rate))
	}
	if p.SpikeSeconds > 0 {
		parts = append(parts, fmt.Sprintf("launch spike %gs at %g/s", p.SpikeSeconds, p.SpikeRate))
	}
	return strings.Join(parts, ", ")
}

// errorCodes lists the non-2xx codes of s, most frequent first.
func errorCodes(s Stats) string {
	var parts []string
	for _, k := range sortedByCount(s.Codes) {
		if len(k) == 3 && k[0] == '2' {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s×%d", k, s.Codes[k]))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// sortedByCount returns the keys of m, largest count first, then by name.
func sortedByCount[K ~string](m map[K]int64) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b K) int {
		if c := cmp.Compare(m[b], m[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	return keys
}

func pct(n, of int64) string {
	if of == 0 {
		return "-"
	}
	return strconv.FormatFloat(100*float64(n)/float64(of), 'f', 1, 64) + "%"
}

// Print writes a terminal summary of the report.
func (r *Report) Print(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Load test of %s (%s)\n", r.Edge, r.profileLine())
	if r.Error != "" {
		fmt.Fprintf(&b, "The run could not be made: %s\n", r.Error)
		fmt.Fprintf(&b, "verdict: %s\n", r.Verdict())
		_, err := io.WriteString(w, b.String())
		return err
	}
	fmt.Fprintf(&b, "%d requests of %d planned in %.1fs (%.1f/s), %d ok, %d errors (%s)\n\n",
		r.Total.Requests, r.Planned, r.LoadSeconds, r.achievedRate(), r.Total.Successes, r.Total.Errors, pct(r.Total.Errors, r.Total.Requests))

	head := []string{"requests", "ok", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms", "error codes"}
	row := func(name string, s Stats) []string {
		return []string{name, strconv.FormatInt(s.Requests, 10), strconv.FormatInt(s.Successes, 10), strconv.FormatInt(s.Errors, 10),
			fmt.Sprintf("%.1f", s.Latency.P50Ms), fmt.Sprintf("%.1f", s.Latency.P95Ms), fmt.Sprintf("%.1f", s.Latency.P99Ms),
			fmt.Sprintf("%.1f", s.Latency.MaxMs), errorCodes(s)}
	}
	flows := [][]string{append([]string{"flow"}, head...)}
	for _, f := range r.Flows {
		flows = append(flows, row(string(f.Flow), f.Stats))
	}
	flows = append(flows, row("all", r.Total))
	writeTable(&b, flows)
	b.WriteString("\n")
	regions := [][]string{append([]string{"client region"}, head...)}
	for _, c := range r.ClientRegions {
		regions = append(regions, row(c.Region, c.Stats))
	}
	writeTable(&b, regions)

	b.WriteString("\nserved by:")
	for _, s := range orderedKeys(r.ServedRegions, r.Regions) {
		fmt.Fprintf(&b, " %s %d (%s)", s, r.ServedRegions[s], pct(r.ServedRegions[s], r.Total.Requests))
	}
	b.WriteString("\n")
	if l := r.RateLimited; l.Edge+l.Admission > 0 {
		fmt.Fprintf(&b, "429 Too Many Requests: %d from the edge's per-client limit, %d from order admission\n", l.Edge, l.Admission)
		if l.Edge > 0 {
			b.WriteString("  the edge limits each client address: run `contoso up --client-rate 1e9 --client-burst 1000000000` for load tests\n")
		}
	}
	fmt.Fprintf(&b, "idempotent failures (5xx or no answer to GET or keyed requests; the edge promises none): %d\n", r.IdempotentFailures.Count)
	for _, s := range r.IdempotentFailures.Samples {
		fmt.Fprintf(&b, "  %s\n", s)
	}

	o := r.Orders
	fmt.Fprintf(&b, "\norders: %d checkouts, %d accepted, %d confirmed, %d rejected", o.Attempted, o.Accepted, o.Confirmed, o.Rejected)
	for _, k := range sortedByCount(o.RejectReasons) {
		fmt.Fprintf(&b, " (%s %d)", k, o.RejectReasons[k])
	}
	fmt.Fprintf(&b, ", %d unsettled after %.1fs\n", o.Unsettled, o.SettleSeconds)

	if len(r.LaunchStock) > 0 {
		t := r.launchTotals()
		fmt.Fprintf(&b, "launch stock (%d SKUs): initial %d, confirmed %d, now available %d, held %d, unaccounted %d\n",
			t.SKUs, t.Initial, t.Confirmed, t.Available, t.Held, t.Unaccounted)
		if t.Unread > 0 {
			fmt.Fprintf(&b, "  %d SKUs could not be read back (first: %s); only confirmed > initial is checked for them\n", t.Unread, firstReadError(r.LaunchStock))
		}
		for _, c := range r.LaunchStock {
			if c.Oversold {
				fmt.Fprintf(&b, "  OVERSOLD %s (initial %d, confirmed %d, available %d)\n", c.SKU, c.Initial, c.Confirmed, c.Available)
			}
		}
	}
	if c := r.Conservation; c != nil {
		var initial, confirmed, available, held, uncertain, off, unread int
		for _, s := range c.SKUs {
			if s.ReadError != "" {
				unread++
				continue
			}
			initial += s.Initial + s.InitialHeld
			confirmed, available, held, uncertain = confirmed+s.Confirmed, available+s.Available, held+s.Held, uncertain+s.Uncertain
			if s.Unaccounted != 0 {
				off++
			}
		}
		fmt.Fprintf(&b, "stock of the %d SKUs the checkouts named: initial %d = confirmed %d + available %d + held %d + unaccounted %d; %d SKUs with unaccounted units, %d units of unknown fate\n",
			len(c.SKUs), initial, confirmed, available, held, initial-confirmed-available-held, off, uncertain)
		if unread > 0 {
			fmt.Fprintf(&b, "  %d SKUs could not be read (first: %s)\n", unread, firstReadError(c.SKUs))
		}
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	fmt.Fprintf(&b, "\nverdict: %s\n", r.Verdict())
	_, err := io.WriteString(w, b.String())
	return err
}

// writeTable writes rows as plain-text columns: the first and the last
// left-aligned, the numbers between right-aligned.
func writeTable(b *strings.Builder, rows [][]string) {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range rows {
		var line strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			switch {
			case i == 0:
				line.WriteString(c + pad)
			case i == len(r)-1:
				line.WriteString("  " + c)
			default:
				line.WriteString("  " + pad + c)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
}

func firstReadError(checks []StockCheck) string {
	for _, c := range checks {
		if c.ReadError != "" {
			return c.SKU + ": " + c.ReadError
		}
	}
	return ""
}
