package deploytest

import (
	"fmt"
	"strings"
	"testing"
)

// The errors a failed test shows are the last ones, oldest first, each
// cut to maxLine, with the count of all of them.
func TestLastLinesKeepsTheLastOnesAndCountsAll(t *testing.T) {
	l := &lastLines{max: 3}
	for i := range 5 {
		fmt.Fprintf(l, "error %d\n", i)
	}
	fmt.Fprintf(l, "%s\n", strings.Repeat("x", 2*maxLine))
	lines, total := l.get()
	if total != 6 || len(lines) != 3 {
		t.Fatalf("kept %d of %d: %q; want 3 of 6", len(lines), total, lines)
	}
	if lines[0] != "error 3\n" || lines[1] != "error 4\n" {
		t.Errorf("kept %q; want errors 3 and 4 first, oldest first", lines[:2])
	}
	if got := lines[2]; len(got) > maxLine+len("…\n") || !strings.HasSuffix(got, "…\n") {
		t.Errorf("a long line kept as %d bytes %q…; want it cut to %d", len(got), got[:20], maxLine)
	}
}
