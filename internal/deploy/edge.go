package deploy

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/store"
)

// frontDoor is the edge and the operations address of a deployment.
type frontDoor struct {
	edge   *edge.Edge
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan struct{}
	listeners
	edgeURL string
	opsURL  string
}

// startEdge starts the edge (one POP per region, following the stamps
// registry) on addr, and the operations endpoints on a loopback address.
// The edge reaches the registry through every region's server, so it
// survives the loss of any one region.
func (d *Deployment) startEdge(ctx context.Context, addr string) error {
	var urls []string
	for _, name := range d.cfg.Regions {
		urls = append(urls, d.regions[name].node.ClientURL())
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.Name("edge"), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond), nats.NoCallbacksAfterClientClose())
	if err != nil {
		return fmt.Errorf("edge: connect: %w", err)
	}
	openCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	st, err := store.Open(openCtx, store.Config{Conn: nc, Replicas: d.replicas(), Logger: d.log.With("component", "edge-store")})
	if err != nil {
		nc.Close()
		return err
	}
	e, err := edge.New(edge.Config{
		POPs: d.cfg.Regions,
		Registry: func(ctx context.Context, fn func(string, *edge.StampInfo)) error {
			return st.WatchRegistry(ctx, func(id string, s *store.StampEntry) {
				if s == nil {
					fn(id, nil)
					return
				}
				fn(id, &edge.StampInfo{ID: s.ID, Region: s.Region, URL: s.URL})
			}, nil)
		},
		// POP-to-stamp traffic crosses the simulated links, so a far stamp
		// really is slower.
		Dial:        func(pop, region, hostport string) (string, error) { return d.net.Route(pop, region, hostport) },
		ClientRate:  d.cfg.EdgeClientRate,
		ClientBurst: d.cfg.EdgeClientBurst,
		Credential:  d.edgeCred,
		Logger:      d.log.With("component", "edge"),
	})
	if err != nil {
		nc.Close()
		return err
	}
	fd := &frontDoor{edge: e, nc: nc, done: make(chan struct{}), listeners: listeners{log: d.log}}
	runCtx, stop := context.WithCancel(context.Background())
	fd.cancel = stop
	go func() { e.Run(runCtx); close(fd.done) }()
	d.front = fd
	opsHandler, err := d.opsHandler()
	if err != nil {
		fd.close()
		return err
	}
	opsAddr := d.cfg.OpsAddr
	if opsAddr == "" {
		opsAddr = "127.0.0.1:0"
	}
	if fd.edgeURL, err = fd.serve("edge", addr, e.Handler()); err == nil {
		fd.opsURL, err = fd.serve("ops", opsAddr, opsHandler)
	}
	if err != nil {
		fd.close()
		return err
	}
	return nil
}

func (fd *frontDoor) close() {
	fd.shutdown()
	fd.cancel()
	<-fd.done
	fd.nc.Close()
}

// EdgeURL is the global entry point's URL; OpsURL the operations address.
func (d *Deployment) EdgeURL() string { return d.front.edgeURL }

// OpsURL is the address of the operations endpoints (/ops/...).
func (d *Deployment) OpsURL() string { return d.front.opsURL }

// EdgeCredential is the credential the edge adds to every request it
// forwards; stamps refuse API traffic without it.
func (d *Deployment) EdgeCredential() string { return d.edgeCred }

// Edge is the deployment's global entry point.
func (d *Deployment) Edge() *edge.Edge { return d.front.edge }
