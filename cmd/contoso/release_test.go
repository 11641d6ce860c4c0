package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/release"
)

func TestReleaseCommandRefusesBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"release"},
		{"release", "start", "stop"},
		{"release", "explode"},
		{"release", "start", "--steps", "10,x,100"},
		{"release", "start", "--no-such-flag"},
	} {
		err := run(context.Background(), args, func(string) string { return "" }, io.Discard, io.Discard)
		if err == nil {
			t.Errorf("%q succeeded", args)
		}
	}
}

// contoso release drives a release of a running deployment through its
// operations API: start, status, promote, and the record at the end.
func TestReleaseCommand(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, "westeurope")
	ops := d.OpsURL()
	cli := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(t.Context(), append([]string{"release"}, append(args, "--ops", ops)...), func(string) string { return "" }, &out, &errOut)
		return out.String(), err
	}
	out, err := cli("start", "--version", "v-cli", "--steps", "100", "--hold", "1h", "--by", "cli-test")
	if err != nil {
		t.Fatal(err)
	}
	var rec release.Record
	if err := json.Unmarshal([]byte(out), &rec); err != nil || rec.Version != "v-cli" || rec.By != "cli-test" || rec.Gate.MinHold != time.Hour {
		t.Fatalf("start printed %s (%v)", out, err)
	}
	if _, err := cli("start", "--version", "v-again"); err == nil || !strings.Contains(err.Error(), "is under way") {
		t.Fatalf("a second start = %v, want the conflict's reason", err)
	}
	// The new stamp warms up, then the one step holds for an hour: an
	// operator approves it.
	deploytest.Eventually(t, time.Minute, func() error {
		_, err := cli("promote", "--by", "cli-test")
		return err
	})
	deploytest.Eventually(t, time.Minute, func() error {
		out, err := cli("status")
		if err != nil {
			return err
		}
		var s release.Status
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			return err
		}
		if s.Current == nil || s.Current.Phase != release.PhaseDone {
			return fmt.Errorf("status: %s", out)
		}
		if s.Current.Steps[0].Verdict != "promoted" || len(s.Releases) != 1 {
			t.Fatalf("status at the end: %s", out)
		}
		return nil
	})
}
