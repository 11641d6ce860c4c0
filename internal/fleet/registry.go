package fleet

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso/shoes/internal/store"
)

// registryView follows the stamps registry (as the edge's user, which may
// only read it), so the fleet can name the instance a process runs: a
// stamp's registry id is made when it starts.
type registryView struct {
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex        // guards byURL
	byURL map[string]string // stamp URL → registry id
}

func watchRegistry(ctx context.Context, urls string, seed []byte, log *slog.Logger) (*registryView, error) {
	opts, err := store.Credentials{Seed: seed}.Options()
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(urls, append(opts, nats.Name("fleet"), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))...)
	if err != nil {
		return nil, err
	}
	openCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	reg, err := store.OpenRegistry(openCtx, store.Config{Conn: nc, Logger: log.With("component", "fleet-registry")})
	if err != nil {
		nc.Close()
		return nil, err
	}
	runCtx, stop := context.WithCancel(context.Background())
	v := &registryView{nc: nc, cancel: stop, done: make(chan struct{}), byURL: map[string]string{}}
	go func() {
		defer close(v.done)
		for runCtx.Err() == nil {
			err := reg.Watch(runCtx, func(id string, e *store.StampEntry) {
				v.mu.Lock()
				defer v.mu.Unlock()
				if e == nil {
					for u, known := range v.byURL {
						if known == id {
							delete(v.byURL, u)
						}
					}
					return
				}
				v.byURL[e.URL] = e.ID
			}, nil)
			if err != nil && runCtx.Err() == nil {
				log.Warn("stamps registry watch ended; watching again", "error", err)
				select {
				case <-runCtx.Done():
				case <-time.After(time.Second):
				}
			}
		}
	}()
	return v, nil
}

// id is the registry id of the stamp at url; empty when it is unknown.
func (v *registryView) id(url string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.byURL[url]
}

func (v *registryView) close() {
	v.cancel()
	<-v.done
	v.nc.Close()
}
