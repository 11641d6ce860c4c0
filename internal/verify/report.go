package verify

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"strings"
	"text/tabwriter"
)

// PrintTable writes the verdicts as an aligned table and a summary line.
func PrintTable(w io.Writer, vs []Verdict) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "EXPERIMENT\tEXPECTATION\tMEASURED\tVERDICT")
	failed := 0
	for _, v := range vs {
		verdict := "pass"
		if !v.Pass {
			verdict, failed = "FAIL", failed+1
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.Experiment, v.Expectation, strings.ReplaceAll(v.Measured, "\t", " "), verdict)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d expectations, %d passed, %d failed\n", len(vs), len(vs)-failed, failed)
	printNumbers(w, vs)
}

// numberNames are the release numbers in the order they are printed, with
// how to print each.
var numberNames = []struct{ key, label, unit string }{
	{"release_seconds", "release", "s"},
	{"to_100_seconds", "to 100 %", "s"},
	{"rollback_seconds", "rollback", "s"},
	{"paused_after_injection_seconds", "paused after the fault", "s"},
	{"error_share", "error share", ""},
}

// printNumbers writes the numbers behind the release verdicts, one line
// per experiment that has any.
func printNumbers(w io.Writer, vs []Verdict) {
	var order []string
	byExp := map[string]map[string]float64{}
	for _, v := range vs {
		if len(v.Numbers) == 0 {
			continue
		}
		if byExp[v.Experiment] == nil {
			byExp[v.Experiment] = map[string]float64{}
			order = append(order, v.Experiment)
		}
		maps.Copy(byExp[v.Experiment], v.Numbers)
	}
	if len(order) == 0 {
		return
	}
	fmt.Fprintln(w, "release numbers:")
	for _, exp := range order {
		var parts []string
		for _, n := range numberNames {
			x, ok := byExp[exp][n.key]
			switch {
			case !ok:
			case n.unit == "s":
				parts = append(parts, fmt.Sprintf("%s %.1f s", n.label, x))
			default:
				parts = append(parts, fmt.Sprintf("%s %.4f", n.label, x))
			}
		}
		fmt.Fprintf(w, "  %s: %s\n", exp, strings.Join(parts, ", "))
	}
}

// WriteJSON writes the verdicts as JSON.
func WriteJSON(w io.Writer, vs []Verdict) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{"verdicts": vs, "failed": Failed(vs)})
}
