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
// compare-and-set, retrying on conflicts until the write budget runs out.
// fn sees the zero value when the key is missing; returning errSkip
// leaves it as is. A record of a newer schema is refused (*SchemaError),
// never changed; what fn does not touch is written back as it was read,
// members this release does not know included (encodeOver). The whole loop
// is one span, with how many attempts it took and an event per revision
// conflict and per retried store failure.
func update[T any](ctx context.Context, s *Store, k recordKind, kv jetstream.KeyValue, key string, fn func(v *T, exists bool) error) (T, error) {
	v, errs, err := updateAll(ctx, s, k, kv, key, []change[T]{{ctx: ctx, fn: fn}})
	if err != nil {
		return v, err
	}
	return v, errs[0]
}

// updateAll applies every change, in order, to the record of kind k under
// key and writes the result with one compare-and-set, as update does for
// one. A conflict (another writer came first) reads the record again and
// applies every change again, each to what the one before it left; so each
// change sees the record as it is, and one that fails (out of stock, say)
// changes nothing while the others go ahead. errs holds each change's
// answer once the write (if any change made one) is acknowledged; err is
// a failure of the store or of the record itself, and then no change was
// written. ctx carries the span and bounds the whole; each change's own
// context only decides whether it is still wanted.
func updateAll[T any](ctx context.Context, s *Store, k recordKind, kv jetstream.KeyValue, key string, changes []change[T]) (_ T, errs []error, err error) {
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
		// A leaderless asset (an election after a lost region) drops the
		// request: each attempt gets its own deadline and the loop retries.
		rctx, cancelRead := context.WithTimeout(ctx, s.cfg.OpTimeout)
		data, rev, err := s.leaderValue(rctx, kv.Bucket(), key)
		cancelRead()
		exists := err == nil
		var stored, read members
		switch {
		case exists:
			if stored, err = decodeMembers(k, key, data, &v); err != nil {
				return v, nil, err
			}
			if read, err = membersOf(v); err != nil {
				return v, nil, fmt.Errorf("encode %s %s: %w", k.name, key, err)
			}
		case errors.Is(err, errNotFound):
		default:
			if time.Now().After(deadline) || ctx.Err() != nil {
				return v, nil, fmt.Errorf("read %s/%s: %w", kv.Bucket(), key, err)
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
			return v, errs, nil
		}
		b, err := s.encodeOver(k, v, stored, read)
		if err != nil {
			return v, nil, fmt.Errorf("%s: %w", key, err)
		}
		actx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
		if k == kindStock && s.cfg.UnsafeBlindStockWrites {
			_, err = kv.Put(actx, key, b) // no revision check: see Config
		} else if rev == 0 {
			_, err = kv.Create(actx, key, b)
		} else {
			_, err = kv.Update(actx, key, b, rev)
		}
		cancel()
		if err == nil {
			return v, errs, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil || full(err) || tooLarge(err) {
			return v, nil, fmt.Errorf("update %s/%s: %w", kv.Bucket(), key, err)
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
