package store

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/contoso/shoes/internal/shop"
)

// Names of the buying path's assets.
const (
	BucketInventory   = "inventory"
	BucketOrders      = "orders"
	BucketIdempotency = "idempotency"
	BucketCarts       = "carts"
	StreamOrders      = "ORDERS"
	ConsumerOrders    = "order-processor"
	subjectOrder      = "orders.new"
	inventorySeedKey  = "seed.inventory.v1"
)

// errNotFound is what leaderValue returns for a missing or deleted key.
var errNotFound = jetstream.ErrKeyNotFound

// leaderValue reads key from bucket on the stream leader, which, unlike a
// direct get, sees every write acknowledged before, except in one case: a
// leader cut off from the others answers as leader until it steps down
// (the engine's lost-quorum check, up to about 20 s), and meanwhile misses
// what the new leader acknowledged. Writes stay safe (that server can
// commit nothing); such a read can be stale, and a client that reaches the
// cut-off region sees it (TestRememberCreatesAgainWhenItsFirstCreateNeverCommitted
// waits for the step-down before it reads). It returns the value and its
// revision; for a deleted key, errNotFound and the delete marker's
// revision (which an update must name).
func (s *Store) leaderValue(ctx context.Context, bucket, key string) ([]byte, uint64, error) {
	seq, data, hdrs, err := s.leaderGet(ctx, "KV_"+bucket, "$KV."+bucket+"."+key)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, 0, errNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	if bytes.Contains(hdrs, []byte("KV-Operation: DEL")) || bytes.Contains(hdrs, []byte("KV-Operation: PURGE")) {
		return nil, seq, errNotFound
	}
	return data, seq, nil
}

// readLeader is leaderValue retried within the write budget, each try
// bounded by the operation timeout: a read that meets a leader election
// (a lost region) waits for the new leader instead of failing. Not found
// is an answer, not a failure, and is never retried.
func (s *Store) readLeader(ctx context.Context, bucket, key string) ([]byte, uint64, error) {
	ctx, span := kvSpan(ctx, "get", bucket)
	var rev uint64
	data, err := retrying(ctx, s, func(ctx context.Context) ([]byte, error) {
		data, r, err := s.leaderValue(ctx, bucket, key)
		rev = r
		return data, err
	})
	endSpan(span, err, isNotFound)
	return data, rev, err
}

// readLocal is readLeader answered by any replica (a direct get): not
// read-after-write, but it needs no leader. The engine hands each direct
// get to one replica picked at random, the local one no more often than
// the others, and a replica whose server was just cut off (its routes not
// yet given up on, about three seconds) never answers. So it asks
// localReadFanOut times at once and takes the first answer; when none
// has come within localReadAttempt it asks as many again, the delay
// doubling up to a second, with the earlier gets still open: all of
// them meet such a replica once in 27 asks rather than one in three,
// and on a machine so loaded that every answer is slow the first of them
// still counts. It gives up at the write budget.
func (s *Store) readLocal(ctx context.Context, kv jetstream.KeyValue, key string) ([]byte, error) {
	ctx, span := kvSpan(ctx, "get", kv.Bucket())
	data, err := s.hedgedGet(ctx, kv, key)
	endSpan(span, err, isNotFound)
	return data, err
}

func (s *Store) hedgedGet(ctx context.Context, kv jetstream.KeyValue, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteBudget)
	defer cancel() // the gets not answered first are given up
	type answer struct {
		data []byte
		err  error
	}
	answers := make(chan answer)
	ask := func() {
		for range localReadFanOut {
			go func() {
				var a answer
				switch e, err := kv.Get(ctx, key); {
				case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
					a.err = errNotFound
				case err != nil:
					a.err = err
				default:
					a.data = e.Value()
				}
				select {
				case answers <- a:
				case <-ctx.Done():
				}
			}()
		}
	}
	delay := localReadAttempt
	again := time.NewTimer(delay)
	defer again.Stop()
	ask()
	var last error
	for {
		select {
		case a := <-answers:
			if a.err == nil || permanent(a.err) {
				return a.data, a.err
			}
			last = a.err
		case <-again.C:
			ask()
			delay = min(2*delay, time.Second)
			again.Reset(delay)
		case <-ctx.Done():
			return nil, cmp.Or(last, ctx.Err())
		}
	}
}

// localReadAttempt is how long readLocal waits for an answer before it
// asks again: a replica in another region answers within one
// inter-region round trip (under 100 ms here). localReadFanOut is how many
// replicas each ask reaches.
const (
	localReadAttempt = 150 * time.Millisecond
	localReadFanOut  = 3
)

func isNotFound(err error) bool { return errors.Is(err, errNotFound) }

// listKeys lists the keys of kv matching filter, retried like readLeader.
// A listing cut short by its deadline is a failure, never a shorter list.
func (s *Store) listKeys(ctx context.Context, kv jetstream.KeyValue, filter string) (keys []string, err error) {
	ctx, span := kvSpan(ctx, "keys", kv.Bucket())
	defer func() { endSpan(span, err) }()
	return retrying(ctx, s, func(ctx context.Context) ([]string, error) {
		l, err := kv.ListKeysFiltered(ctx, filter)
		if err != nil {
			return nil, err
		}
		var keys []string
		for k := range l.Keys() {
			keys = append(keys, k)
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("list %s %s: %w", kv.Bucket(), filter, err)
		}
		return keys, nil
	})
}

// leaderKeys lists the keys of bucket matching filter as its stream
// leader knows them (a stream info with a subjects filter): every key
// whose write was acknowledged before is there, which a key listing
// (an ordered consumer, placed on any replica) does not promise. A
// deleted key stays listed, and its read answers not found. Retried like
// readLeader.
func (s *Store) leaderKeys(ctx context.Context, bucket, filter string) (keys []string, err error) {
	ctx, span := kvSpan(ctx, "keys", bucket)
	defer func() { endSpan(span, err) }()
	prefix := "$KV." + bucket + "."
	return retrying(ctx, s, func(ctx context.Context) ([]string, error) {
		var keys []string
		for {
			var resp struct {
				apiAnswer
				State struct {
					Subjects map[string]uint64 `json:"subjects"`
				} `json:"state"`
				Total int `json:"total"`
			}
			req := map[string]any{"subjects_filter": prefix + filter, "offset": len(keys)}
			if err := s.askAPI(ctx, "STREAM.INFO.KV_"+bucket, req, &resp); err != nil {
				return nil, fmt.Errorf("stream info: %w", err)
			}
			for subj := range resp.State.Subjects {
				keys = append(keys, strings.TrimPrefix(subj, prefix))
			}
			if len(resp.State.Subjects) == 0 || len(keys) >= resp.Total {
				return keys, nil
			}
		}
	})
}

// pauseBefore waits before another attempt of a contended update: 10 ms
// × 2^attempt, at most a second, or until ctx is done.
func pauseBefore(ctx context.Context, attempt int) {
	d := min(time.Duration(1<<min(attempt, 6))*10*time.Millisecond, time.Second)
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// errSkip tells update that nothing needs writing.
var errSkip = errors.New("no change")

// SetStock sets how many units of sku are available, keeping the holds of
// orders in flight.
func (s *Store) SetStock(ctx context.Context, sku string, available int) error {
	_, _, err := update(ctx, s, kindStock, s.inventory, sku, Version{}, func(st *shop.Stock, _ bool) error {
		st.Available = available
		return nil
	})
	if err != nil {
		return refused("the inventory store did not accept the write", fmt.Errorf("set stock %s: %w", sku, err))
	}
	return nil
}

// SeedInventory stores the initial stock of the seed catalog once per
// deployment, like SeedCatalog.
func (s *Store) SeedInventory(ctx context.Context, stock map[string]int) (int, error) {
	entries := make(map[string][]byte, len(stock))
	for sku, n := range stock {
		b, err := s.encode(kindStock, shop.Stock{Available: n})
		if err != nil {
			return 0, fmt.Errorf("seed stock %s: %w", sku, err)
		}
		entries[sku] = b
	}
	return s.seedOnce(ctx, inventorySeedKey, s.inventory, entries)
}

// Stock reads the current stock of sku from the stream leader.
func (s *Store) Stock(ctx context.Context, sku string) (shop.Stock, error) {
	var st shop.Stock
	data, _, err := s.readLeader(ctx, BucketInventory, sku)
	if err != nil {
		return st, fmt.Errorf("stock %s: %w", sku, err)
	}
	if err := decodeRecord(kindStock, sku, data, &st); err != nil {
		return shop.Stock{}, newerRecord(err)
	}
	return st, nil
}

// ErrOutOfStock is returned by Reserve when a line cannot be filled.
var ErrOutOfStock = errors.New("out of stock")

// Reservation is what one Reserve call found or made of an order's holds:
// by SKU, the token of the reservation that made the order's hold on it.
// MarkReserved records it in the order, and a confirmed order sells only
// those holds (Settle).
type Reservation struct {
	token   string            // this call's: the holds it makes carry it
	holders map[string]string // SKU -> token of the order's hold on it
}

// Made lists, sorted, the SKUs whose hold this reservation made (not found
// there already).
func (r Reservation) Made() []string {
	var made []string
	for sku, t := range r.holders {
		if t == r.token {
			made = append(made, sku)
		}
	}
	slices.Sort(made)
	return made
}

// Reserve holds stock for every line of order id, under a token of its
// own. Each line is one compare-and-set that both decrements the available
// stock and records the order's hold and its token (batched with the other
// changes this store makes to that SKU meanwhile: changeStock), so a crash
// between lines leaves holds that a redelivery finds and continues from,
// never a decrement without an owner. A line the order holds already (a
// redelivery, or another processor of the same message) is found, not
// made again, with the token of the reservation that made it. When a line
// cannot be filled, ErrOutOfStock is returned and every hold stays: another
// processor of the same order may have found those holds and marked the
// order reserved with them, and only the order's fate, written first,
// decides what becomes of them. A rejected order's holds go back with
// Settle; so the stock is all or nothing once the order is settled. The
// Reservation returned holds what was found or made, also with an error.
func (s *Store) Reserve(ctx context.Context, id string, lines []shop.Line) (res Reservation, err error) {
	ctx, span := startSpan(ctx, "reserve stock", trace.SpanKindInternal, attribute.Int(attrLines, len(lines)))
	defer func() { endSpan(span, err, func(err error) bool { return errors.Is(err, ErrOutOfStock) }) }()
	res = Reservation{token: rand.Text(), holders: make(map[string]string, len(lines))}
	for _, l := range lines {
		var holder string
		err := s.changeStock(ctx, l.SKU, reserveLine(id, l, res.token, &holder))
		switch {
		case err == nil:
			res.holders[l.SKU] = res.token
		case errors.Is(err, errSkip):
			res.holders[l.SKU] = holder
		case errors.Is(err, ErrOutOfStock):
			return res, fmt.Errorf("reserve %s: %s: %w", id, l.SKU, ErrOutOfStock)
		default:
			return res, newerRecord(fmt.Errorf("reserve %s: %s: %w", id, l.SKU, err))
		}
	}
	return res, nil
}

// reserveLine is the change that holds line l for order id under token:
// nothing when the order holds it already (errSkip, with the hold's token
// in *found), ErrOutOfStock when it cannot be filled, else the units taken
// from the available stock and held.
func reserveLine(id string, l shop.Line, token string, found *string) func(st *shop.Stock, exists bool) error {
	return func(st *shop.Stock, exists bool) error {
		if _, held := st.Holds[id]; held {
			*found = st.Holders[id]
			return errSkip
		}
		if !exists || st.Available < l.Quantity {
			return ErrOutOfStock
		}
		st.Available -= l.Quantity
		if st.Holds == nil {
			st.Holds = map[string]int{}
		}
		st.Holds[id] = l.Quantity
		if st.Holders == nil {
			st.Holders = map[string]string{}
		}
		st.Holders[id] = token
		pruneHolders(st)
		return nil
	}
}

// pruneHolders drops the token of every hold that is gone: a release that
// predates tokens releases a hold and leaves its token.
func pruneHolders(st *shop.Stock) {
	for id := range st.Holders {
		if _, held := st.Holds[id]; !held {
			delete(st.Holders, id)
		}
	}
}

// Settle releases the holds of order o, which is final: o as stored, ver
// its record as this client last wrote or read it (or the zero Version:
// Settle reads it when it needs it). A rejected order's held units go back
// to the available stock. A confirmed order's stay sold, but only the holds
// its reservation was marked with (MarkReserved): a hold made under its id
// by any other reservation is given back. That is a processor that acted
// on a stale view of the order (its message redelivered while the
// processor that finished it was still at work) and held the stock again
// after the order was settled; without the tokens it could not be told
// from the hold the order sold, and either a sold unit would go back to
// the stock or a unit would be lost. An order confirmed by a release that
// predates tokens sells whatever holds it has. Settling twice is a no-op.
func (s *Store) Settle(ctx context.Context, o shop.Order, ver Version) error {
	switch o.Status {
	case shop.OrderRejected:
		return s.releaseHolds(ctx, o.ID, o.Lines, func(string, string) bool { return false })
	case shop.OrderConfirmed:
	default:
		return fmt.Errorf("settle order %s: it is %s, not final", o.ID, o.Status)
	}
	rec, err := s.orderState(ctx, o, ver)
	if err != nil {
		return fmt.Errorf("settle order %s: %w", o.ID, err)
	}
	return s.releaseHolds(ctx, o.ID, o.Lines, func(sku, holder string) bool {
		return rec.Reservation == nil || rec.Reservation[sku] == holder
	})
}

// releaseHolds removes order id's holds on the SKUs of lines: sold says,
// by SKU and the token of the hold there, whether its units stay sold (a
// confirmed order's holds are only bookkeeping) or go back to the
// available stock. Releasing twice is a no-op.
func (s *Store) releaseHolds(ctx context.Context, id string, lines []shop.Line, sold func(sku, holder string) bool) (err error) {
	ctx, span := startSpan(ctx, "release holds", trace.SpanKindInternal, attribute.Int(attrLines, len(lines)))
	defer func() { endSpan(span, err) }()
	for _, l := range lines {
		err := s.changeStock(ctx, l.SKU, releaseLine(id, func(holder string) bool { return sold(l.SKU, holder) }))
		if err != nil && !errors.Is(err, errSkip) {
			return newerRecord(fmt.Errorf("release %s: %s: %w", id, l.SKU, err))
		}
	}
	return nil
}

// releaseLine is the change that drops order id's hold on a SKU, giving
// its units back to the available stock unless sold, asked the token of
// the hold, says they are sold; nothing (errSkip) when the order holds
// none.
func releaseLine(id string, sold func(holder string) bool) func(st *shop.Stock, exists bool) error {
	return func(st *shop.Stock, _ bool) error {
		q, held := st.Holds[id]
		if !held {
			return errSkip
		}
		if !sold(st.Holders[id]) {
			st.Available += q
		}
		delete(st.Holds, id)
		delete(st.Holders, id)
		pruneHolders(st)
		return nil
	}
}

// IdempotencyRecord remembers what a user's Idempotency-Key made: the id
// of the order (or comment, or rating) the first request got.
type IdempotencyRecord struct {
	ID          string `json:"id"`
	UserKey     string `json:"userKey"`
	RequestHash string `json:"requestHash"`
}

// Remember stores rec under id unless something is there already, and
// returns what is stored: rec itself when it won, the earlier record when
// the key was used before (in any region, within 24 hours).
func (s *Store) Remember(ctx context.Context, id string, rec IdempotencyRecord) (_ IdempotencyRecord, _ bool, err error) {
	ctx, span := kvSpan(ctx, "create", BucketIdempotency)
	defer func() { endSpan(span, err) }()
	b, err := s.encode(kindIdempotency, rec)
	if err != nil {
		return rec, false, fmt.Errorf("remember %s: %w", id, err)
	}
	deadline := time.Now().Add(s.cfg.WriteBudget)
	for attempt := 0; ; attempt++ {
		_, err := retrying(ctx, s, func(ctx context.Context) (uint64, error) { return s.idem.Create(ctx, id, b) })
		if err == nil {
			return rec, true, nil
		}
		if !isExists(err) {
			return rec, false, refused("the order could not be recorded; retry with the same Idempotency-Key", fmt.Errorf("remember %s: %w", id, err))
		}
		// The record exists; reading it may meet the leader election that
		// made the create fail over, so it retries within the write budget.
		data, _, err := s.readLeader(ctx, BucketIdempotency, id)
		if err == nil {
			var prev IdempotencyRecord
			if err := decodeRecord(kindIdempotency, id, data, &prev); err != nil {
				return rec, false, newerRecord(fmt.Errorf("remember: %w", err))
			}
			return prev, false, nil
		}
		// "Exists" from a create whose first attempt's answer was lost in
		// a leader change, then "not found" from the new leader: the first
		// attempt never committed. Create again.
		if !errors.Is(err, errNotFound) || time.Now().After(deadline) || ctx.Err() != nil {
			return rec, false, shop.Unavailable("the order could not be read back; retry with the same Idempotency-Key", fmt.Errorf("remember %s: %w", id, err))
		}
		pauseBefore(ctx, attempt)
	}
}

// Recall returns the record stored under id, if any: read from the stream
// leader or, by a client with an intake stream, from the region's own
// replica (a direct get), which answers while the leader is being elected
// again and misses only a record written in the last moments, whose
// request the queue's duplicate window still catches.
func (s *Store) Recall(ctx context.Context, id string) (IdempotencyRecord, bool, error) {
	var rec IdempotencyRecord
	var data []byte
	var err error
	if s.intake.own != nil {
		data, err = s.readLocal(ctx, s.idem, id)
	} else {
		data, _, err = s.readLeader(ctx, BucketIdempotency, id)
	}
	if errors.Is(err, errNotFound) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, shop.Unavailable("orders cannot be checked right now; retry with the same Idempotency-Key", fmt.Errorf("recall %s: %w", id, err))
	}
	if err := decodeRecord(kindIdempotency, id, data, &rec); err != nil {
		return IdempotencyRecord{}, false, newerRecord(fmt.Errorf("recall: %w", err))
	}
	return rec, true, nil
}

func orderKey(userKey, id string) string { return userKey + "." + id }

// CreateOrder stores a new order record; storing it again is a no-op. It
// returns the record's Version when this call stored it, for the order's
// next SetOrderStatus; the zero Version when it was there already.
func (s *Store) CreateOrder(ctx context.Context, o shop.Order) (Version, error) {
	ver, err := s.create(ctx, kindOrder, s.orders, orderKey(shop.UserKey(o.User), o.ID), o)
	if err != nil {
		return Version{}, refused("the order could not be recorded; retry with the same Idempotency-Key", err)
	}
	return ver, nil
}

// SubmitOrder puts an order that is recorded already on the order stream,
// deduplicated by its id, without the identity of a request (Intake):
// the processor takes it as it is. Acknowledged means the stream has it
// on a quorum of regions.
func (s *Store) SubmitOrder(ctx context.Context, o shop.Order) error {
	b, err := s.encode(kindOrder, o)
	if err != nil {
		return fmt.Errorf("submit order %s: %w", o.ID, err)
	}
	if err := s.publish(ctx, orderSubject(shop.UserKey(o.User), o.ID), o.ID, b); err != nil {
		return refused("the order could not be queued; retry with the same Idempotency-Key", fmt.Errorf("submit order %s: %w", o.ID, err))
	}
	return nil
}

// orderSubject is the subject of order id's message: one subject per
// order, so the order is found on the queue by its id (PendingOrder), and
// a user's orders under one prefix (QueuedRequest).
func orderSubject(userKey, id string) string { return subjectOrder + "." + userKey + "." + id }

// Headers of an order message that carry the request that made it.
const (
	headerIdempotencyID = "Contoso-Idempotency-Id"
	headerRequestHash   = "Contoso-Request-Hash"
)

// Intake is an order as the order stream carries it: the order and the
// request that made it, which the processor records (Remember) before it
// reserves anything.
type Intake struct {
	Order shop.Order
	// IdempotencyID is shop.IdempotencyID of the user and the request's
	// Idempotency-Key; empty for an order queued by SubmitOrder.
	IdempotencyID string
	RequestHash   string
}

// Record is what the processor remembers of the intake's request.
func (in Intake) Record() IdempotencyRecord {
	return IdempotencyRecord{ID: in.Order.ID, UserKey: shop.UserKey(in.Order.User), RequestHash: in.RequestHash}
}

// decodeIntake reads an order message.
func decodeIntake(data []byte, h nats.Header) (Intake, error) {
	var in Intake
	if err := decodeRecord(kindOrder, "", data, &in.Order); err != nil {
		return Intake{}, err
	}
	in.IdempotencyID, in.RequestHash = h.Get(headerIdempotencyID), h.Get(headerRequestHash)
	return in, nil
}

// AcceptOrder queues a new order: the one quorum write that accepts it.
// The message goes to ORDERS, whose duplicate window covers every region,
// or, when ORDERS does not answer within the hedge (its leader is lost
// with its region and the engine elects another, seconds), to the
// region's own intake stream, led from the region (publishOrder). The
// message id is the request's IdempotencyID, so the same request again,
// while the queue's duplicate window (10 minutes) remembers the first,
// stores nothing: AcceptOrder then returns the intake the first request
// queued and fresh false. When the processor has taken that message off
// the queue already, the intake is rebuilt from what the processor
// recorded. fresh is true when in is the order queued, also when a retried
// publish finds its own first attempt.
func (s *Store) AcceptOrder(ctx context.Context, in Intake) (_ Intake, fresh bool, err error) {
	o := in.Order
	b, err := s.encode(kindOrder, o)
	if err != nil {
		return in, false, fmt.Errorf("accept order %s: %w", o.ID, err)
	}
	ack, queue, err := s.publishOrder(ctx, in, b)
	if err != nil {
		return in, false, refused("the order could not be queued; retry with the same Idempotency-Key", fmt.Errorf("accept order %s: %w", o.ID, err))
	}
	if !ack.Duplicate {
		return in, true, nil
	}
	prev, err := s.queuedAt(ctx, queue, ack.Sequence, in.IdempotencyID)
	if err != nil {
		return in, false, err
	}
	return prev, prev.Order.ID == o.ID, nil
}

// queuedAt reads the order message at seq of queue from its leader or, when
// a processor has finished it (a work queue deletes what is
// acknowledged), what the processor recorded of request idemID.
func (s *Store) queuedAt(ctx context.Context, queue jetstream.Stream, seq uint64, idemID string) (Intake, error) {
	m, err := retrying(ctx, s, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		m, err := queue.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, nil
		}
		return m, err
	})
	if err != nil {
		return Intake{}, shop.Unavailable("the order cannot be read back; retry with the same Idempotency-Key", fmt.Errorf("queued order %d: %w", seq, err))
	}
	if m != nil && m.Header.Get(headerIdempotencyID) == idemID {
		in, err := decodeIntake(m.Data, m.Header)
		if err != nil {
			return Intake{}, newerRecord(fmt.Errorf("queued order %d: %w", seq, err))
		}
		return in, nil
	}
	rec, ok, err := s.Recall(ctx, idemID)
	if err != nil {
		return Intake{}, err
	}
	if !ok {
		return Intake{}, shop.Unavailable("the order cannot be read back; retry with the same Idempotency-Key", fmt.Errorf("queued order %d: neither queued nor recorded", seq))
	}
	prev, err := s.Order(ctx, rec.UserKey, rec.ID)
	if err != nil {
		return Intake{}, err
	}
	return Intake{Order: prev, IdempotencyID: idemID, RequestHash: rec.RequestHash}, nil
}

// PendingOrder finds a user's order on the queues, where it waits until a
// processor records it: read from each queue's leader, which sees every
// order acknowledged before (orderQueues says where it looks, and in which
// order).
func (s *Store) PendingOrder(ctx context.Context, userKey, id string) (shop.Order, error) {
	return s.queuedOrder(ctx, userKey, id, func(ctx context.Context, q queueSpot) (*jetstream.RawStreamMsg, error) {
		return q.stream.GetLastMsgForSubject(ctx, q.subject)
	})
}

// queuedOrder is order id of userKey as get finds it on the first of the
// queues (orderQueues) that has it, read from that queue's leader;
// shop.NotFound when none has it, or orderQueues' error when the queues
// may not be all.
func (s *Store) queuedOrder(ctx context.Context, userKey, id string, get func(context.Context, queueSpot) (*jetstream.RawStreamMsg, error)) (shop.Order, error) {
	queues, partial := s.orderQueues(ctx, userKey, id)
	for _, q := range queues {
		m, err := retrying(ctx, s, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
			m, err := get(ctx, q)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return nil, nil
			}
			return m, err
		})
		if err != nil {
			return shop.Order{}, shop.Unavailable("orders cannot be read right now", fmt.Errorf("queued order %s: %w", id, err))
		}
		if m == nil {
			continue
		}
		in, err := decodeIntake(m.Data, m.Header)
		if err != nil {
			return shop.Order{}, newerRecord(fmt.Errorf("queued order %s: %w", id, err))
		}
		return in.Order, nil
	}
	if partial != nil {
		return shop.Order{}, partial
	}
	return shop.Order{}, shop.NotFound("order", id)
}

// maxQueuedScan bounds how many of a user's queued orders QueuedRequest
// reads.
const maxQueuedScan = 100

// QueuedRequest finds, among a user's orders still on the queues, the one
// request idemID made: for a replay that cannot be published again (an
// order from a cart the first request emptied). It reads the user's queued
// messages from each queue's leader, in the order of orderQueues, at most
// maxQueuedScan in all. Not found while the intake streams have never been
// listed is an Unavailable error, not false: the request may be on one.
func (s *Store) QueuedRequest(ctx context.Context, userKey, idemID string) (Intake, bool, error) {
	n := 0
	queues, partial := s.orderQueues(ctx, userKey, ">")
	for _, q := range queues {
		for seq := uint64(1); n < maxQueuedScan; n++ {
			m, err := retrying(ctx, s, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
				m, err := q.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(q.subject))
				if errors.Is(err, jetstream.ErrMsgNotFound) {
					return nil, nil
				}
				return m, err
			})
			if err != nil {
				return Intake{}, false, shop.Unavailable("orders cannot be checked right now; retry with the same Idempotency-Key", fmt.Errorf("queued request: %w", err))
			}
			if m == nil {
				break
			}
			if m.Header.Get(headerIdempotencyID) == idemID {
				in, err := decodeIntake(m.Data, m.Header)
				if err != nil {
					return Intake{}, false, newerRecord(fmt.Errorf("queued request: %w", err))
				}
				return in, true, nil
			}
			seq = m.Sequence + 1
		}
	}
	return Intake{}, false, partial
}

// Order reads a user's order from the stream leader. The record of an
// order dropped as a duplicate (shop.Order.SameAs) reads as the order its
// request made.
func (s *Store) Order(ctx context.Context, userKey, id string) (shop.Order, error) {
	o, err := s.orderRecord(ctx, userKey, id)
	if err != nil || o.SameAs == "" {
		return o, err
	}
	return s.orderRecord(ctx, userKey, o.SameAs)
}

// orderRecord reads the record of a user's order from the stream leader.
func (s *Store) orderRecord(ctx context.Context, userKey, id string) (shop.Order, error) {
	var o shop.Order
	data, _, err := s.readLeader(ctx, BucketOrders, orderKey(userKey, id))
	if errors.Is(err, errNotFound) {
		return o, shop.NotFound("order", id)
	}
	if err != nil {
		return o, shop.Unavailable("orders cannot be read right now", fmt.Errorf("order %s: %w", id, err))
	}
	if err := decodeRecord(kindOrder, id, data, &o); err != nil {
		return shop.Order{}, newerRecord(err)
	}
	return o, nil
}

// FindOrder finds any user's order by id (for admins): a scan of the keys,
// then, for an order no processor has recorded yet, of the queues
// (recordedOrQueued).
func (s *Store) FindOrder(ctx context.Context, id string) (shop.Order, error) {
	return recordedOrQueued(func() (shop.Order, bool, error) {
		keys, err := s.leaderKeys(ctx, BucketOrders, "*."+id)
		if err != nil {
			return shop.Order{}, false, shop.Unavailable("orders cannot be read right now", fmt.Errorf("find order %s: %w", id, err))
		}
		for _, k := range keys {
			userKey, _, _ := strings.Cut(k, ".")
			o, err := s.Order(ctx, userKey, id)
			return o, true, err
		}
		return shop.Order{}, false, nil
	}, func() (shop.Order, error) {
		return s.queuedOrder(ctx, "*", id, func(ctx context.Context, q queueSpot) (*jetstream.RawStreamMsg, error) {
			return q.stream.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(q.subject))
		})
	})
}

// UserOrder reads a user's order as recorded or, before the processor
// recorded it, as queued (recordedOrQueued).
func (s *Store) UserOrder(ctx context.Context, userKey, id string) (shop.Order, error) {
	return recordedOrQueued(func() (shop.Order, bool, error) {
		o, err := s.Order(ctx, userKey, id)
		if shop.KindOf(err) == shop.KindNotFound {
			return o, false, nil
		}
		return o, true, err
	}, func() (shop.Order, error) { return s.PendingOrder(ctx, userKey, id) })
}

// recordedOrQueued is an order as recorded (found, or the failure to read
// the records), else as queued. An order moves from its queue to its
// record: the processor writes the record, then acknowledges the message,
// which leaves the queue. So one that the queues no longer hold was
// recorded after the records were read, and they are read again.
func recordedOrQueued(recorded func() (shop.Order, bool, error), queued func() (shop.Order, error)) (shop.Order, error) {
	if o, found, err := recorded(); found || err != nil {
		return o, err
	}
	o, err := queued()
	if err == nil {
		return o, nil
	}
	if again, found, aerr := recorded(); found && aerr == nil {
		return again, nil
	}
	return o, err
}

// Orders lists one page of a user's orders, newest first: the orders
// whose ids sort below after (from the newest when after is empty), at most
// limit of them (below 1: shop.DefaultPageLimit). next is the after of the
// following page, empty on the last one. Only the user's keys are listed
// in full; only the page's orders are read, a few at a time. An order
// deleted between the listing and the read is left out of its page.
func (s *Store) Orders(ctx context.Context, userKey, after string, limit int) (orders []shop.Order, next string, err error) {
	if limit < 1 {
		limit = shop.DefaultPageLimit
	}
	keys, err := s.leaderKeys(ctx, BucketOrders, userKey+".*")
	if err != nil {
		return nil, "", shop.Unavailable("orders cannot be read right now", fmt.Errorf("list orders: %w", err))
	}
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		if _, id, ok := strings.Cut(k, "."); ok && (after == "" || id < after) {
			ids = append(ids, id)
		}
	}
	// ids are time-ordered: newest first is descending id order.
	slices.SortFunc(ids, func(a, b string) int { return strings.Compare(b, a) })
	if len(ids) > limit {
		ids, next = ids[:limit], ids[limit-1]
	}
	page := make([]shop.Order, len(ids))
	found := make([]bool, len(ids))
	errs := make([]error, len(ids))
	var (
		wg    sync.WaitGroup
		slots = make(chan struct{}, 8)
	)
	for i, id := range ids {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			data, _, err := s.readLeader(ctx, BucketOrders, orderKey(userKey, id))
			switch {
			case errors.Is(err, errNotFound): // deleted between list and read
			case err != nil:
				errs[i] = shop.Unavailable("orders cannot be read right now", fmt.Errorf("list orders: order %s: %w", id, err))
			default:
				if err := decodeRecord(kindOrder, id, data, &page[i]); err != nil {
					errs[i] = newerRecord(fmt.Errorf("list orders: %w", err))
				}
				found[i] = true
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, "", err
		}
	}
	orders = make([]shop.Order, 0, len(ids))
	for i := range page {
		if found[i] && page[i].SameAs == "" { // a duplicate's record is another name, not an order
			orders = append(orders, page[i])
		}
	}
	return orders, next, nil
}

// SetOrderStatus moves an order to status (with reason), unless it is
// already final, or status is rejected and the order is reserved: a
// reserved order holds its stock under its id, and goes on to be
// confirmed; a rejection for want of stock is for an order that holds
// none, made by a processor that failed to reserve it, which may have been
// overtaken by another holding the same message. It returns the order as
// stored and its Version. from is the Version of the order's record that
// this store client wrote last (CreateOrder, or the SetOrderStatus
// before), Unwritten when it knows no record yet (the first status then
// creates it), or the zero Version. An order is marked reserved with
// MarkReserved.
func (s *Store) SetOrderStatus(ctx context.Context, o shop.Order, from Version, status shop.OrderStatus, reason string, now time.Time) (shop.Order, Version, error) {
	if status == shop.OrderReserved {
		return shop.Order{}, Version{}, fmt.Errorf("set order %s reserved: only with its reservation (MarkReserved)", o.ID)
	}
	return s.setStatus(ctx, o, from, status, reason, nil, now)
}

// MarkReserved is SetOrderStatus to reserved, which records res, the
// holds the order is reserved with, in the order: they are what the order
// sells once confirmed (Settle). An order marked reserved before keeps the
// reservation it was marked with.
func (s *Store) MarkReserved(ctx context.Context, o shop.Order, from Version, res Reservation, now time.Time) (shop.Order, Version, error) {
	if len(res.holders) == 0 {
		return shop.Order{}, Version{}, fmt.Errorf("mark order %s reserved: no holds", o.ID)
	}
	return s.setStatus(ctx, o, from, shop.OrderReserved, "", res.holders, now)
}

// orderState is an order's record as the processors keep it: the order,
// and the holds it was marked reserved with, by SKU, the token of each
// (missing on an order reserved by a release that predates them). It is
// never shown to a client.
type orderState struct {
	shop.Order
	Reservation map[string]string `json:"reservation,omitempty"`
}

func (s *Store) setStatus(ctx context.Context, o shop.Order, from Version, status shop.OrderStatus, reason string, holders map[string]string, now time.Time) (shop.Order, Version, error) {
	got, ver, err := update(ctx, s, kindOrder, s.orders, orderKey(shop.UserKey(o.User), o.ID), from, func(cur *orderState, exists bool) error {
		if !exists {
			cur.Order = o
		}
		if cur.Status.Final() || cur.Status == status || (status == shop.OrderRejected && cur.Status == shop.OrderReserved) {
			return errSkip
		}
		cur.Status, cur.Reason, cur.UpdatedAt = status, reason, now
		if status == shop.OrderReserved {
			cur.Reservation = holders
		}
		return nil
	})
	if errors.Is(err, errSkip) {
		return got.Order, ver, nil
	}
	return got.Order, ver, newerRecord(err)
}

// orderState reads order o's record: from ver when it holds it, else from
// the stream leader.
func (s *Store) orderState(ctx context.Context, o shop.Order, ver Version) (orderState, error) {
	var rec orderState
	data := ver.data
	if data == nil {
		var err error
		if data, _, err = s.readLeader(ctx, BucketOrders, orderKey(shop.UserKey(o.User), o.ID)); err != nil {
			return rec, fmt.Errorf("read order %s: %w", o.ID, err)
		}
	}
	if err := decodeRecord(kindOrder, o.ID, data, &rec); err != nil {
		return orderState{}, newerRecord(err)
	}
	if rec.ID != o.ID {
		return orderState{}, fmt.Errorf("order %s: its Version is of order %s", o.ID, rec.ID)
	}
	return rec, nil
}

// Cart reads a user's cart; a missing cart is empty.
func (s *Store) Cart(ctx context.Context, userKey string) (shop.Cart, uint64, error) {
	var c shop.Cart
	data, rev, err := s.readLeader(ctx, BucketCarts, userKey)
	if errors.Is(err, errNotFound) {
		return shop.Cart{Items: []shop.Line{}}, rev, nil
	}
	if err != nil {
		return c, 0, shop.Unavailable("carts cannot be read right now", fmt.Errorf("cart: %w", err))
	}
	if err := decodeRecord(kindCart, userKey, data, &c); err != nil {
		return shop.Cart{}, 0, newerRecord(fmt.Errorf("cart: %w", err))
	}
	return c, rev, nil
}

// UpdateCart applies change to a user's cart with compare-and-set. Every
// write restarts the cart's seven-day expiry.
func (s *Store) UpdateCart(ctx context.Context, userKey string, change func(*shop.Cart) error) (shop.Cart, error) {
	c, _, err := update(ctx, s, kindCart, s.carts, userKey, Version{}, func(c *shop.Cart, _ bool) error { return change(c) })
	if err != nil && shop.KindOf(err) == shop.KindInternal {
		return c, refused("the cart could not be saved", err)
	}
	return c, err
}

// DeleteCart empties a user's cart. With rev, only if it is unchanged since.
func (s *Store) DeleteCart(ctx context.Context, userKey string, rev uint64) error {
	var opts []jetstream.KVDeleteOpt
	if rev > 0 {
		opts = append(opts, jetstream.LastRevision(rev))
	}
	ctx, span := kvSpan(ctx, "delete", BucketCarts)
	err := s.carts.Delete(ctx, userKey, opts...)
	endSpan(span, err, isExists)
	if err != nil && !isExists(err) {
		return refused("the cart could not be emptied", fmt.Errorf("delete cart: %w", err))
	}
	return nil
}
