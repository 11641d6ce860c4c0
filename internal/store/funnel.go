package store

import (
	"context"
	"sync"

	"github.com/contoso/shoes/internal/shop"
)

// maxStockBatch bounds how many changes to one SKU's stock go into one
// compare-and-set.
const maxStockBatch = 128

// stockLanes funnels the stock changes that this store's callers make at
// the same time through one writer per SKU, which applies each batch of
// them with one compare-and-set (updateAll). Without it, every processor
// of a launch that sells one SKU races every other for that one record:
// dozens of writers, each read-modify-write conflicting with all the
// others, tens of conflicts per success. With it, the writers are one per
// store client (per stamp instance), and a conflict costs one read and the
// batch applied again.
type stockLanes struct {
	mu    sync.Mutex
	lanes map[string]*stockLane // by SKU; a lane lives while it has work
	// blind is, by SKU, the stock as this store client last wrote it, kept
	// only under Config.UnsafeBlindStockWrites: a new lane starts from it
	// instead of reading the SKU again.
	blind map[string]Version
}

// stockLane is one SKU's queue of changes; it is in stockLanes exactly
// while its writer runs.
type stockLane struct {
	queue []*stockChange
	// last is the stock as this lane's last batch wrote it: the next batch
	// writes over it without reading it first (a Version), so a lane that
	// is the SKU's only writer reads it once.
	last Version
}

// stockChange is one caller's change and where its answer goes.
type stockChange struct {
	change[shop.Stock]
	done  chan error // buffered: the writer never waits for the caller
	taken bool       // set, under stockLanes.mu, when a batch takes it
}

// changeStock applies fn to sku's stock, batched with whatever other
// changes to sku this store's callers make meanwhile, and returns fn's
// answer (or the store's failure) once the write that holds it is
// acknowledged. fn must leave the stock as it found it when it returns an
// error. A caller that gives up (ctx done) while its change waits for a
// batch gets ctx's error, and its change is left out; once a batch has
// taken it, the caller waits for that batch's answer (within the write
// budget), so that it never reports undone a change that was written.
func (s *Store) changeStock(ctx context.Context, sku string, fn func(st *shop.Stock, exists bool) error) error {
	c := &stockChange{change: change[shop.Stock]{ctx: ctx, fn: fn}, done: make(chan error, 1)}
	l := &s.stock
	l.mu.Lock()
	if l.lanes == nil {
		l.lanes = map[string]*stockLane{}
	}
	lane, running := l.lanes[sku]
	if !running {
		lane = &stockLane{}
		l.lanes[sku] = lane
	}
	lane.queue = append(lane.queue, c)
	l.mu.Unlock()
	if !running {
		// Its own goroutine, not the caller's: a caller must not be kept
		// writing for others once its own change is answered.
		go s.writeStock(sku, lane)
	}
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
	}
	l.mu.Lock()
	taken := c.taken
	l.mu.Unlock()
	if !taken {
		return ctx.Err() // the batch that takes it skips it: its ctx is done
	}
	return <-c.done
}

// writeStock is a lane's writer: it applies the lane's queue in batches of
// at most maxStockBatch, in the order they came, until the queue is empty,
// and then ends the lane. A batch's write is a span of the trace of its
// first change, linked to the traces of the others.
func (s *Store) writeStock(sku string, lane *stockLane) {
	l := &s.stock
	for {
		l.mu.Lock()
		n := min(len(lane.queue), maxStockBatch)
		if n == 0 {
			delete(l.lanes, sku)
			l.mu.Unlock()
			return
		}
		batch := lane.queue[:n:n]
		lane.queue = lane.queue[n:]
		changes := make([]change[shop.Stock], n)
		for i, c := range batch {
			c.taken = true
			changes[i] = c.change
		}
		if !lane.last.Known() && s.cfg.UnsafeBlindStockWrites {
			lane.last = l.blind[sku]
		}
		l.mu.Unlock()
		_, ver, errs, err := updateAll(context.WithoutCancel(batch[0].ctx), s, kindStock, s.inventory, sku, lane.last, changes)
		lane.last = ver
		if ver.Known() && s.cfg.UnsafeBlindStockWrites {
			l.mu.Lock()
			if l.blind == nil {
				l.blind = map[string]Version{}
			}
			l.blind[sku] = ver
			l.mu.Unlock()
		}
		for i, c := range batch {
			if err != nil {
				c.done <- err
			} else {
				c.done <- errs[i]
			}
		}
	}
}
