package stamp

import (
	"time"

	"github.com/contoso/shoes/internal/ratelimit"
	"github.com/contoso/shoes/internal/shop"
)

// admission protects the write paths in a launch spike and against a
// flood: each user gets a token bucket for orders, one for comments and
// one for ratings, and the stamp as a whole a bounded number of orders in
// flight. Over a limit the answer is 429 (KindTooMany, which the problem
// writer answers with Retry-After), never an unbounded queue. The buckets
// live in bounded tables (ratelimit.Limiter), so a flood of users costs
// neither unbounded memory nor a scan per request.
type admission struct {
	orders, comments, ratings *ratelimit.Limiter
	slots                     chan struct{}
}

func newAdmission(cfg Config) *admission {
	return &admission{
		orders:   ratelimit.New(ratelimit.Config{Rate: cfg.OrderRate, Burst: cfg.OrderBurst}),
		comments: ratelimit.New(ratelimit.Config{Rate: cfg.CommentRate, Burst: cfg.CommentBurst}),
		ratings:  ratelimit.New(ratelimit.Config{Rate: cfg.RatingRate, Burst: cfg.RatingBurst}),
		slots:    make(chan struct{}, cfg.OrderConcurrency),
	}
}

// order takes a slot for user's order, or refuses it. The caller must call
// release when the order is done.
func (a *admission) order(user string, now time.Time) (release func(), err error) {
	if err := perUser(a.orders, "orders", user, now); err != nil {
		return nil, err
	}
	select {
	case a.slots <- struct{}{}:
		return func() { <-a.slots }, nil
	default:
		return nil, shop.Errorf(shop.KindTooMany, "", "the store is busy; retry in a second")
	}
}

// comment admits or refuses one of user's comments.
func (a *admission) comment(user string, now time.Time) error {
	return perUser(a.comments, "comments", user, now)
}

// rating admits or refuses one of user's ratings.
func (a *admission) rating(user string, now time.Time) error {
	return perUser(a.ratings, "ratings", user, now)
}

// perUser takes one of user's tokens from l, or refuses the request with
// 429; what names the writes counted.
func perUser(l *ratelimit.Limiter, what, user string, now time.Time) error {
	if !l.Allow(user, now) {
		return shop.Errorf(shop.KindTooMany, "", "too many %s from this user; retry in a second", what)
	}
	return nil
}
