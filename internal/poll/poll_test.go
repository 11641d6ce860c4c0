package poll_test

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/contoso/shoes/internal/poll"
)

// Until returns as soon as the condition holds, asking it every interval;
// one that never holds fails the test with its last error once the
// deadline has passed, and not before.
func TestUntilWaitsForTheConditionAndNoLonger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start, asked := time.Now(), 0
		poll.Until(t, time.Minute, 100*time.Millisecond, func() error {
			asked++
			if time.Since(start) < time.Second {
				return errors.New("not yet")
			}
			return nil
		})
		if took := time.Since(start); took != time.Second || asked != 11 {
			t.Errorf("returned after %s and %d asks; want 1s and 11", took, asked)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{TB: t}
		start, asked := time.Now(), 0
		done := make(chan struct{})
		go func() { // Fatalf ends the goroutine it is called in
			defer close(done)
			poll.Until(rec, 2*time.Second, 500*time.Millisecond, func() error {
				asked++
				return fmt.Errorf("ask %d failed", asked)
			})
		}()
		<-done
		if took := time.Since(start); took < 2*time.Second || took > 2500*time.Millisecond {
			t.Errorf("gave up after %s; want just past 2s", took)
		}
		if !strings.Contains(rec.fatal, "not true within 2s") || !strings.Contains(rec.fatal, fmt.Sprintf("ask %d failed", asked)) {
			t.Errorf("failed with %q; want the deadline and the last error (ask %d)", rec.fatal, asked)
		}
	})
}

// recorder takes Fatalf's message instead of failing the test.
type recorder struct {
	testing.TB
	fatal string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
