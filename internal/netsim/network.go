package netsim

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Config configures a Network.
type Config struct {
	Latency LatencyTable // nil: DefaultLatencies()
	Off     bool         // no latency at all (fast tests); links still exist and can still be cut or slowed
	Logger  *slog.Logger // nil: discard
}

// Network is the set of simulated links between regions. Links are created
// on demand by Route and live until RemoveRegion or Close. A Network is safe
// for concurrent use.
type Network struct {
	off    bool         // immutable after New
	log    *slog.Logger // immutable after New
	server *toxiproxy.ApiServer

	mu sync.Mutex
	// Guarded by mu:
	latency LatencyTable   // a copy of the configured table, extended by SetBaseLatency
	links   map[Pair]*Link // live links by pair
	seq     uint64         // channel counter, for unique proxy names
	closed  bool           // Close was called
}

// errClosed is returned by Route after Close.
var errClosed = errors.New("netsim: network closed")

// New returns a Network with no links yet.
func New(cfg Config) *Network {
	registerToxic()
	if cfg.Latency == nil {
		cfg.Latency = DefaultLatencies()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Network{
		latency: maps.Clone(cfg.Latency),
		off:     cfg.Off,
		log:     cfg.Logger,
		server:  toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop()),
		links:   make(map[Pair]*Link),
	}
}

// Route returns a loopback address (127.0.0.1:port) that forwards to upstream
// across the link between regions from and to. Each call creates a new
// channel (one toxiproxy proxy) on that link; all channels of one link share
// its faults. from == to is allowed and returns upstream unchanged (no link
// inside a region).
func (n *Network) Route(from, to, upstream string) (string, error) {
	if from == to {
		return upstream, nil
	}
	if err := validRegion(from); err != nil {
		return "", fmt.Errorf("netsim: route %s->%s: %w", from, to, err)
	}
	if err := validRegion(to); err != nil {
		return "", fmt.Errorf("netsim: route %s->%s: %w", from, to, err)
	}
	if _, _, err := net.SplitHostPort(upstream); err != nil {
		return "", fmt.Errorf("netsim: route %s->%s: upstream: %w", from, to, err)
	}
	pair := NewPair(from, to)

	// n.mu is held across proxy start so that RemoveRegion and Close cannot
	// miss a channel being added; starting a proxy only opens a listener.
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return "", errClosed
	}
	l := n.links[pair]
	if l == nil {
		base := n.latency.Between(from, to)
		if n.off {
			base = 0
		}
		l = newLink(pair, base, n.log)
		n.links[pair] = l
		n.log.Info("netsim: link created", "link", pair.String(), "latency", base)
	}
	n.seq++
	name := fmt.Sprintf("%s/%d", pair, n.seq)
	addr, err := l.addChannel(n.server, name, upstream)
	if err != nil {
		return "", fmt.Errorf("netsim: route %s->%s: %w", from, to, err)
	}
	n.log.Debug("netsim: channel added", "link", pair.String(), "channel", name, "listen", addr, "upstream", upstream)
	return addr, nil
}

// SetBaseLatency sets the table's latency between regions a and b (a
// region added at run time): the link of that pair uses it from now on,
// unless the network is Off.
func (n *Network) SetBaseLatency(a, b string, d time.Duration) error {
	if a == b || d < 0 {
		return fmt.Errorf("netsim: latency %s-%s %s: want two regions and a latency >= 0", a, b, d)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.latency[NewPair(a, b)] = d
	if l := n.links[NewPair(a, b)]; l != nil && !n.off {
		l.setBase(d)
	}
	return nil
}

// BaseLatency is the table's latency between regions a and b.
func (n *Network) BaseLatency(a, b string) time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.latency.Between(a, b)
}

// Link returns the live link between regions a and b (either order), if
// Route has created it and it has not been removed.
func (n *Network) Link(a, b string) (*Link, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l, ok := n.links[NewPair(a, b)]
	return l, ok
}

// Links returns the status of every live link, sorted by name.
func (n *Network) Links() []LinkStatus {
	n.mu.Lock()
	links := make([]*Link, 0, len(n.links))
	for _, l := range n.links {
		links = append(links, l)
	}
	n.mu.Unlock()

	out := make([]LinkStatus, 0, len(links))
	for _, l := range links {
		out = append(out, l.Status())
	}
	slices.SortFunc(out, func(x, y LinkStatus) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// RemoveRegion stops and forgets every link touching region: their
// listeners close and their connections are closed. A later Route involving
// region creates a fresh link.
func (n *Network) RemoveRegion(region string) {
	n.mu.Lock()
	var removed []*Link
	for p, l := range n.links {
		if p.A == region || p.B == region {
			delete(n.links, p)
			removed = append(removed, l)
		}
	}
	n.mu.Unlock()
	for _, l := range removed {
		l.stop()
		n.log.Info("netsim: link removed", "link", l.Name(), "region", region)
	}
}

// Close stops all proxies and forgets all links; Route fails afterwards.
// Close is idempotent and always returns nil.
func (n *Network) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	links := n.links
	n.links = make(map[Pair]*Link)
	n.mu.Unlock()
	for _, l := range links {
		l.stop()
	}
	return nil
}
