package fleet

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"

	"github.com/contoso/shoes/internal/chaos"
	"github.com/contoso/shoes/internal/child"
	"github.com/contoso/shoes/internal/netsim"
)

// Toxic names on every proxy of a link; each is added on both streams
// (upstream and downstream), so its effect is one-way in each direction.
const (
	toxicLatency = "latency"
	toxicCut     = "cut"
)

var streams = []string{"upstream", "downstream"}

// channel is one proxy of a link: a listener in front of one upstream.
type channel struct {
	name     string // the proxy's name at the toxiproxy-server
	listen   string // 127.0.0.1:port, what the near side dials
	upstream string // 127.0.0.1:port, the far side
}

// link is everything between two regions: one toxiproxy-server process
// and its proxies, each carrying a latency toxic (the link's one-way
// latency) and, while the link is cut, a timeout toxic that black-holes
// every byte. It is the chaos.Link of the pair.
type link struct {
	pair     netsim.Pair
	server   *child.Process
	api      string // http://127.0.0.1:port of the toxiproxy-server
	base     time.Duration
	off      bool // no latency at all (Config.NoLatency)
	log      *slog.Logger
	channels []channel

	mu      sync.Mutex // guards the fields below and every change at the server
	latency time.Duration
	jitter  time.Duration
	cut     bool
}

var _ chaos.Link = (*link)(nil)

func (l *link) client() *toxiproxy.Client { return toxiproxy.NewClient(l.api) }

// setup creates every channel's proxy and applies the link's state; it
// runs after each start of the link's server.
func (l *link) setup() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.client()
	for _, ch := range l.channels {
		p, err := c.CreateProxy(ch.name, ch.listen, ch.upstream)
		if err != nil {
			return fmt.Errorf("link %s: proxy %s: %w", l.pair, ch.name, err)
		}
		if err := l.applyLocked(p); err != nil {
			return err
		}
	}
	return nil
}

// wantLatency is the latency toxic's attributes; nil: no toxic.
func (l *link) wantLatency() toxiproxy.Attributes {
	if l.latency == 0 && l.jitter == 0 {
		return nil
	}
	return toxiproxy.Attributes{"latency": l.latency.Milliseconds(), "jitter": l.jitter.Milliseconds()}
}

// applyLocked makes proxy p's toxics match the link's state.
func (l *link) applyLocked(p *toxiproxy.Proxy) error {
	have, err := p.Toxics()
	if err != nil {
		return fmt.Errorf("link %s: %s: %w", l.pair, p.Name, err)
	}
	exists := map[string]bool{}
	for _, t := range have {
		exists[t.Name] = true
	}
	var errs []error
	lat := l.wantLatency()
	for _, s := range streams {
		name := toxicLatency + "-" + s
		switch {
		case lat != nil && exists[name]:
			_, err = p.UpdateToxic(name, 1, lat)
		case lat != nil:
			_, err = p.AddToxic(name, "latency", s, 1, lat)
		case exists[name]:
			err = p.RemoveToxic(name)
		}
		errs = append(errs, err)
		name = toxicCut + "-" + s
		switch {
		case l.cut && !exists[name]:
			_, err = p.AddToxic(name, "timeout", s, 1, toxiproxy.Attributes{"timeout": 0})
		case !l.cut && exists[name]:
			err = p.RemoveToxic(name)
		default:
			err = nil
		}
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("link %s: %s: %w", l.pair, p.Name, err)
	}
	return nil
}

// apply makes every proxy's toxics match the link's state.
func (l *link) applyAllLocked() error {
	c := l.client()
	var errs []error
	for _, ch := range l.channels {
		p, err := c.Proxy(ch.name)
		if err != nil {
			errs = append(errs, fmt.Errorf("link %s: %s: %w", l.pair, ch.name, err))
			continue
		}
		errs = append(errs, l.applyLocked(p))
	}
	return errors.Join(errs...)
}

// addChannel creates one more proxy on the running link.
func (l *link) addChannel(ch channel) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, err := l.client().CreateProxy(ch.name, ch.listen, ch.upstream)
	if err != nil {
		return fmt.Errorf("link %s: proxy %s: %w", l.pair, ch.name, err)
	}
	l.channels = append(l.channels, ch)
	return l.applyLocked(p)
}

// SetLatency sets the one-way latency and jitter of every channel, both
// ways.
func (l *link) SetLatency(latency, jitter time.Duration) error {
	if latency < 0 || jitter < 0 {
		return fmt.Errorf("link %s: latency and jitter must not be negative", l.pair)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.latency, l.jitter = latency, jitter
	return l.applyAllLocked()
}

// ResetLatency brings the link back to its base latency.
func (l *link) ResetLatency() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.latency, l.jitter = l.baseLatency(), 0
	l.logError("reset latency", l.applyAllLocked())
}

func (l *link) baseLatency() time.Duration {
	if l.off {
		return 0
	}
	return l.base
}

// Cut black-holes every byte on every channel, both ways: connections
// stay open and carry nothing, as over a dead network path.
func (l *link) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = true
	l.logError("cut", l.applyAllLocked())
}

// Heal ends a cut: the connections that were black-holed close, new ones
// carry traffic.
func (l *link) Heal() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = false
	l.logError("heal", l.applyAllLocked())
}

func (l *link) logError(op string, err error) {
	if err != nil {
		l.log.Error("link change failed", "link", l.pair.String(), "op", op, "error", err)
	}
}

// addr is the address a channel listens on, by name; empty when the link
// has no such channel.
func (l *link) addr(name string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ch := range l.channels {
		if ch.name == name {
			return ch.listen
		}
	}
	return ""
}
