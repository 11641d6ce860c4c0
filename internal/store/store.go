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
	"slices"
	"sync"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso/shoes/internal/backoff"
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
	// FindOnly makes Open find the assets and never declare one: a
	// missing asset is an error Open retries until the deployment's
	// set-up step or a stamp declares it. For readers (the operations
	// plane), whose permissions would refuse the declaration anyway.
	FindOnly bool
	// Region is the client's data region: its orders go to the region's
	// intake stream (IntakeStream) when there is one, and KeepIntakeLeader
	// keeps that stream led from the region. Empty: orders go to ORDERS.
	Region string
	// Regions are the deployment's data regions: Provision declares an
	// intake stream for each.
	Regions []string
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
	// UnsafeBlindStockWrites replaces the inventory's compare-and-set with
	// a blind write from what this store client last wrote or read of the
	// SKU, never read again: the lost update of every cache written back
	// without a revision check. Once two stamps change one SKU, each
	// writes over the other's changes (oversell, units that vanish or
	// appear) every time, not only when two writes happen to race, so the
	// experiment that must catch it has something to catch on every run.
	// A broken guarantee on purpose, only to prove that the experiments
	// catch it; false (the zero value) is the only setting for a system of
	// record.
	UnsafeBlindStockWrites bool
}

// Store is the client side of the replicated state. It is safe for
// concurrent use.
type Store struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	log     *slog.Logger
	cfg     Config
	extra   members // added to every record written (a test's newer release); nil: none
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
	releases  jetstream.KeyValue

	stock  stockLanes // one writer per SKU for Reserve and Settle
	intake intakes    // the region's intake stream and every region's
}

// Open connects to the assets. It looks each one up and creates only the
// missing ones, with their declared configuration (Assets): an asset that
// exists keeps the configuration it has, because concurrent re-declarations
// of one asset from several stamps can go unanswered by the meta leader.
// Provision brings existing assets to their declared configuration. Open
// retries until ctx is done, because a new cluster refuses replicated
// assets until every peer has joined.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg, js, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Store{nc: cfg.Conn, js: js, log: cfg.Logger, cfg: cfg}
	if err := s.untilDone(ctx, false); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return s, nil
}

// Provision creates every asset that is missing and updates every one
// that exists to its declared configuration (Assets): limits, TTLs, value
// sizes, discard policy, the work queues' consumers, and cfg.Replicas
// replicas. It is meant for an
// administrator's connection, once per deployment or release, before stamps
// start; stamps only Open. It keeps what the assets hold: with discard new,
// a limit below what an asset already holds refuses new writes to it, it
// never drops stored data. It retries until ctx is done, like Open, and
// returns the store it provisioned, open on cfg.Conn as Open would return
// it.
func Provision(ctx context.Context, cfg Config) (*Store, error) {
	cfg, js, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("provision store: %w", err)
	}
	s := &Store{nc: cfg.Conn, js: js, log: cfg.Logger, cfg: cfg}
	if err := s.untilDone(ctx, true); err != nil {
		return nil, fmt.Errorf("provision store: %w", err)
	}
	return s, nil
}

func (cfg Config) withDefaults() (Config, jetstream.JetStream, error) {
	if cfg.Conn == nil {
		return cfg, nil, errors.New("a NATS connection is required")
	}
	regions := slices.Clone(cfg.Regions)
	if cfg.Region != "" {
		regions = append(regions, cfg.Region)
	}
	for _, r := range regions {
		if err := validRegion(r); err != nil {
			return cfg, nil, err
		}
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
	return cfg, js, err
}

// untilDone opens every asset (declaring the missing ones, and with
// update bringing the others to their declared configuration and
// declaring the regions' intake streams), then finds the client's intake
// stream, in passes until one succeeds or ctx is done, backing off from
// 100 ms to 2 s between passes.
func (s *Store) untilDone(ctx context.Context, update bool) error {
	pass := 0
	return notReady.Retry(ctx, func(ctx context.Context) error {
		pass++
		if err := s.eachAsset(ctx, update, assetTimeout(pass)); err != nil {
			return err
		}
		actx, cancel := context.WithTimeout(ctx, assetTimeout(pass))
		defer cancel()
		return s.openIntake(actx)
	}, func(err error, wait time.Duration) {
		s.log.Info("store assets not ready; retrying", "error", err, "retry_in", wait)
	})
}

// notReady is how the store waits for what is not there yet: its assets,
// the registry, a bucket.
var notReady = backoff.Policy{First: 100 * time.Millisecond, Max: 2 * time.Second}

// AssetKind tells a key-value bucket from a work-queue stream.
type AssetKind string

const (
	AssetBucket AssetKind = "kv"         // a key-value bucket
	AssetQueue  AssetKind = "work-queue" // a work-queue stream and the durable consumer every stamp shares
)

// Sizes, for the limits below.
const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30
)

// Asset declares one replicated asset: what it holds and the limits that
// keep a flood of writes from filling a store server's disk. Every server
// with a replica holds up to MaxBytes of it. Every asset discards new
// writes when full: the write is refused and what is stored stays, so an
// acknowledged write is never pushed out.
type Asset struct {
	Name        string
	Kind        AssetKind
	Description string
	// TTL is how long a bucket's key lives after its last write; zero:
	// for ever. Buckets only.
	TTL time.Duration
	// History is how many revisions of a key a bucket keeps. Buckets only.
	History uint8
	// MaxBytes bounds what the asset holds on each server.
	MaxBytes int64
	// MaxAge is how long a queue keeps a message that no processor has
	// finished; zero: for ever. Queues only.
	MaxAge time.Duration
	// MaxValueSize bounds one value of a bucket, or one message of a queue
	// with its headers.
	MaxValueSize int32
	// Discard is what a full asset does with a write: always DiscardNew.
	Discard jetstream.DiscardPolicy
	// Subjects a queue takes, its duplicate window (a message id seen in
	// it is stored once), and the consumer every stamp's processors share.
	Subjects   []string
	Duplicates time.Duration
	queue      workQueue
	// markerTTL keeps a delete marker when a key expires, so watchers
	// learn of it (the registry).
	markerTTL time.Duration
}

// assets is the one declaration of every replicated asset. docs/operations.md
// ("Store limits") explains each size; TestDocsListTheDeclaredLimits keeps
// the two in agreement.
var assets = []Asset{
	{Name: BucketCatalog, Kind: AssetBucket, Description: "the product catalog, by product id",
		History: 1, MaxBytes: 64 * mib, MaxValueSize: 64 * kib, Discard: jetstream.DiscardNew},
	{Name: BucketComments, Kind: AssetBucket, Description: "processed comments, by product and comment id",
		History: 1, MaxBytes: 2 * gib, MaxValueSize: 32 * kib, Discard: jetstream.DiscardNew},
	{Name: BucketRatings, Kind: AssetBucket, Description: "processed ratings, by product and rating id",
		History: 1, MaxBytes: 512 * mib, MaxValueSize: 4 * kib, Discard: jetstream.DiscardNew},
	{Name: BucketMeta, Kind: AssetBucket, Description: "markers of one-time work, such as seeding",
		History: 1, MaxBytes: 1 * mib, MaxValueSize: 1 * kib, Discard: jetstream.DiscardNew},
	{Name: BucketHealth, Kind: AssetBucket, Description: "probe writes and canary receipts, by region",
		TTL: time.Minute, History: 1, MaxBytes: 16 * mib, MaxValueSize: 1 * kib, Discard: jetstream.DiscardNew},
	{Name: BucketInventory, Kind: AssetBucket, Description: "stock and the holds of orders in flight, by SKU",
		History: 1, MaxBytes: 256 * mib, MaxValueSize: 512 * kib, Discard: jetstream.DiscardNew},
	{Name: BucketOrders, Kind: AssetBucket, Description: "order records, by user key and order id",
		History: 1, MaxBytes: 2 * gib, MaxValueSize: 16 * kib, Discard: jetstream.DiscardNew},
	{Name: BucketIdempotency, Kind: AssetBucket, Description: "what each user's Idempotency-Key made",
		TTL: shop.IdempotencyTTL, History: 1, MaxBytes: 1 * gib, MaxValueSize: 1 * kib, Discard: jetstream.DiscardNew},
	{Name: BucketCarts, Kind: AssetBucket, Description: "carts, by user key",
		TTL: shop.CartTTL, History: 1, MaxBytes: 512 * mib, MaxValueSize: 16 * kib, Discard: jetstream.DiscardNew},
	{Name: BucketRegistry, Kind: AssetBucket, Description: "running stamp instances, kept alive by heartbeats",
		TTL: RegistryTTL, History: 1, MaxBytes: 16 * mib, MaxValueSize: 4 * kib, Discard: jetstream.DiscardNew,
		markerTTL: time.Minute},
	{Name: BucketReleases, Kind: AssetBucket, Description: "release records and the traffic table every POP follows",
		History: 1, MaxBytes: 16 * mib, MaxValueSize: 64 * kib, Discard: jetstream.DiscardNew},
	{Name: StreamOrders, Kind: AssetQueue, Description: "orders waiting for the order processor",
		MaxBytes: 1 * gib, MaxAge: 7 * 24 * time.Hour, MaxValueSize: 64 * kib, Discard: jetstream.DiscardNew,
		Subjects: []string{"orders.>"}, Duplicates: 10 * time.Minute, queue: orderQueue},
	{Name: StreamWrites, Kind: AssetQueue, Description: "async writes waiting for the background processor",
		MaxBytes: 1 * gib, MaxAge: 7 * 24 * time.Hour, MaxValueSize: 64 * kib, Discard: jetstream.DiscardNew,
		Subjects: []string{"writes.>"}, Duplicates: 10 * time.Minute, queue: writeQueue},
}

// Assets returns the declaration of every replicated asset, in the order
// Open and Provision handle them.
func Assets() []Asset {
	out := slices.Clone(assets)
	for i := range out {
		out[i].Subjects = slices.Clone(out[i].Subjects)
		out[i].queue.subjects = slices.Clone(out[i].queue.subjects)
	}
	return out
}

func (a Asset) bucketConfig(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:         a.Name,
		Description:    a.Description,
		History:        a.History,
		TTL:            a.TTL,
		MaxBytes:       a.MaxBytes,
		MaxValueSize:   a.MaxValueSize,
		LimitMarkerTTL: a.markerTTL,
		Storage:        jetstream.FileStorage,
		Replicas:       replicas,
	}
}

func (a Asset) streamConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        a.Name,
		Description: a.Description,
		Subjects:    a.Subjects,
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		MaxBytes:    a.MaxBytes,
		MaxAge:      a.MaxAge,
		MaxMsgSize:  a.MaxValueSize,
		Discard:     a.Discard,
		Duplicates:  a.Duplicates,
	}
}

func (a Asset) consumerConfig(replicas int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        a.queue.consumer,
		Description:    a.queue.description,
		FilterSubjects: a.queue.subjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        ackWait,
		MaxDeliver:     -1,
		MaxAckPending:  10_000,
		Replicas:       replicas,
	}
}

// handles are the Store's fields that hold each asset.
func (s *Store) handles() (map[string]*jetstream.KeyValue, map[string]*jetstream.Stream) {
	return map[string]*jetstream.KeyValue{
			BucketCatalog: &s.catalog, BucketComments: &s.comment, BucketRatings: &s.rating,
			BucketMeta: &s.meta, BucketHealth: &s.health, BucketInventory: &s.inventory,
			BucketOrders: &s.orders, BucketIdempotency: &s.idem, BucketCarts: &s.carts,
			BucketRegistry: &s.reg, BucketReleases: &s.releases,
		}, map[string]*jetstream.Stream{
			StreamOrders: &s.orderQ, StreamWrites: &s.writes,
		}
}

// assetTimeout bounds the work on one asset in pass n (from 1): 1 s, 2 s,
// 4 s, then 5 s. A request sent while the cluster elects its meta leader,
// or the asset's leader, goes unanswered: the first passes stay short so
// that it is sent again soon after the election (a restart elects every
// group again, 4 to 9 s after the servers start, and a 5 s wait for a
// request lost just before cost a restart as much again), and the later
// ones are long enough for a slow cluster (a loaded machine, TLS, fsync
// on every write). The bound is per asset, not per pass, so every pass
// makes progress: what a pass finished, the next finds done.
func assetTimeout(pass int) time.Duration {
	return min(time.Second<<min(max(pass-1, 0), 3), 5*time.Second)
}

// eachAsset opens (or declares) every asset at once: each new stream
// elects its own leader, and one after another those elections made a
// first start take seconds. Every handle is its own variable, so the
// goroutines share nothing but the error list.
func (s *Store) eachAsset(ctx context.Context, update bool, timeout time.Duration) error {
	buckets, streams := s.handles()
	declared := assets
	if update {
		// Provision declares the regions' intake streams with the rest;
		// each client finds its own afterwards (openIntake).
		declared = slices.Clone(assets)
		for _, region := range s.cfg.Regions {
			a := IntakeAsset(region)
			declared = append(declared, a)
			streams[a.Name] = new(jetstream.Stream)
		}
	}
	errs := make([]error, len(declared))
	var wg sync.WaitGroup
	for i, a := range declared {
		wg.Go(func() {
			actx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			switch a.Kind {
			case AssetBucket:
				h := buckets[a.Name]
				if h == nil {
					errs[i] = fmt.Errorf("bucket %s: no handle for it", a.Name)
					return
				}
				*h, errs[i] = s.openBucket(actx, a, update)
			case AssetQueue:
				h := streams[a.Name]
				if h == nil {
					errs[i] = fmt.Errorf("stream %s: no handle for it", a.Name)
					return
				}
				*h, errs[i] = s.openQueue(actx, a, update)
			default:
				errs[i] = fmt.Errorf("asset %s: unknown kind %q", a.Name, a.Kind)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// openBucket finds a's bucket, or declares it when it is missing or update is
// set.
func (s *Store) openBucket(ctx context.Context, a Asset, update bool) (jetstream.KeyValue, error) {
	want := a.bucketConfig(s.cfg.Replicas)
	b, err := s.js.KeyValue(ctx, a.Name)
	if err == nil && !update {
		return b, nil
	}
	if err == nil {
		// Declared already as declared: nothing to change (a restart, or
		// an earlier pass that finished this asset).
		if st, serr := b.Status(ctx); serr == nil {
			if kvs, ok := st.(*jetstream.KeyValueBucketStatus); ok && bucketMatches(kvs.Config(), want) {
				return b, nil
			}
		}
	} else if !errors.Is(err, jetstream.ErrBucketNotFound) || s.cfg.FindOnly {
		return nil, fmt.Errorf("bucket %s: %w", a.Name, err)
	}
	b, err = s.js.CreateOrUpdateKeyValue(ctx, want)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", a.Name, err)
	}
	return b, nil
}

// workQueue is a durable consumer of a work-queue stream that every
// stamp's processors share, and the subjects it takes.
type workQueue struct {
	consumer    string
	description string
	subjects    []string
}

// The order queue takes orders.new.<user key>.<order id> and, from
// releases before one subject per order, orders.new.
var (
	orderQueue = workQueue{ConsumerOrders, "the order processors of every stamp share this consumer", []string{subjectOrder, subjectOrder + ".>"}}
	writeQueue = workQueue{ConsumerWrites, "the background processors of every stamp share this consumer", []string{subjectComment + ">", subjectRating + ">"}}
)

// openQueue finds a's work-queue stream and the durable consumer that every
// stamp's processor shares, or declares both when either is missing or
// update is set.
func (s *Store) openQueue(ctx context.Context, a Asset, update bool) (jetstream.Stream, error) {
	wantStream, wantConsumer := a.streamConfig(s.cfg.Replicas), a.consumerConfig(s.cfg.Replicas)
	st, err := s.js.Stream(ctx, a.Name)
	if err != nil && s.cfg.FindOnly {
		return nil, fmt.Errorf("stream %s: %w", a.Name, err)
	}
	if err != nil || (update && !streamMatches(st.CachedInfo().Config, wantStream)) {
		if st, err = s.js.CreateOrUpdateStream(ctx, wantStream); err != nil {
			return nil, fmt.Errorf("stream %s: %w", a.Name, err)
		}
	}
	c, err := st.Consumer(ctx, a.queue.consumer)
	if err == nil && (!update || consumerMatches(c.CachedInfo().Config, wantConsumer)) {
		return st, nil
	}
	if s.cfg.FindOnly {
		return nil, fmt.Errorf("consumer %s: %w", a.queue.consumer, err)
	}
	if _, err = st.CreateOrUpdateConsumer(ctx, wantConsumer); err != nil {
		return nil, fmt.Errorf("consumer %s: %w", a.queue.consumer, err)
	}
	return st, nil
}

// bucketMatches reports whether a bucket's configuration has every
// setting its declaration makes.
func bucketMatches(got, want jetstream.KeyValueConfig) bool {
	return got.Description == want.Description && got.History == want.History && got.TTL == want.TTL &&
		got.MaxBytes == want.MaxBytes && got.MaxValueSize == want.MaxValueSize &&
		got.LimitMarkerTTL == want.LimitMarkerTTL && got.Replicas == want.Replicas && got.Storage == want.Storage
}

// streamMatches is bucketMatches for a work-queue stream.
func streamMatches(got, want jetstream.StreamConfig) bool {
	return got.Description == want.Description && slices.Equal(got.Subjects, want.Subjects) &&
		got.Retention == want.Retention && got.Storage == want.Storage && got.Replicas == want.Replicas &&
		got.MaxBytes == want.MaxBytes && got.MaxAge == want.MaxAge && got.MaxMsgSize == want.MaxMsgSize &&
		got.Discard == want.Discard && got.Duplicates == want.Duplicates
}

// consumerMatches is bucketMatches for a work queue's shared consumer.
func consumerMatches(got, want jetstream.ConsumerConfig) bool {
	return got.Description == want.Description && slices.Equal(got.FilterSubjects, want.FilterSubjects) &&
		got.AckPolicy == want.AckPolicy && got.AckWait == want.AckWait && got.MaxDeliver == want.MaxDeliver &&
		got.MaxAckPending == want.MaxAckPending && got.Replicas == want.Replicas
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
	case full(err):
		return true
	case errors.As(err, &apiErr):
		// Limits reached, bad requests: the store said no, it is not
		// unreachable. Leaderless clusters answer 503/10008-like codes
		// that are worth retrying.
		return apiErr.Code == 400 || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
	}
	return false
}

// errCodeStoreFailed is the engine's code for a write it could not store;
// its description says why (JSStreamStoreFailedF in nats-server).
const errCodeStoreFailed jetstream.ErrorCode = 10077

// full reports a write refused because its asset is at a declared limit
// (every asset discards new writes when full). Nothing was stored, and
// retrying soon cannot help.
func full(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != errCodeStoreFailed {
		return false
	}
	switch apiErr.Description {
	case "maximum bytes exceeded", "maximum messages exceeded", "maximum messages per subject exceeded":
		return true
	}
	return false
}

// tooLarge reports a value or message refused for being larger than its
// asset's MaxValueSize.
func tooLarge(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum
}

// refused is the error a client sees for a write the store did not take:
// a full asset or a value over the limit says so; anything else is
// unavailable with detail. err is kept for the log.
func refused(detail string, err error) *shop.Error {
	switch {
	case errors.Is(err, ErrSchema):
		return shop.Unavailable(newerDetail, err)
	case full(err):
		return shop.Unavailable("the store is full: "+detail, err)
	case tooLarge(err):
		return &shop.Error{Kind: shop.KindTooLarge, Detail: "the value is larger than the store takes: " + detail, Err: err}
	}
	return shop.Unavailable(detail, err)
}
