package fleet

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso/shoes/internal/store"
)

// registryView is the fleet's own view of the store, as the agents' user
// (which may read the stamps registry and the releases bucket and take the
// autoscaler's starts and drains, nothing else): the registry, so the
// fleet can name the instance a process runs (a stamp's registry id is
// made when it starts), and the connection its release agent reads the
// release records through and its launch agent takes starts and drains.
type registryView struct {
	nc    *nats.Conn
	index *store.RegistryIndex
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
	index, err := store.FollowRegistry(openCtx, store.Config{Conn: nc, Logger: log.With("component", "fleet-registry")})
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &registryView{nc: nc, index: index}, nil
}

// id is the registry id of the stamp at url; empty when it is unknown.
func (v *registryView) id(url string) string { return v.index.ID(url) }

func (v *registryView) close() {
	v.index.Close()
	v.nc.Close()
}
