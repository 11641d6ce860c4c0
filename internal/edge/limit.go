package edge

import (
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter keeps a token bucket per client, forgetting clients idle for a
// minute and tracking at most maxClients at once (a new client beyond that
// shares one overflow bucket, so memory stays bounded under a flood).
type limiter struct {
	rate  rate.Limit
	burst int

	mu       sync.Mutex // guards clients, overflow and swept
	clients  map[string]*clientLimit
	overflow *rate.Limiter
	swept    time.Time
}

type clientLimit struct {
	lim  *rate.Limiter
	seen time.Time
}

const maxClients = 100_000

func newLimiter(perSecond float64, burst int) *limiter {
	return &limiter{rate: rate.Limit(perSecond), burst: burst, clients: map[string]*clientLimit{},
		overflow: rate.NewLimiter(rate.Limit(perSecond), burst)}
}

func (l *limiter) allow(client string) bool {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for k, c := range l.clients {
			if now.Sub(c.seen) > time.Minute {
				delete(l.clients, k)
			}
		}
		l.swept = now
	}
	c, ok := l.clients[client]
	if !ok {
		if len(l.clients) >= maxClients {
			return l.overflow.AllowN(now, 1)
		}
		c = &clientLimit{lim: rate.NewLimiter(l.rate, l.burst)}
		l.clients[client] = c
	}
	c.seen = now
	return c.lim.AllowN(now, 1)
}

// clientKey identifies a client for rate limiting: its remote address.
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
