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
	if !a.orders.Allow(user, now) {
		return nil, shop.Errorf(shop.KindTooMany, "", "too many orders from this user; retry in a second")
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
	if !a.comments.Allow(user, now) {
		return shop.Errorf(shop.KindTooMany, "", "too many comments from this user; retry in a second")
	}
	return nil
}

// rating admits or refuses one of user's ratings.
func (a *admission) rating(user string, now time.Time) error {
	if !a.ratings.Allow(user, now) {
		return shop.Errorf(shop.KindTooMany, "", "too many ratings from this user; retry in a second")
	}
	return nil
}
