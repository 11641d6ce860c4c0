package netsim

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
)

// Link is the simulated network between two regions. It carries any number
// of channels (one per Route call); faults set on the link apply to all of
// them, existing and future. A Link is safe for concurrent use.
type Link struct {
	pair Pair
	log  *slog.Logger  // immutable
	gone chan struct{} // closed by stop; the channel itself is immutable

	mu sync.Mutex
	// Guarded by mu:
	base    time.Duration      // latency from the table (0 when Off)
	latency time.Duration      // current one-way base latency
	jitter  time.Duration      // current jitter: each chunk gets latency ± jitter
	cut     bool               // black hole: every byte is dropped
	changed chan struct{}      // closed (and replaced) whenever latency, jitter or cut changes
	healed  chan struct{}      // closed (and replaced) by each Heal that ends a cut
	proxies []*toxiproxy.Proxy // the link's channels
	stopped bool               // stop was called; no more channels
}

// LinkStatus is a snapshot of a link, for status pages and chaos tooling.
type LinkStatus struct {
	Name      string        `json:"name"`      // pair name, "A-B"
	Latency   time.Duration `json:"-"`         // current one-way base latency
	LatencyMs float64       `json:"latencyMs"` // Latency in milliseconds
	JitterMs  float64       `json:"jitterMs"`  // jitter in milliseconds
	Cut       bool          `json:"cut"`       // the link is black-holed
	Channels  int           `json:"channels"`  // number of channels (Route calls) on the link
}

// errLinkStopped is returned by operations on a removed link.
var errLinkStopped = errors.New("link removed")

func newLink(pair Pair, base time.Duration, log *slog.Logger) *Link {
	return &Link{
		pair:    pair,
		base:    base,
		log:     log,
		gone:    make(chan struct{}),
		latency: base,
		changed: make(chan struct{}),
		healed:  make(chan struct{}),
	}
}

// Name returns the link's name, the canonical pair name "A-B".
func (l *Link) Name() string { return l.pair.String() }

// Status returns a snapshot of the link's faults and channel count.
func (l *Link) Status() LinkStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	return LinkStatus{
		Name:      l.pair.String(),
		Latency:   l.latency,
		LatencyMs: durationMs(l.latency),
		JitterMs:  durationMs(l.jitter),
		Cut:       l.cut,
		Channels:  len(l.proxies),
	}
}

func durationMs(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// SetLatency sets the link's one-way latency and jitter, replacing the base
// latency: each chunk of bytes is delayed by latency ± a uniformly random
// amount up to jitter (never below 0), in both directions, on every channel,
// existing and future. Bytes already waiting are re-timed at once. Bytes
// within one direction of a connection stay in order (like TCP), so jitter
// delays later bytes behind earlier ones.
func (l *Link) SetLatency(latency, jitter time.Duration) error {
	if latency < 0 || jitter < 0 {
		return fmt.Errorf("netsim: link %s: negative latency %v or jitter %v", l.pair, latency, jitter)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return fmt.Errorf("netsim: link %s: %w", l.pair, errLinkStopped)
	}
	l.latency, l.jitter = latency, jitter
	l.notifyLocked()
	l.log.Info("netsim: link latency set", "link", l.pair.String(), "latency", latency, "jitter", jitter)
	return nil
}

// setBase changes the table's latency for this link and applies it.
func (l *Link) setBase(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.base, l.latency = d, d
	l.notifyLocked()
}

// ResetLatency sets the link's latency back to the table's value (or 0 when
// the network is Off) and removes jitter.
func (l *Link) ResetLatency() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.latency, l.jitter = l.base, 0
	l.notifyLocked()
	l.log.Info("netsim: link latency reset", "link", l.pair.String(), "latency", l.base)
}

// Cut black-holes the link, like a crashed region or a partition rather than
// a refusal: connections stay open but no byte passes in either direction,
// and new connections are accepted and hang. A connection closed at one end
// during a cut is not reported to the other end either. Cut is idempotent.
func (l *Link) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut {
		return
	}
	l.cut = true
	l.notifyLocked()
	l.log.Warn("netsim: link cut", "link", l.pair.String())
}

// Heal ends a cut: bytes flow again. Every connection that was open at any
// time during the cut is closed at both ends, so clients reconnect cleanly
// instead of receiving a stream with a hole in it. Heal on a link that is
// not cut does nothing.
func (l *Link) Heal() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.cut {
		return
	}
	l.cut = false
	close(l.healed)
	l.healed = make(chan struct{})
	l.notifyLocked()
	l.log.Info("netsim: link healed", "link", l.pair.String())
}

// notifyLocked wakes channels waiting on a fault change. l.mu must be held.
func (l *Link) notifyLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// faults is a snapshot of a link's faults, taken by the toxic per chunk.
type faults struct {
	latency, jitter time.Duration
	cut             bool
	changed         <-chan struct{}
}

func (l *Link) faults() faults {
	l.mu.Lock()
	defer l.mu.Unlock()
	return faults{latency: l.latency, jitter: l.jitter, cut: l.cut, changed: l.changed}
}

func (l *Link) isCut() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cut
}

// healSignal returns the channel closed by the next Heal.
func (l *Link) healSignal() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.healed
}

// addChannel starts a new proxy on the link forwarding to upstream and
// returns its listen address.
func (l *Link) addChannel(server *toxiproxy.ApiServer, name, upstream string) (string, error) {
	p := toxiproxy.NewProxy(server, name, "127.0.0.1:0", upstream)
	// The toxics are added before Start, so every connection's chain is
	// complete from its first byte and the chain never changes afterwards:
	// faults change through the Link's state, not through toxiproxy.
	for _, stream := range []string{"upstream", "downstream"} {
		body := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1}`, "netsim_"+stream, linkToxicType, stream)
		w, err := p.Toxics.AddToxicJson(strings.NewReader(body))
		if err != nil {
			return "", fmt.Errorf("add %s toxic: %w", stream, err)
		}
		lt, ok := w.Toxic.(*linkToxic)
		if !ok {
			return "", fmt.Errorf("add %s toxic: unexpected type %T", stream, w.Toxic)
		}
		lt.link = l // before Start: the proxy's goroutines see it
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return "", errLinkStopped
	}
	if err := p.Start(); err != nil {
		return "", fmt.Errorf("start proxy: %w", err)
	}
	l.proxies = append(l.proxies, p)
	// Start waits until the listener is open; toxiproxy then holds the actual
	// address in Listen, written before Start returns.
	return p.Listen, nil
}

// stop stops every channel of the link and releases their connections.
func (l *Link) stop() {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return
	}
	l.stopped = true
	close(l.gone)
	proxies := l.proxies
	l.mu.Unlock()
	for _, p := range proxies {
		p.Stop()
	}
}
