package backoff_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/contoso/shoes/internal/backoff"
)

// Retry waits First after the first failure, doubling up to Max, tells
// notify each wait, and stops at the first success; its attempts come at
// exactly those times. (Mutation tried: no doubling: the waits are all
// 100 ms.)
func TestRetryDoublesTheWaitUpToMax(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var at []time.Duration
		var waits []time.Duration
		fail := errors.New("not yet")
		err := backoff.Policy{First: 100 * time.Millisecond, Max: time.Second}.Retry(t.Context(), func(context.Context) error {
			at = append(at, time.Since(start))
			if len(at) < 7 {
				return fail
			}
			return nil
		}, func(err error, wait time.Duration) {
			if !errors.Is(err, fail) {
				t.Errorf("notify got %v, want the attempt's error", err)
			}
			waits = append(waits, wait)
		})
		if err != nil {
			t.Fatalf("Retry = %v, want nil after the seventh attempt", err)
		}
		ms := time.Millisecond
		if want := []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, time.Second, time.Second}; !slices.Equal(waits, want) {
			t.Errorf("waits = %v, want %v", waits, want)
		}
		if want := []time.Duration{0, 100 * ms, 300 * ms, 700 * ms, 1500 * ms, 2500 * ms, 3500 * ms}; !slices.Equal(at, want) {
			t.Errorf("attempts at %v, want %v", at, want)
		}
	})
}

// When the context ends, Retry stops waiting at once and returns the
// context's error with the last attempt's; a context already done runs
// nothing.
func TestRetryStopsWhenTheContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 250*time.Millisecond)
		defer cancel()
		fail := errors.New("still down")
		attempts, notified := 0, 0
		start := time.Now()
		err := backoff.Policy{First: 100 * time.Millisecond, Max: time.Minute}.Retry(ctx, func(context.Context) error {
			attempts++
			return fail
		}, func(error, time.Duration) { notified++ })
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, fail) {
			t.Errorf("Retry = %v, want the deadline and the last error", err)
		}
		// Attempts at 0 and 100 ms; the wait of 200 ms after the second
		// is cut short by the deadline at 250 ms.
		if took := time.Since(start); took != 250*time.Millisecond || attempts != 2 || notified != 2 {
			t.Errorf("took %s, %d attempts, %d notified; want 250ms, 2 and 2", took, attempts, notified)
		}

		done, stop := context.WithCancel(t.Context())
		stop()
		ran := false
		if err := (backoff.Policy{}).Retry(done, func(context.Context) error { ran = true; return nil }, nil); !errors.Is(err, context.Canceled) || ran {
			t.Errorf("Retry on a done context = %v (ran: %v), want context.Canceled and nothing run", err, ran)
		}
	})
}

// An attempt that fails because the context ended is not notified: there
// is no next attempt to announce.
func TestRetryDoesNotNotifyWhenTheContextEnded(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	notified := false
	err := (backoff.Policy{}).Retry(ctx, func(context.Context) error {
		cancel()
		return errors.New("cut off")
	}, func(error, time.Duration) { notified = true })
	if !errors.Is(err, context.Canceled) || notified {
		t.Fatalf("Retry = %v, notified %v; want context.Canceled and no notice", err, notified)
	}
}

// The zero Policy waits 100 ms, and a Max below First keeps First.
func TestRetryZeroPolicy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var waits []time.Duration
		n := 0
		_ = backoff.Policy{Max: time.Millisecond}.Retry(t.Context(), func(context.Context) error {
			if n++; n < 4 {
				return errors.New("no")
			}
			return nil
		}, func(_ error, w time.Duration) { waits = append(waits, w) })
		if want := []time.Duration{100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond}; !slices.Equal(waits, want) {
			t.Errorf("waits = %v, want %v", waits, want)
		}
	})
}

// Keep starts run again whenever it returns, with an error or without
// (told as ErrEnded), waiting as Retry does, until the context ends.
// (Mutation tried: Keep as a plain Retry: it stops after the first return
// without an error, one run.)
func TestKeepRunsAgainWhateverItReturns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		boom := errors.New("server gone")
		runs := 0
		var told []error
		var waits []time.Duration
		backoff.Policy{First: time.Second, Max: time.Second}.Keep(ctx, func(context.Context) error {
			runs++
			switch runs {
			case 2:
				return boom
			case 4:
				cancel()
				return nil
			}
			return nil
		}, func(err error, wait time.Duration) {
			told = append(told, err)
			waits = append(waits, wait)
		})
		if runs != 4 || len(told) != 3 || !errors.Is(told[0], backoff.ErrEnded) || !errors.Is(told[1], boom) || !errors.Is(told[2], backoff.ErrEnded) {
			t.Fatalf("%d runs, told %v; want 4 runs, told ended, %v, ended (nothing after the cancel)", runs, told, boom)
		}
		if want := []time.Duration{time.Second, time.Second, time.Second}; !slices.Equal(waits, want) {
			t.Errorf("waits = %v, want %v", waits, want)
		}
	})
}
