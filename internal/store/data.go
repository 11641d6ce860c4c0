package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/contoso/shoes/internal/shop"
)

const seedMarker = "seed.catalog.v1"

// PutProduct creates or replaces a product. Acknowledged means a quorum of
// regions has it.
func (s *Store) PutProduct(ctx context.Context, p shop.Product) error {
	b, err := s.encode(kindProduct, p)
	if err != nil {
		return fmt.Errorf("put product %s: %w", p.ID, err)
	}
	ctx, span := kvSpan(ctx, "put", BucketCatalog)
	_, err = retrying(ctx, s, func(ctx context.Context) (uint64, error) {
		return s.catalog.Put(ctx, p.ID, b)
	})
	endSpan(span, err)
	if err != nil {
		return refused("the catalog store did not accept the write", fmt.Errorf("put product %s: %w", p.ID, err))
	}
	return nil
}

// SeedCatalog stores products the first time a deployment starts and
// never again, even if an operator later deletes some of them: a marker in
// the meta bucket records that seeding finished. Concurrent seeders are
// safe: each product is created at most once. It reports how many products
// it created.
func (s *Store) SeedCatalog(ctx context.Context, products []shop.Product) (int, error) {
	entries := make(map[string][]byte, len(products))
	for _, p := range products {
		b, err := s.encode(kindProduct, p)
		if err != nil {
			return 0, fmt.Errorf("seed product %s: %w", p.ID, err)
		}
		entries[p.ID] = b
	}
	return s.seedOnce(ctx, seedMarker, s.catalog, entries)
}

// seedOnce creates entries in kv unless marker says it was done before,
// then sets marker. Creates run in parallel: one quorum round trip each
// would make a first start take minutes over slow inter-region links.
func (s *Store) seedOnce(ctx context.Context, marker string, kv jetstream.KeyValue, entries map[string][]byte) (int, error) {
	// Read the marker as writes are made: a deployment still starting
	// answers "no responders" or times out until its meta bucket has a
	// leader.
	_, err := retrying(ctx, s, func(ctx context.Context) (jetstream.KeyValueEntry, error) { return s.meta.Get(ctx, marker) })
	if err == nil {
		return 0, nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, fmt.Errorf("seed %s: %w", kv.Bucket(), err)
	}
	var (
		created atomic.Int64
		wg      sync.WaitGroup
		errs    = make(chan error, 1)
		slots   = make(chan struct{}, 128)
	)
	for key, b := range entries {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			_, err := retrying(ctx, s, func(ctx context.Context) (uint64, error) { return kv.Create(ctx, key, b) })
			switch {
			case err == nil:
				created.Add(1)
			case isExists(err):
			default:
				select {
				case errs <- fmt.Errorf("seed %s/%s: %w", kv.Bucket(), key, err):
				default:
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		return int(created.Load()), err
	default:
	}
	if _, err := retrying(ctx, s, func(ctx context.Context) (uint64, error) {
		return s.meta.Create(ctx, marker, []byte(fmt.Sprint(len(entries))))
	}); err != nil && !isExists(err) {
		return int(created.Load()), fmt.Errorf("seed %s marker: %w", kv.Bucket(), err)
	}
	return int(created.Load()), nil
}

func isExists(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// SubmitComment puts a comment on the async write stream. The comment's ID
// is the message id, so a retried submission is stored once. Acknowledged
// means the stream has it on a quorum of regions; the processor stores it
// later.
func (s *Store) SubmitComment(ctx context.Context, c shop.Comment) error {
	return s.submit(ctx, kindComment, subjectComment+c.ProductID, c.ID, c)
}

// SubmitRating puts a rating on the async write stream; see SubmitComment.
func (s *Store) SubmitRating(ctx context.Context, r shop.Rating) error {
	return s.submit(ctx, kindRating, subjectRating+r.ProductID, r.ID, r)
}

// SubmitCanary puts a canary for region's processor on the async write
// stream: the end-to-end probe of the async path.
func (s *Store) SubmitCanary(ctx context.Context, c Canary) error {
	return s.submit(ctx, kindCanary, subjectCanary+c.Region, c.ID, c)
}

// publish puts data on a stream under subject, deduplicated by the message
// id, retried within the write budget. It is a producer span (a child of
// the span in ctx), whose trace context the message carries in its
// headers, so the consumer's span continues the trace under it.
func (s *Store) publish(ctx context.Context, subject, id string, data []byte) error {
	_, err := s.publishMsg(ctx, &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}, id)
	return err
}

// publishMsg is publish for a message with headers of its own; it returns
// the stream's acknowledgement, which tells a duplicate (a message id the
// stream took within its duplicate window) and the sequence of the
// message stored first.
func (s *Store) publishMsg(ctx context.Context, msg *nats.Msg, id string) (*jetstream.PubAck, error) {
	ctx, span := startSpan(ctx, "publish "+subjectKind(msg.Subject), trace.SpanKindProducer,
		attribute.String(attrMsgSystem, "nats"), attribute.String(attrMsgOperation, "send"),
		attribute.String(attrMsgDest, msg.Subject), attribute.String(attrMsgID, id))
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	if s.cfg.Inject != nil {
		s.cfg.Inject(ctx, msg.Header)
	}
	ack, err := retrying(ctx, s, func(ctx context.Context) (*jetstream.PubAck, error) {
		return s.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id))
	})
	endSpan(span, err)
	return ack, err
}

// subjectKind names a subject without its ids ("writes.comment.x" ->
// "writes.comment"), so span names stay few.
func subjectKind(subject string) string {
	parts := strings.SplitN(subject, ".", 3)
	return strings.Join(parts[:min(len(parts), 2)], ".")
}

func (s *Store) submit(ctx context.Context, k recordKind, subject, id string, v any) error {
	b, err := s.encode(k, v)
	if err != nil {
		return fmt.Errorf("submit %s: %w", subject, err)
	}
	if err := s.publish(ctx, subject, id, b); err != nil {
		return refused("the write could not be queued; retry later", fmt.Errorf("submit %s: %w", subject, err))
	}
	return nil
}

// SaveComment stores a processed comment. Storing the same comment twice is
// a no-op, so redelivered messages take effect once.
func (s *Store) SaveComment(ctx context.Context, c shop.Comment) error {
	_, err := s.create(ctx, kindComment, s.comment, c.ProductID+"."+c.ID, c)
	return err
}

// SaveRating stores a processed rating; see SaveComment.
func (s *Store) SaveRating(ctx context.Context, r shop.Rating) error {
	_, err := s.create(ctx, kindRating, s.rating, r.ProductID+"."+r.ID, r)
	return err
}

// create stores v, a new record of kind k, under key unless the key exists.
// It returns the record's Version when it stored it, the zero Version when
// the key existed.
func (s *Store) create(ctx context.Context, k recordKind, kv jetstream.KeyValue, key string, v any) (Version, error) {
	b, err := s.encode(k, v)
	if err != nil {
		return Version{}, fmt.Errorf("save %s/%s: %w", kv.Bucket(), key, err)
	}
	ctx, span := kvSpan(ctx, "create", kv.Bucket())
	rev, err := retrying(ctx, s, func(ctx context.Context) (uint64, error) { return kv.Create(ctx, key, b) })
	endSpan(span, err, isExists)
	switch {
	case isExists(err):
		return Version{}, nil
	case err != nil:
		return Version{}, fmt.Errorf("save %s/%s: %w", kv.Bucket(), key, err)
	}
	return Version{data: b, rev: rev}, nil
}

// Canary is the message of the end-to-end probe of the async write path.
type Canary struct {
	Region string `json:"region"`
	ID     string `json:"id"`
}

// RecordCanary stores that region's processor handled canary c.
func (s *Store) RecordCanary(ctx context.Context, c Canary) error {
	ctx, span := kvSpan(ctx, "put", BucketHealth)
	_, err := s.health.Put(ctx, "canary."+c.Region, []byte(c.ID))
	endSpan(span, err)
	if err != nil {
		return fmt.Errorf("record canary %s: %w", c.Region, err)
	}
	return nil
}

// watchStallTimeout is how long a watch's initial values may make no
// progress before the watch is abandoned and set up again;
// watchLoadTimeout is the longest a watch may take to load at all.
const (
	watchStallTimeout = 10 * time.Second
	watchLoadTimeout  = 30 * time.Second
)

// errWatchStalled: a watch's initial values stopped arriving.
var errWatchStalled = errors.New("initial values stalled")

// WatchFunc receives every key of a bucket, then every change. value is nil
// for a deleted or purged key. It must not block for long. A record
// written with a newer schema than this release reads never reaches it
// (Watch logs it and skips it); any other value does, for the reader to
// decode.
type WatchFunc func(key string, value []byte)

// Watch streams bucket's current keys and then its changes to fn until ctx
// is done. loaded is called once, when fn has seen every key the bucket
// held when the watch began: the watcher's own end-of-initial-values marker
// is not enough after a restart, when a replica may still be replaying its
// log, so Watch also waits to see the stream leader's last sequence.
//
// A watch whose initial values stop making progress (no newer revision
// for watchStallTimeout before the marker: an ordered consumer left behind
// by a server that restarted under it), or that has not loaded within
// watchLoadTimeout (a consumer on a replica still catching up, which can
// deliver without ever reaching the end), returns an error, for the caller
// to watch again, rather than leaving the reader loading for ever.
func (s *Store) Watch(ctx context.Context, bucket string, fn WatchFunc, loaded func()) error {
	kv, kind, err := s.bucket(bucket)
	if err != nil {
		return err
	}
	lastSeq := s.settledLastSeq(ctx, "KV_"+bucket)
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", bucket, err)
	}
	defer w.Stop()
	var (
		maxRev   uint64
		marker   bool
		fallback <-chan time.Time
		stall    = time.NewTimer(watchStallTimeout)
		load     = time.NewTimer(watchLoadTimeout)
	)
	defer stall.Stop()
	defer load.Stop()
	check := func() {
		if loaded != nil && marker && maxRev >= lastSeq {
			loaded()
			loaded = nil
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-stall.C:
			if !marker {
				return fmt.Errorf("watch %s: %w: nothing new for %s after revision %d", bucket, errWatchStalled, watchStallTimeout, maxRev)
			}
		case <-load.C:
			if loaded != nil {
				return fmt.Errorf("watch %s: %w: not loaded after %s (marker %t, revision %d of %d)", bucket, errWatchStalled, watchLoadTimeout, marker, maxRev, lastSeq)
			}
		case <-fallback:
			if loaded != nil {
				s.log.Warn("watch: the leader's last sequence never arrived; serving what arrived", "bucket", bucket, "last_seq", lastSeq, "seen", maxRev)
				loaded()
				loaded = nil
			}
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("watch %s: closed", bucket)
			}
			if !marker && e != nil && e.Revision() > maxRev {
				stall.Reset(watchStallTimeout)
			}
			if e == nil {
				marker = true
				fallback = time.After(10 * time.Second)
				check()
				continue
			}
			maxRev = max(maxRev, e.Revision())
			if e.Operation() == jetstream.KeyValuePut {
				if err := checkSchema(kind, e.Key(), e.Value()); err != nil {
					// Refused, not applied: the reader keeps what it had.
					s.log.Warn("watch: skipping a record this release cannot read", "bucket", bucket, "key", e.Key(), "error", err)
				} else {
					fn(e.Key(), e.Value())
				}
			} else {
				fn(e.Key(), nil)
			}
			check()
		}
	}
}

// settledLastSeq waits, for at most ten seconds, until stream has a leader
// and every reachable replica is current, and returns the leader's last
// sequence.
// Zero means unknown: the watch then trusts its own marker.
func (s *Store) settledLastSeq(ctx context.Context, stream string) uint64 {
	deadline := time.Now().Add(10 * time.Second)
	var last *jetstream.ClusterInfo
	for {
		ictx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
		st, err := s.js.Stream(ictx, stream)
		cancel()
		if err == nil {
			info := st.CachedInfo()
			if replicasSettled(info.Cluster) {
				return info.State.LastSeq
			}
			last = info.Cluster
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if ctx.Err() == nil {
				s.log.Warn("watch: the stream's replicas never settled; trusting the watch's own end marker", "stream", stream, "cluster", describeCluster(last), "error", err)
			}
			return 0
		}
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// describeCluster is a stream's leader and replicas, for a log line.
func describeCluster(ci *jetstream.ClusterInfo) string {
	if ci == nil {
		return "unknown"
	}
	out := "leader " + ci.Leader
	for _, r := range ci.Replicas {
		out += fmt.Sprintf("; %s current=%t offline=%t active=%s lag=%d", r.Name, r.Current, r.Offline, r.Active, r.Lag)
	}
	return out
}

// peerLostAfter is how long a replica unheard from by its leader counts
// as lost rather than catching up: the leader hears a live follower at
// least every second (its heartbeats' answers).
const peerLostAfter = 3 * time.Second

// replicasSettled reports whether a stream's replicas are as current as
// they will get: it has a leader (or is not clustered) and every replica
// is current, offline, or lost: unheard from for peerLostAfter, or never
// heard from by this leader (Active zero: a server that died with its
// region before the leader was elected; the engine calls it offline only
// much later). A replica catching up, which the leader hears, keeps it
// unsettled; a lost one serves nobody, so waiting for it would only delay
// whoever watches (a stamp started during a region outage waited out the
// whole bound). The watch still waits for the leader's last sequence, so
// a replica heard a moment late costs nothing.
func replicasSettled(ci *jetstream.ClusterInfo) bool {
	if ci == nil {
		return true
	}
	if ci.Leader == "" {
		return false
	}
	for _, r := range ci.Replicas {
		heard := r.Active > 0 && r.Active < peerLostAfter
		if !r.Current && !r.Offline && heard {
			return false
		}
	}
	return true
}

// bucket returns the watchable bucket called name and the kind of record
// it holds.
func (s *Store) bucket(name string) (jetstream.KeyValue, recordKind, error) {
	switch name {
	case BucketCatalog:
		return s.catalog, kindProduct, nil
	case BucketComments:
		return s.comment, kindComment, nil
	case BucketRatings:
		return s.rating, kindRating, nil
	case BucketInventory:
		return s.inventory, kindStock, nil
	}
	return nil, recordKind{}, fmt.Errorf("watch: unknown bucket %q", name)
}
