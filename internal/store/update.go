package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// change is one caller's change to a record, applied by update or, batched
// with other callers' changes to the same record, by updateAll.
type change[T any] struct {
	// ctx is the caller's: a change whose caller has given up is not
	// applied (it gets ctx's error).
	ctx context.Context
	// fn changes v (the zero value when the key is missing). It must leave
	// v as it found it when it returns an error; errSkip means "nothing to
	// change", any other error is the change's answer.
	fn func(v *T, exists bool) error
}

// update applies fn to the record of kind k under key with
// compare-and-set, retrying on conflicts until the write budget runs out,
// and returns the record and its Version as written (or, when fn changed
// nothing, as read). from, when known, is taken for the record on the
// first attempt instead of reading it.
// fn sees the zero value when the key is missing; returning errSkip
// leaves it as is. A record of a newer schema is refused (*SchemaError),
// never changed; what fn does not touch is written back as it was read,
// members this release does not know included (encodeOver). The whole loop
// is one span, with how many attempts it took and an event per revision
// conflict and per retried store failure.
func update[T any](ctx context.Context, s *Store, k recordKind, kv jetstream.KeyValue, key string, from Version, fn func(v *T, exists bool) error) (T, Version, error) {
	v, ver, errs, err := updateAll(ctx, s, k, kv, key, from, []change[T]{{ctx: ctx, fn: fn}})
	if err != nil {
		return v, Version{}, err
	}
	return v, ver, errs[0]
}

// Version is a record as this store client last wrote or read it: its
// bytes and their revision. Handed to the next change of the same record,
// it stands in for that change's first read, which under load costs as
// much as the write: when nobody has written the record since, the
// compare-and-set succeeds on it; when someone has, the revision no longer
// matches, the engine refuses the write as a conflict, and the change reads
// the record and goes on as it always does. So a Version is a hint, never a
// risk: no change is applied to anything but the record as it is. The zero
// Version knows nothing, and the change reads first.
type Version struct {
	data   []byte
	rev    uint64
	absent bool // Unwritten
}

// Unwritten is the Version of a record that this store client expects
// nobody to have written yet: the first change creates it without reading
// it first. A record that exists after all makes that create a conflict,
// and the change reads it and goes on as from any stale Version.
func Unwritten() Version { return Version{absent: true} }

// Known reports whether v stands for the record, as written or as missing
// (not the zero Version).
func (v Version) Known() bool { return v.rev != 0 || v.absent }

// updateAll applies every change, in order, to the record of kind k under
// key and writes the result with one compare-and-set, as update does for
// one. A conflict (another writer came first) reads the record again and
// applies every change again, each to what the one before it left; so each
// change sees the record as it is, and one that fails (out of stock, say)
// changes nothing while the others go ahead. errs holds each change's
// answer once the write (if any change made one) is acknowledged; err is
// a failure of the store or of the record itself, and then no change was
// written. from, when known, stands for the record on the first attempt
// (see Version); ver is the record as written, or as read when no change
// made a write. ctx carries the span and bounds the whole; each change's own
// context only decides whether it is still wanted.
func updateAll[T any](ctx context.Context, s *Store, k recordKind, kv jetstream.KeyValue, key string, from Version, changes []change[T]) (_ T, ver Version, errs []error, err error) {
	parent := trace.SpanContextFromContext(ctx)
	ctx, span := kvSpan(ctx, "update", kv.Bucket())
	for _, c := range changes { // the other batched callers' traces
		if sc := trace.SpanContextFromContext(c.ctx); sc.IsValid() && !sc.Equal(parent) {
			span.AddLink(trace.Link{SpanContext: sc})
		}
	}
	attempts, conflicts := 0, 0
	defer func() {
		span.SetAttributes(attribute.Int(attrCASAttempts, attempts), attribute.Int(attrCASConflicts, conflicts), attribute.Int(attrCASChanges, len(changes)))
		spanErr := err
		if err == nil && len(errs) == 1 { // one caller's span: its change's answer
			spanErr = errs[0]
		}
		endSpan(span, spanErr, func(err error) bool { return errors.Is(err, errSkip) || errors.Is(err, ErrOutOfStock) })
	}()
	errs = make([]error, len(changes))
	deadline := time.Now().Add(s.cfg.WriteBudget)
	for attempt := 0; ; attempt++ {
		attempts = attempt + 1
		var v T
		data, rev, err := from.data, from.rev, error(nil)
		if from.absent {
			err = errNotFound
		}
		if attempt > 0 || !from.Known() {
			// A leaderless asset (an election after a lost region) drops
			// the request: each attempt gets its own deadline and the loop
			// retries.
			rctx, cancelRead := context.WithTimeout(ctx, s.cfg.OpTimeout)
			data, rev, err = s.leaderValue(rctx, kv.Bucket(), key)
			cancelRead()
		}
		exists := err == nil
		var stored, read members
		switch {
		case exists:
			if stored, err = decodeMembers(k, key, data, &v); err != nil {
				return v, Version{}, nil, err
			}
			if read, err = membersOf(v); err != nil {
				return v, Version{}, nil, fmt.Errorf("encode %s %s: %w", k.name, key, err)
			}
		case errors.Is(err, errNotFound):
		default:
			if time.Now().After(deadline) || ctx.Err() != nil {
				return v, Version{}, nil, fmt.Errorf("read %s/%s: %w", kv.Bucket(), key, err)
			}
			span.AddEvent(eventStoreRetried, trace.WithAttributes(attribute.String("error", err.Error())))
			pauseBefore(ctx, attempt)
			continue
		}
		changed := false
		for i, c := range changes {
			if errs[i] = c.ctx.Err(); errs[i] != nil {
				continue
			}
			if errs[i] = c.fn(&v, exists); errs[i] == nil {
				changed, exists = true, true
			}
		}
		if !changed {
			if !exists { // missing, and left so
				return v, Version{}, errs, nil
			}
			return v, Version{data: data, rev: rev}, errs, nil
		}
		b, err := s.encodeOver(k, v, stored, read)
		if err != nil {
			return v, Version{}, nil, fmt.Errorf("%s: %w", key, err)
		}
		actx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
		var wrote uint64
		if k == kindStock && s.cfg.UnsafeBlindStockWrites {
			wrote, err = kv.Put(actx, key, b) // no revision check: see Config
		} else if rev == 0 {
			wrote, err = kv.Create(actx, key, b)
		} else {
			wrote, err = kv.Update(actx, key, b, rev)
		}
		cancel()
		if err == nil {
			return v, Version{data: b, rev: wrote}, errs, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil || full(err) || tooLarge(err) {
			return v, Version{}, nil, fmt.Errorf("update %s/%s: %w", kv.Bucket(), key, err)
		}
		if isExists(err) {
			conflicts++
			span.AddEvent(eventCASConflict)
		} else {
			span.AddEvent(eventStoreRetried, trace.WithAttributes(attribute.String("error", err.Error())))
			pauseBefore(ctx, attempt) // the store is struggling, not contended
		}
	}
}
