package edge

import (
	"net"
	"net/http"
	"time"

	"github.com/contoso/shoes/internal/ratelimit"
)

// limiter keeps a token bucket per client in a bounded table
// (ratelimit.Limiter): a client is forgotten once its bucket would be full
// again, at most ratelimit.DefaultMaxKeys are tracked, and while the table
// is full of active clients a new one shares an overflow bucket, so memory
// and the cost per request stay bounded under a flood of addresses.
type limiter struct {
	clients *ratelimit.Limiter
	now     func() time.Time
}

func newLimiter(perSecond float64, burst int, now func() time.Time) *limiter {
	return &limiter{clients: ratelimit.New(ratelimit.Config{Rate: perSecond, Burst: burst}), now: now}
}

func (l *limiter) allow(client string) bool { return l.clients.Allow(client, l.now()) }

// clientKey identifies a client for rate limiting: its remote address.
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
