package store

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ClusterName is the name of the JetStream cluster that spans the regions.
const ClusterName = "contoso"

// NodeConfig configures one embedded JetStream server: the data region of
// one region.
type NodeConfig struct {
	Region      string     // required; becomes the server name and its "region:<name>" tag
	StoreDir    string     // required; JetStream data directory
	ClientPort  int        // zero: a free port on 127.0.0.1
	ClusterPort int        // zero: a free port; required for a cluster whose links point at it
	Routes      []*url.URL // routes this node solicits (through the inter-region links)
	SyncAlways  bool       // fsync every write (the system of record); false only in benchmarks
	// MaxStore is the file storage the server offers JetStream; zero:
	// DefaultMaxStore. Every asset reserves its declared MaxBytes up front,
	// so this must hold them all; set explicitly, the reservation does not
	// depend on the disk's free space when the server starts (the engine's
	// default is 75 % of it, which on a small disk refuses the assets).
	MaxStore int64
	// Users are the clients the server accepts, each with its role's
	// permissions (see Role); empty: any client may connect (tests of the
	// store alone).
	Users []User
	// RouteUser and RoutePassword authenticate the cluster's routes: the
	// server accepts routes that present them, and Routes should carry
	// them (RouteURL). Empty: routes are not authenticated.
	RouteUser, RoutePassword string
	// TLS, when set, is required of every client and every route: the
	// server presents Cert, and routes verify each other (both ways)
	// against Roots. Nil: plain TCP.
	TLS    *NodeTLS
	Logger *slog.Logger
}

// NodeTLS is a server's certificate and the CA its cluster peers'
// certificates must chain to.
type NodeTLS struct {
	Cert  tls.Certificate
	Roots *x509.CertPool
}

// Node is an embedded nats-server with JetStream.
type Node struct {
	cfg NodeConfig
	srv *server.Server
}

// StartNode starts an embedded server and waits until it accepts clients.
// Signals are left to the host process (NoSigs), so a SIGINT never calls
// os.Exit from inside the server.
func StartNode(cfg NodeConfig) (*Node, error) {
	if cfg.Region == "" || cfg.StoreDir == "" {
		return nil, errors.New("start node: region and store directory are required")
	}
	if cfg.ClientPort == 0 {
		// Not a port the kernel picks: a restarted server takes its port
		// again, and a kernel-picked port can meanwhile be the local end
		// of one of this host's outgoing connections.
		p, err := FreePort()
		if err != nil {
			return nil, fmt.Errorf("start node %s: %w", cfg.Region, err)
		}
		cfg.ClientPort = p
	}
	opts := &server.Options{
		ServerName:          cfg.Region,
		Host:                "127.0.0.1",
		Port:                cfg.ClientPort,
		NoSigs:              true,
		NoLog:               cfg.Logger == nil,
		JetStream:           true,
		StoreDir:            cfg.StoreDir,
		SyncAlways:          cfg.SyncAlways,
		JetStreamMaxStore:   cmp.Or(cfg.MaxStore, DefaultMaxStore),
		Tags:                []string{"region:" + cfg.Region},
		JetStreamUniqueTag:  "region:",
		LameDuckDuration:    5 * time.Second,
		LameDuckGracePeriod: time.Second,
		PingInterval:        2 * time.Second,
		MaxPingsOut:         3,
	}
	if len(cfg.Users) > 0 {
		opts.Nkeys = nkeyUsers(cfg.Users)
	}
	if cfg.TLS != nil {
		// Clients present no certificate (they authenticate with their
		// nkey); routes present one and verify the other side's.
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cfg.TLS.Cert}}
		opts.TLS = true
		opts.TLSTimeout = tlsTimeout
	}
	if len(cfg.Routes) > 0 || cfg.ClusterPort != 0 {
		opts.Cluster = server.ClusterOpts{
			Name: ClusterName,
			Host: "127.0.0.1",
			Port: cfg.ClusterPort,
			// Never tell clients about other regions' servers: a client
			// stays on its region's server.
			NoAdvertise: true,
			// Servers learn about each other by gossip and would dial the
			// gossiped address directly, bypassing the inter-region links.
			// Advertise an address that refuses, so only configured routes
			// (through the links) carry cluster traffic.
			Advertise: "127.0.0.1:1",
			// A region that vanishes (its links black-holed, no reset)
			// is noticed within about two seconds.
			PingInterval: time.Second,
			MaxPingsOut:  2,
		}
		opts.Routes = cfg.Routes
		opts.Cluster.Username, opts.Cluster.Password = cfg.RouteUser, cfg.RoutePassword
		if cfg.TLS != nil {
			opts.Cluster.TLSConfig = &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{cfg.TLS.Cert},
				RootCAs:      cfg.TLS.Roots, // verifying the routes this server solicits
				ClientCAs:    cfg.TLS.Roots, // and the ones it accepts
				ClientAuth:   tls.RequireAndVerifyClientCert,
			}
			opts.Cluster.TLSTimeout = tlsTimeout
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start node %s: %w", cfg.Region, err)
	}
	if cfg.Logger != nil {
		srv.SetLoggerV2(&natsLogger{log: cfg.Logger.With("component", "nats", "region", cfg.Region)}, false, false, false)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("start node %s: not ready for connections after 30 s: %s", cfg.Region, portsTaken(cfg.ClientPort, cfg.ClusterPort))
	}
	// Keep the ports the server took, so a restart takes them again and
	// its clients and links find it.
	if addr, ok := srv.Addr().(*net.TCPAddr); ok {
		cfg.ClientPort = addr.Port
	}
	if cfg.ClusterPort == 0 && srv.ClusterAddr() != nil {
		cfg.ClusterPort = srv.ClusterAddr().Port
	}
	return &Node{cfg: cfg, srv: srv}, nil
}

// ClientURL is the node's client URL.
func (n *Node) ClientURL() string { return n.srv.ClientURL() }

// Server exposes the embedded server, for in-process connections.
func (n *Node) Server() *server.Server { return n.srv }

// Config returns the configuration the node was started with, so a
// restarted node can take the same ports.
func (n *Node) Config() NodeConfig { return n.cfg }

// Peers reports how many JetStream peers this node sees in its cluster,
// itself included.
func (n *Node) Peers() int {
	if !n.srv.JetStreamIsClustered() {
		return 1
	}
	return len(n.srv.JetStreamClusterPeers())
}

// Shutdown stops the node. With lameDuck, it first moves its stream and
// consumer leaderships elsewhere and lets clients go (a clean, planned stop);
// without, it stops at once.
func (n *Node) Shutdown(lameDuck bool) {
	if lameDuck && n.srv.JetStreamIsClustered() {
		n.srv.LameDuckShutdown()
	} else {
		n.srv.Shutdown()
	}
	n.srv.WaitForShutdown()
}

// DefaultMaxStore is the file storage a store server offers by default:
// every asset's declared MaxBytes (Assets) with room to spare.
const DefaultMaxStore = 16 * gib

// RouteURL is the nats-route URL for a host:port address, carrying the
// routes' credentials when user is not empty.
func RouteURL(addr, user, password string) *url.URL {
	u := &url.URL{Scheme: "nats-route", Host: addr}
	if user != "" {
		u.User = url.UserPassword(user, password)
	}
	return u
}

// tlsTimeout bounds a TLS handshake with a client or a route, in seconds:
// generous, since a handshake on a loaded machine under the race detector
// takes far longer than the engine's default half second.
const tlsTimeout = 5

// ClusterAddr is the loopback address of the node's cluster listener.
func (n *Node) ClusterAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.srv.ClusterAddr().Port))
}

type natsLogger struct{ log *slog.Logger }

func (l *natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Errorf(format string, v ...any)  { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }

// WaitForCluster waits until the nodes' JetStream meta group has a leader
// that counts every node as a peer and every node is current. Replicated
// assets created before that may never be answered.
func WaitForCluster(ctx context.Context, nodes []*Node) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		leader, current := false, true
		for _, n := range nodes {
			if !n.srv.JetStreamIsCurrent() {
				current = false
			}
			if n.srv.JetStreamIsLeader() && n.Peers() == len(nodes) {
				leader = true
			}
		}
		if len(nodes) == 1 || (leader && current) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the store cluster (leader with all peers: %v, all current: %v): %w", leader, current, ctx.Err())
		case <-t.C:
		}
	}
}

// portsTaken says which of ports (0: none asked for) another socket holds,
// tried once the server that could not bind them is shut down.
func portsTaken(ports ...int) string {
	var taken []string
	for _, p := range ports {
		if p == 0 {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			taken = append(taken, fmt.Sprintf("port %d is taken (%v)", p, err))
			continue
		}
		l.Close()
	}
	if len(taken) == 0 {
		return fmt.Sprintf("its ports %v are free: it was slow to start", ports)
	}
	return strings.Join(taken, "; ")
}
