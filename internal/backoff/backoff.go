// Package backoff retries an operation until it succeeds or its context
// ends, doubling the wait between attempts up to a bound: the one loop
// behind every part that must outlast a dependency that is not there yet
// (a store still declaring its assets, a watch whose server went away, a
// seed the store refused).
package backoff

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Policy is how long to wait after the first failure (First) and at most
// (Max); each wait doubles the one before. Zero First: 100 ms; Max below
// First: First.
type Policy struct {
	First, Max time.Duration
}

// Retry calls op until it returns nil, and returns nil then. After a
// failure, unless ctx is done, it calls notify (when not nil) with the
// error and the wait before the next attempt, and waits. When ctx ends it
// returns ctx's error with op's last one (or ctx's error alone when op never
// ran). op gets ctx.
func (p Policy) Retry(ctx context.Context, op func(context.Context) error, notify func(err error, wait time.Duration)) error {
	wait := p.First
	if wait <= 0 {
		wait = 100 * time.Millisecond
	}
	most := max(p.Max, wait)
	var last error
	for {
		if err := ctx.Err(); err != nil {
			if last == nil {
				return err
			}
			return fmt.Errorf("%w (last error: %w)", err, last)
		}
		last = op(ctx)
		if last == nil {
			return nil
		}
		if ctx.Err() != nil {
			continue // said above
		}
		if notify != nil {
			notify(last, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		wait = min(2*wait, most)
	}
}

// ErrEnded is what Keep tells notify when run returned without an error
// before ctx ended.
var ErrEnded = errors.New("ended without an error")

// Keep runs run until ctx ends, starting it again whenever it returns,
// with an error or without (a watch whose server went away ends either
// way), after the waits Retry makes; notify, when not nil, is told why
// (ErrEnded for a return without an error) and how long it waits.
func (p Policy) Keep(ctx context.Context, run func(context.Context) error, notify func(err error, wait time.Duration)) {
	_ = p.Retry(ctx, func(ctx context.Context) error {
		if err := run(ctx); err != nil {
			return err
		}
		return ErrEnded
	}, notify)
}
