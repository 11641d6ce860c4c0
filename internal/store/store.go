// Package store keeps the system's replicated state on NATS JetStream: the
// catalog, comments and ratings as key-value buckets, the async write stream
// that the background processor drains, and the probes that prove the store
// answers. It also starts the embedded servers that form the cluster on one
// machine. Every system-of-record asset has Replicas replicas, one per
// region, and a write is acknowledged only once a quorum of regions has it.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso/shoes/internal/shop"
)

// Names of the replicated assets.
const (
	BucketCatalog  = "catalog"
	BucketComments = "comments"
	BucketRatings  = "ratings"
	BucketMeta     = "meta"
	BucketHealth   = "health"
	StreamWrites   = "WRITES"
	ConsumerWrites = "processor"
)

// Subjects of the async write stream.
const (
	subjectComment = "writes.comment."
	subjectRating  = "writes.rating."
	subjectCanary  = "writes.canary."
)

// Config configures a Store.
type Config struct {
	Conn     *nats.Conn   // required; a connection to the region's server
	Replicas int          // replicas of every asset; zero: 3
	Logger   *slog.Logger // nil: discard
	// WriteBudget bounds how long a write retries through a leader
	// election or a lost region; zero: 15 s (a crash-like region loss
	// takes up to about 8 s to elect new leaders, plus noticing it), below
	// the edge's 20 s per attempt, so the edge hears 503 in time to retry
	// elsewhere.
	WriteBudget time.Duration
	// Inject writes the trace context of ctx into the headers of a message
	// put on a stream; Process wraps the handling of a delivered message
	// (a consumer span continuing the producer's trace) and returns the
	// context to handle it in and a function that ends it with the
	// outcome. Nil: no tracing through the streams.
	Inject  func(ctx context.Context, h nats.Header)
	Process func(ctx context.Context, subject string, h nats.Header) (context.Context, func(error))
	// OpTimeout bounds one attempt of one store call; zero: 2 s (an
	// answered call takes milliseconds; a leaderless one is dropped, and
	// the retry finds the new leader sooner).
	OpTimeout time.Duration
}

// Store is the client side of the replicated state. It is safe for
// concurrent use.
type Store struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	log     *slog.Logger
	cfg     Config
	catalog jetstream.KeyValue
	comment jetstream.KeyValue
	rating  jetstream.KeyValue
	meta    jetstream.KeyValue
	health  jetstream.KeyValue
	writes  jetstream.Stream

	inventory jetstream.KeyValue
	orders    jetstream.KeyValue
	idem      jetstream.KeyValue
	carts     jetstream.KeyValue
	orderQ    jetstream.Stream
	reg       jetstream.KeyValue
}

// Open connects to the assets, creating or updating them when needed. It
// retries until ctx is done, because a new cluster refuses replicated assets
// until every peer has joined.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Conn == nil {
		return nil, errors.New("open store: a NATS connection is required")
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 3
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.WriteBudget == 0 {
		cfg.WriteBudget = DefaultWriteBudget
	}
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = 2 * time.Second
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Store{nc: cfg.Conn, js: js, log: cfg.Logger, cfg: cfg}
	delay := 100 * time.Millisecond
	for {
		err := s.ensureAssets(ctx)
		if err == nil {
			return s, nil
		}
		s.log.Info("store assets not ready; retrying", "error", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("open store: %w (last error: %w)", ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}

func (s *Store) ensureAssets(ctx context.Context) error {
	// A request sent while the cluster elects its meta leader can go
	// unanswered: keep attempts short and let Open retry.
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	// Existing assets are looked up, not re-declared: concurrent creates of
	// one asset from several stamps can go unanswered by the meta leader.
	kv := func(name string, ttl time.Duration) (jetstream.KeyValue, error) {
		b, err := s.js.KeyValue(ctx, name)
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, fmt.Errorf("bucket %s: %w", name, err)
		}
		b, err = s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:   name,
			History:  1,
			TTL:      ttl,
			Storage:  jetstream.FileStorage,
			Replicas: s.cfg.Replicas,
		})
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", name, err)
		}
		return b, nil
	}
	var err error
	if s.catalog, err = kv(BucketCatalog, 0); err != nil {
		return err
	}
	if s.comment, err = kv(BucketComments, 0); err != nil {
		return err
	}
	if s.rating, err = kv(BucketRatings, 0); err != nil {
		return err
	}
	if s.meta, err = kv(BucketMeta, 0); err != nil {
		return err
	}
	if s.health, err = kv(BucketHealth, time.Minute); err != nil {
		return err
	}
	if s.inventory, err = kv(BucketInventory, 0); err != nil {
		return err
	}
	if s.orders, err = kv(BucketOrders, 0); err != nil {
		return err
	}
	if s.idem, err = kv(BucketIdempotency, shop.IdempotencyTTL); err != nil {
		return err
	}
	if s.carts, err = kv(BucketCarts, shop.CartTTL); err != nil {
		return err
	}
	if s.reg, err = s.js.KeyValue(ctx, BucketRegistry); err != nil {
		// Expired heartbeats leave delete markers (LimitMarkerTTL), so
		// watchers learn that a stamp died without anyone deleting it.
		s.reg, err = s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:         BucketRegistry,
			Description:    "running stamp instances, kept alive by heartbeats",
			History:        1,
			TTL:            RegistryTTL,
			LimitMarkerTTL: time.Minute,
			Storage:        jetstream.FileStorage,
			Replicas:       s.cfg.Replicas,
		})
		if err != nil {
			return fmt.Errorf("bucket %s: %w", BucketRegistry, err)
		}
	}
	if s.orderQ, err = s.queue(ctx, StreamOrders, "orders waiting for the order processor", []string{"orders.>"},
		orderQueue, "the order processors of every stamp share this consumer"); err != nil {
		return err
	}
	s.writes, err = s.queue(ctx, StreamWrites, "async writes waiting for the background processor", []string{"writes.>"},
		writeQueue, "the background processors of every stamp share this consumer")
	return err
}

// workQueue is a durable consumer of a work-queue stream that every
// stamp's processors share, and the subjects it takes.
type workQueue struct {
	consumer string
	subjects []string
}

var (
	orderQueue = workQueue{ConsumerOrders, []string{subjectOrder}}
	writeQueue = workQueue{ConsumerWrites, []string{subjectComment + ">", subjectRating + ">"}}
)

// queue finds or declares a work-queue stream and the durable consumer
// that every stamp's processor shares.
func (s *Store) queue(ctx context.Context, name, desc string, subjects []string, q workQueue, consumerDesc string) (jetstream.Stream, error) {
	if st, err := s.js.Stream(ctx, name); err == nil {
		if _, err = st.Consumer(ctx, q.consumer); err == nil {
			return st, nil
		}
	}
	st, err := s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: desc,
		Subjects:    subjects,
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    s.cfg.Replicas,
		MaxBytes:    1 << 30,
		MaxAge:      7 * 24 * time.Hour,
		Discard:     jetstream.DiscardNew,
		Duplicates:  10 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	_, err = st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:        q.consumer,
		Description:    consumerDesc,
		FilterSubjects: q.subjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        ackWait,
		MaxDeliver:     -1,
		MaxAckPending:  10_000,
		Replicas:       s.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", q.consumer, err)
	}
	return st, nil
}

// DefaultWriteBudget is how long a write retries by default: long enough
// to ride out the leader elections that follow a crash-like region loss.
const DefaultWriteBudget = 15 * time.Second

// retrying runs op until it succeeds, fails permanently, or the write
// budget is spent. Each attempt gets its own timeout. It is how writes ride
// out a leader election or a lost region.
func retrying[R any](ctx context.Context, s *Store, op func(ctx context.Context) (R, error)) (R, error) {
	policy := retrypolicy.NewBuilder[R]().
		AbortIf(func(_ R, err error) bool { return permanent(err) }).
		WithBackoff(50*time.Millisecond, time.Second).
		WithJitterFactor(0.2).
		WithMaxRetries(-1).
		WithMaxDuration(s.cfg.WriteBudget).
		ReturnLastFailure().
		Build()
	return failsafe.With(policy).WithContext(ctx).Get(func() (R, error) {
		actx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
		defer cancel()
		return op(actx)
	})
}

// permanent reports errors that no retry can fix.
func permanent(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, context.Canceled),
		errors.Is(err, errNotFound),
		errors.Is(err, jetstream.ErrKeyExists),
		errors.Is(err, jetstream.ErrKeyNotFound),
		errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return true
	case errors.As(err, &apiErr):
		// Limits reached, bad requests: the store said no, it is not
		// unreachable. Leaderless clusters answer 503/10008-like codes
		// that are worth retrying.
		return apiErr.Code == 400 || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
	}
	return false
}
