package stamp

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/contoso/shoes/internal/shop"
)

// waiter is a request waiting for a slot in a synctest bubble: done
// receives acquire's answer and how long it waited.
type waiter struct {
	arrived time.Time
	err     error
	waited  time.Duration
}

func wait(ctx context.Context, s *slots) <-chan waiter {
	done := make(chan waiter, 1)
	go func() {
		start := time.Now()
		arrived, err := s.acquire(ctx)
		done <- waiter{arrived, err, time.Since(start)}
	}()
	return done
}

// mustTake takes a slot that must be free at once.
func mustTake(t *testing.T, s *slots) time.Time {
	t.Helper()
	arrived, err := s.acquire(t.Context())
	if err != nil {
		t.Fatalf("acquire with a free slot = %v", err)
	}
	return arrived
}

// pending fails the test when a waiter has been answered already.
func pending(t *testing.T, done <-chan waiter) {
	t.Helper()
	synctest.Wait()
	select {
	case w := <-done:
		t.Fatalf("a waiter was answered (%v after %s), want it still waiting", w.err, w.waited)
	default:
	}
}

// A request beyond the capacity waits for a slot, first come first
// served; it gets one as soon as one is released.
func TestSlotsWaitForARelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSlots(2, capacityWait)
		a := mustTake(t, s)
		mustTake(t, s)
		first := wait(t.Context(), s)
		synctest.Wait()
		second := wait(t.Context(), s)
		pending(t, first)
		time.Sleep(100 * time.Millisecond)
		s.release(a)
		synctest.Wait()
		select {
		case w := <-first:
			if w.err != nil || w.waited != 100*time.Millisecond {
				t.Fatalf("first waiter = %v after %s, want a slot after 100ms", w.err, w.waited)
			}
		default:
			t.Fatal("the first waiter has no slot after a release")
		}
		pending(t, second)
		if w := s.window(); w.waiting != 1 || w.peak != 2 || w.served != 1 || w.shed != 0 {
			t.Fatalf("window = %+v, want 1 waiting, peak 2, 1 served, none shed", w)
		}
	})
}

// A waiter that gets no slot within capacityWait is refused with
// errAtCapacity at exactly that bound, and counted as shed.
func TestSlotsWaitAtMostTheBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSlots(1, capacityWait)
		mustTake(t, s)
		w := <-wait(t.Context(), s)
		if !errors.Is(w.err, errAtCapacity) || shop.KindOf(w.err) != shop.KindTooMany || w.waited != capacityWait {
			t.Fatalf("waiter = %v after %s, want errAtCapacity after %s", w.err, w.waited, capacityWait)
		}
		if got := s.window(); got.shed != 1 || got.waiting != 0 {
			t.Fatalf("window = %+v, want 1 shed, none waiting", got)
		}
	})
}

// At most maxWaiting(capacity) requests wait: the next is refused at once.
func TestSlotsBoundTheWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSlots(2, capacityWait)
		mustTake(t, s)
		mustTake(t, s)
		n := maxWaiting(2)
		waiters := make([]<-chan waiter, n)
		for i := range waiters {
			waiters[i] = wait(t.Context(), s)
		}
		synctest.Wait()
		start := time.Now()
		if _, err := s.acquire(t.Context()); !errors.Is(err, errAtCapacity) || time.Since(start) != 0 {
			t.Fatalf("acquire with 2 held and %d waiting = %v after %s, want errAtCapacity at once", n, err, time.Since(start))
		}
		if got := s.window(); got.shed != 1 || got.waiting != n {
			t.Fatalf("window = %+v, want 1 shed, %d waiting", got, n)
		}
		for _, w := range waiters {
			<-w
		}
	})
}

// A waiter whose context ends stops waiting at once, with an error of the
// same kind that wraps the context's; it is not counted as shed, and the
// next release goes to the waiter behind it.
func TestSlotsWaiterStopsWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSlots(2, capacityWait)
		a := mustTake(t, s)
		mustTake(t, s)
		ctx, cancel := context.WithCancel(t.Context())
		gone := wait(ctx, s)
		synctest.Wait()
		next := wait(t.Context(), s)
		time.Sleep(50 * time.Millisecond)
		cancel()
		synctest.Wait()
		w := <-gone
		if !errors.Is(w.err, context.Canceled) || shop.KindOf(w.err) != shop.KindTooMany || w.waited != 50*time.Millisecond {
			t.Fatalf("cancelled waiter = %v after %s, want a too-many error wrapping context.Canceled after 50ms", w.err, w.waited)
		}
		s.release(a)
		if w := <-next; w.err != nil {
			t.Fatalf("the waiter behind = %v, want the released slot", w.err)
		}
		if got := s.window(); got.shed != 0 || got.waiting != 0 || got.served != 1 {
			t.Fatalf("window = %+v, want none shed, none waiting, 1 served", got)
		}
	})
}

// Lowering the capacity strands no request holding a slot: they finish,
// and new requests wait until fewer than the new capacity are held.
// Raising it gives the new slots to the waiters at once.
func TestSlotsCapacityChangesUnderHolders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSlots(3, capacityWait)
		held := []time.Time{mustTake(t, s), mustTake(t, s), mustTake(t, s)}
		s.setCapacity(1)
		if got := s.size(); got != 1 {
			t.Fatalf("capacity = %d, want 1", got)
		}
		w := wait(t.Context(), s)
		pending(t, w)
		s.release(held[0])
		pending(t, w) // 2 held, capacity 1
		s.release(held[1])
		pending(t, w) // 1 held, capacity 1
		s.release(held[2])
		synctest.Wait()
		got := <-w
		if got.err != nil {
			t.Fatalf("waiter after the holders left = %v", got.err)
		}
		if win := s.window(); win.peak != 3 || win.served != 3 || win.capacity != 1 {
			t.Fatalf("window = %+v, want peak 3 (held over the lowering), 3 served, capacity 1", win)
		}

		// Capacity 1, held by the waiter; another waits. A raise admits it
		// at once.
		next := wait(t.Context(), s)
		pending(t, next)
		s.setCapacity(3)
		synctest.Wait()
		select {
		case got := <-next:
			if got.err != nil || got.waited != 0 {
				t.Fatalf("waiter after the raise = %v after %s, want a slot at once", got.err, got.waited)
			}
		default:
			t.Fatal("the waiter has no slot after the capacity was raised")
		}
		if win := s.window(); win.peak != 2 || win.capacity != 3 || win.waiting != 0 {
			t.Fatalf("window after the raise = %+v, want peak 2, capacity 3, none waiting", win)
		}
	})
}

// The window's mean in flight is the time-weighted number of slots held,
// including the partial holds of requests still in flight; its p99 is
// the slowest requests' bucket bound, at most the slowest latency.
func TestSlotsWindowIntegratesInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSlots(4, capacityWait)
		s.window() // start a window now
		a, b := mustTake(t, s), mustTake(t, s)
		time.Sleep(250 * time.Millisecond)
		s.release(a) // 2 held for 250 ms
		time.Sleep(750 * time.Millisecond)
		// b still held: 1 for 750 ms. Mean over 1 s: 0.5 + 0.75.
		w := s.window()
		if w.length != time.Second || w.inFlight != 1.25 || w.peak != 2 || w.served != 1 || w.p99 != 250*time.Millisecond {
			t.Fatalf("window = %+v, want 1s, 1.25 in flight, peak 2, 1 served, p99 250ms", w)
		}
		time.Sleep(time.Second)
		s.release(b) // held for 2 s in all
		w = s.window()
		if w.inFlight != 1 || w.peak != 1 || w.served != 1 || w.p99 != 2*time.Second {
			t.Fatalf("window = %+v, want 1 in flight, peak 1 (held at its start), 1 served, p99 2s", w)
		}
		if w = s.window(); w.inFlight != 0 || w.peak != 0 || w.served != 0 || w.p99 != 0 {
			t.Fatalf("idle window = %+v, want zeros", w)
		}
	})
}

// BenchmarkSlots measures a slot's take and release, the cost the
// capacity adds to every API request: it must allocate nothing.
func BenchmarkSlots(b *testing.B) {
	s := newSlots(defaultCapacity, capacityWait)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			arrived, err := s.acquire(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			s.release(arrived)
		}
	})
}
