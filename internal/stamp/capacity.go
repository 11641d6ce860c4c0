package stamp

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/contoso/shoes/internal/backoff"
	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
)

// defaultCapacity is Config.Capacity when it is zero.
const defaultCapacity = 256

// maxWaiting is how many requests may wait for a slot: four times the
// capacity, and at least 64, so that a small capacity (a test bench's one
// slot) queues a burst for the wait's length instead of refusing it.
func maxWaiting(capacity int) int { return max(4*capacity, 64) }

// capacityWait is how long an API request waits for a slot at most before
// it is refused.
const capacityWait = 500 * time.Millisecond

// maxWork bounds Config.Work and SetWork.
const maxWork = 10 * time.Second

// errAtCapacity refuses a request that found no slot: 429, which the
// problem writer answers with Retry-After.
var errAtCapacity = shop.Errorf(shop.KindTooMany, "", "the stamp is at capacity; retry in a second")

// slotBounds are the upper bounds of the latency histogram's buckets; a
// last bucket holds what is slower than the last bound.
var slotBounds = [...]time.Duration{
	1 * time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond, 5 * time.Millisecond, 7500 * time.Microsecond,
	10 * time.Millisecond, 15 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond, 50 * time.Millisecond,
	75 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond,
	500 * time.Millisecond, 750 * time.Millisecond, time.Second, 1500 * time.Millisecond, 2 * time.Second,
	3 * time.Second, 5 * time.Second, 10 * time.Second,
}

// slots bounds the API requests a stamp handles at once (its capacity) and
// measures its load. A request beyond the capacity waits for a slot, first
// come first served, at most wait and with at most maxWaiting requests
// waiting; otherwise it is refused (errAtCapacity) and counted as shed.
//
// The mean in flight is integrated, not sampled: at every change of the
// number of slots held, the time since the previous change times the
// number held is added to busy (slot-nanoseconds), under the mutex the
// semaphore takes anyway; a window's mean is busy, plus the partial holds
// up to its end, over its length. Each request's latency goes into a
// fixed histogram reset every window, so the request path allocates
// nothing unless it has to wait.
type slots struct {
	wait time.Duration // how long a request waits for a slot at most

	mu       sync.Mutex // guards everything below
	capacity int        // slots; held may exceed it after a lowering, until requests leave
	held     int        // slots held
	waiters  list.List  // of chan struct{}, closed when its waiter is given a slot; oldest first
	since    time.Time  // the window's start
	changed  time.Time  // when held last changed (or the window started)
	busy     float64    // slot-nanoseconds held in the window up to changed
	peak     int        // most slots held at once in the window
	shed     int64      // requests refused in the window
	served   int64      // requests that held a slot and left it in the window
	hist     [len(slotBounds) + 1]int64
	slowest  time.Duration // the window's slowest request
}

// slotWindow is what slots measured over one window.
type slotWindow struct {
	length   time.Duration
	inFlight float64 // mean slots held
	peak     int
	capacity int
	waiting  int
	shed     int64
	served   int64
	p99      time.Duration // 0 when nothing was served
}

func newSlots(capacity int, wait time.Duration) *slots {
	now := time.Now()
	return &slots{wait: wait, capacity: capacity, since: now, changed: now}
}

// acquire takes a slot for a request, waiting for one if need be. It
// returns when the request arrived, for release. Without a slot it returns
// errAtCapacity, or, when ctx ends while it waits, an error of the same
// kind for the client that wraps ctx's.
func (s *slots) acquire(ctx context.Context) (arrived time.Time, err error) {
	s.mu.Lock()
	now := time.Now()
	if s.held < s.capacity && s.waiters.Len() == 0 {
		s.take(now)
		s.mu.Unlock()
		return now, nil
	}
	if s.waiters.Len() >= maxWaiting(s.capacity) {
		s.shed++
		s.mu.Unlock()
		return now, errAtCapacity
	}
	ready := make(chan struct{})
	e := s.waiters.PushBack(ready)
	s.mu.Unlock()

	t := time.NewTimer(s.wait)
	defer t.Stop()
	select {
	case <-ready:
		return now, nil
	case <-t.C:
		err = errAtCapacity
	case <-ctx.Done():
		err = &shop.Error{Kind: shop.KindTooMany, Detail: errAtCapacity.Detail, Err: fmt.Errorf("wait for a slot: %w", ctx.Err())}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-ready: // given a slot as the wait ended
		if err == errAtCapacity {
			return now, nil
		}
		s.leave(time.Now()) // the request is gone: give the slot on
		return now, err
	default:
	}
	s.waiters.Remove(e)
	if err == errAtCapacity {
		s.shed++
	}
	return now, err
}

// release gives back the slot of a request that arrived at arrived and
// counts it as served.
func (s *slots) release(arrived time.Time) {
	s.mu.Lock()
	now := time.Now()
	took := now.Sub(arrived)
	i := 0
	for i < len(slotBounds) && took > slotBounds[i] {
		i++
	}
	s.hist[i]++
	s.served++
	s.slowest = max(s.slowest, took)
	s.leave(now)
	s.mu.Unlock()
}

// take counts one more slot held at now. s.mu is held.
func (s *slots) take(now time.Time) {
	s.integrate(now)
	s.held++
	s.peak = max(s.peak, s.held)
}

// leave counts one slot less held at now and gives the free slots to the
// oldest waiters. s.mu is held.
func (s *slots) leave(now time.Time) {
	s.integrate(now)
	s.held--
	s.wake(now)
}

// wake gives free slots to waiters, oldest first. s.mu is held.
func (s *slots) wake(now time.Time) {
	for s.held < s.capacity && s.waiters.Len() > 0 {
		e := s.waiters.Front()
		s.waiters.Remove(e)
		s.take(now)
		close(e.Value.(chan struct{}))
	}
}

// integrate adds the slots held since the last change to busy. s.mu is
// held.
func (s *slots) integrate(now time.Time) {
	if d := now.Sub(s.changed); d > 0 {
		s.busy += float64(s.held) * float64(d)
	}
	s.changed = now
}

// setCapacity makes n the capacity for the next requests; requests
// holding a slot keep it, and a raise gives the new slots to waiters at
// once.
func (s *slots) setCapacity(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.capacity = n
	s.wake(time.Now())
}

func (s *slots) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.capacity
}

// window returns what was measured since the previous call (or since s
// was made) and starts the next window.
func (s *slots) window() slotWindow {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.integrate(now)
	w := slotWindow{length: now.Sub(s.since), peak: s.peak, capacity: s.capacity, waiting: s.waiters.Len(),
		shed: s.shed, served: s.served, p99: s.p99()}
	if w.length > 0 {
		w.inFlight = s.busy / float64(w.length)
	}
	s.since, s.busy, s.peak, s.shed, s.served, s.slowest = now, 0, s.held, 0, 0, 0
	s.hist = [len(slotBounds) + 1]int64{}
	return w
}

// p99 is the upper bound of the bucket that holds the window's 99th
// percentile latency, and at most its slowest request. s.mu is held.
func (s *slots) p99() time.Duration {
	if s.served == 0 {
		return 0
	}
	rank := int64(math.Ceil(0.99 * float64(s.served)))
	var seen int64
	for i, n := range s.hist {
		seen += n
		if seen >= rank && i < len(slotBounds) {
			return min(slotBounds[i], s.slowest)
		}
	}
	return s.slowest
}

// admit is the middleware that holds an API request inside a slot of its
// kind's bulkhead (reads: GET and HEAD; writes: the others), with the
// simulated work (Config.Work) and the injected fault it wraps, and
// answers 429 through the problem writer when there is none.
func (s *Stamp) admit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pool := s.writes
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			pool = s.reads
		}
		arrived, err := pool.acquire(r.Context())
		if err != nil {
			httpapi.WriteError(w, r, s.log, err)
			return
		}
		defer pool.release(arrived)
		if d := time.Duration(s.work.Load()); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-r.Context().Done(): // the client left; the handler sees it
				t.Stop()
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Capacity is the number of API requests of each kind (reads, writes) the
// stamp handles at once.
func (s *Stamp) Capacity() int { return s.reads.size() }

// SetCapacity makes n the number of API requests of each kind the stamp
// handles at once, from the next request on: a lowering lets the requests
// holding a slot finish, a raise admits waiting requests at once. n must
// be at least 1.
func (s *Stamp) SetCapacity(n int) error {
	if err := checkCapacity(n); err != nil {
		return fmt.Errorf("set stamp capacity: %w", err)
	}
	s.reads.setCapacity(n)
	s.writes.setCapacity(n)
	return nil
}

// Work is the simulated work every API request holds its slot for.
func (s *Stamp) Work() time.Duration { return time.Duration(s.work.Load()) }

// SetWork makes d the simulated work of the next API requests: from 0
// (none) to 10 s.
func (s *Stamp) SetWork(d time.Duration) error {
	if err := checkWork(d); err != nil {
		return fmt.Errorf("set stamp work: %w", err)
	}
	s.work.Store(int64(d))
	return nil
}

func checkCapacity(n int) error {
	if n < 1 {
		return fmt.Errorf("capacity %d is below 1", n)
	}
	return nil
}

func checkWork(d time.Duration) error {
	if d < 0 || d > maxWork {
		return fmt.Errorf("work %s is not from 0 to %s", d, maxWork)
	}
	return nil
}

// loadMeter is the state of the load report between two windows.
type loadMeter struct {
	mu  sync.Mutex    // guards cpu
	cpu time.Duration // the process's CPU time at the end of the last window
}

// bulkhead is what w measured, as a health report shows it.
func (w slotWindow) bulkhead() health.Bulkhead {
	b := health.Bulkhead{InFlight: w.inFlight, Peak: w.peak, Capacity: w.capacity, Waiting: w.waiting, Shed: w.shed,
		Requests: w.served, P99Ms: float64(w.p99.Microseconds()) / 1000}
	if w.capacity > 0 {
		b.Utilisation = w.inFlight / float64(w.capacity)
	}
	return b
}

// load is the stamp's load over the window since its previous call (the
// first: since New), for its health report (health.Config.Load): each
// bulkhead's, and the busier one's (the higher demand) at the top.
func (s *Stamp) load() *health.Load {
	s.meter.mu.Lock()
	defer s.meter.mu.Unlock()
	rw, ww := s.reads.window(), s.writes.window()
	cpu := processCPU()
	reads, writes := rw.bulkhead(), ww.bulkhead()
	l := &health.Load{Bulkhead: reads, Reads: &reads, Writes: &writes, WindowMs: rw.length.Milliseconds()}
	if writes.Demand() > reads.Demand() {
		l.Bulkhead = writes
	}
	if rw.length > 0 && cpu > s.meter.cpu {
		l.CPU = float64(cpu-s.meter.cpu) / float64(rw.length)
	}
	s.meter.cpu = cpu
	if q := s.queue.Load(); q != nil {
		l.Orders = &health.OrderLoad{InProcess: s.worker.OrdersInProcess(), Concurrency: s.worker.OrderConcurrency(),
			Queued: q.pending, OldestMs: q.oldest.Milliseconds(), ReadAgoMs: time.Since(q.at).Milliseconds()}
	}
	return l
}

// followInstanceSettings applies the deployment's instance settings
// (store.InstanceKey) as the operations plane sets them, until ctx ends:
// their capacity and work, or, while there are none, the stamp's own
// configuration's. A watch that breaks is set up again.
func (s *Stamp) followInstanceSettings(ctx context.Context) {
	backoff.Policy{First: 250 * time.Millisecond, Max: 5 * time.Second}.Keep(ctx, func(ctx context.Context) error {
		return s.cfg.Store.WatchInstance(ctx, s.applyInstanceSettings)
	}, func(err error, wait time.Duration) {
		s.log.Warn("instance settings watch failed; starting over", "error", err, "retry_in", wait)
	})
}

// applyInstanceSettings makes is the stamp's capacity and work; nil: its
// configuration's.
func (s *Stamp) applyInstanceSettings(is *store.InstanceSettings) {
	capacity, work := s.cfg.Capacity, s.cfg.Work
	if is != nil {
		capacity, work = is.Capacity, time.Duration(is.WorkMs)*time.Millisecond
	}
	if capacity == s.Capacity() && work == s.Work() {
		return
	}
	if err := errors.Join(s.SetCapacity(capacity), s.SetWork(work)); err != nil {
		s.log.Error("instance settings not applied", "error", err)
		return
	}
	s.log.Info("instance settings applied", "capacity", capacity, "work", work, "own", is == nil)
}

// queueReading is the order queue's backlog as one reading found it.
type queueReading struct {
	pending uint64        // orders accepted and not yet processed
	oldest  time.Duration // how long the oldest had waited
	at      time.Time     // when it was read
}

// readOrderQueue reads the order queue's backlog once per probe interval,
// at most once per costlyProbeEvery (each reading asks every intake
// stream's leader for its consumer's state), until ctx ends, for the load
// report, each reading within its interval (at least 500 ms). A failed
// reading keeps the last good one, whose age the report shows.
func (s *Stamp) readOrderQueue(ctx context.Context) {
	every := max(s.cfg.ProbeInterval, costlyProbeEvery)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, max(every, 500*time.Millisecond))
		oldest, pending, err := s.cfg.Store.QueueAge(rctx, store.StreamOrders)
		cancel()
		if err == nil {
			s.queue.Store(&queueReading{pending: pending, oldest: oldest, at: time.Now()})
		} else if ctx.Err() == nil {
			s.log.Debug("order queue not read", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
