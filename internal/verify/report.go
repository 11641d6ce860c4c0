package verify

import (
	"encoding/json"
	"fmt"
	"io"
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
}

// WriteJSON writes the verdicts as JSON.
func WriteJSON(w io.Writer, vs []Verdict) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{"verdicts": vs, "failed": Failed(vs)})
}
