package telemetry

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// TestRunCollectsEverySecond runs Run in a bubble with a fake clock.
func TestRunCollectsEverySecond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tel := mustNew(t, Config{})
		c, _ := tel.Meter("test").Int64Counter("contoso.ticks")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			tel.Run(ctx)
			close(done)
		}()
		start := time.Now()
		for range 3 {
			synctest.Wait() // Run has collected
			c.Add(ctx, 1)
			time.Sleep(time.Second)
		}
		synctest.Wait()
		// Collections at 0, 1, 2 and 3 s.
		if n := tel.Sink().hist.tiers[0].snaps.len(); n != 4 {
			t.Errorf("1 s tier holds %d snapshots after 3 s, want 4", n)
		}
		if v, at, ok := tel.Sink().Last("contoso.ticks", nil); !ok || v != 3 || !at.Equal(start.Add(3*time.Second)) {
			t.Errorf("Last = %v at %v, %v; want 3 at start+3s", v, at, ok)
		}
		if got, ok := tel.Sink().Increase("contoso.ticks", nil, 2*time.Second); !ok || got != 2 {
			t.Errorf("Increase over 2s = %v, %v; want 2", got, ok)
		}
		cancel()
		<-done
	})
}
