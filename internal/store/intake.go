package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso/shoes/internal/shop"
)

// Each data region has its own intake stream, INTAKE_<region>, on
// intake.<region>.<user key>.<order id>, which the region's stamps keep led
// from their region. An order accepted in a region is one quorum write to
// that region's stream: a lost region elects leaders for its own intake
// only, and the surviving regions' checkouts never wait for that election.
// The order processors of every region share one consumer on each intake
// stream, as on ORDERS, which still takes the orders of a store client
// that has no intake stream (a deployment provisioned without regions) and
// the orders queued again by SubmitOrder.
const (
	intakePrefix  = "INTAKE_"
	subjectIntake = "intake"
)

// IntakeStream names region's intake stream.
func IntakeStream(region string) string { return intakePrefix + region }

// intakeSubject is the subject of an order accepted in region.
func intakeSubject(region, userKey, id string) string {
	return subjectIntake + "." + region + "." + userKey + "." + id
}

// validRegion reports whether region can name a stream and a subject
// token.
func validRegion(region string) error {
	if region == "" || strings.ContainsAny(region, ".*> \t\r\n/\\") {
		return fmt.Errorf("region %q cannot name an intake stream", region)
	}
	return nil
}

// IntakeAsset declares region's intake stream: ORDERS' limits (but half
// its size: it holds only the orders a region accepts while ORDERS has no
// leader) and duplicate window on the region's subjects, with the
// processors' shared consumer.
func IntakeAsset(region string) Asset {
	i := slices.IndexFunc(assets, func(a Asset) bool { return a.Name == StreamOrders })
	a := assets[i]
	a.Name = IntakeStream(region)
	a.Description = "orders accepted in " + region + ", waiting for the order processors; led from " + region
	a.MaxBytes /= 2
	a.Subjects = []string{subjectIntake + "." + region + ".>"}
	a.queue = workQueue{ConsumerOrders, a.queue.description, a.Subjects}
	return a
}

// intakes holds the intake streams a store client knows: its own region's
// (nil without one: its orders go to ORDERS) and every region's, found
// by listing.
type intakes struct {
	own jetstream.Stream

	// silent is the breaker: set from a missed hedge until the probe
	// that runs meanwhile finds ORDERS' leader again, it keeps orders
	// off ORDERS; latency feeds the hedge (publishOrder).
	silent  atomic.Bool
	latency latencies

	mu     sync.Mutex
	all    map[string]jetstream.Stream // by stream name
	listed time.Time                   // the last listing, failed or not
	known  bool                        // a listing has succeeded
}

// intakeRelist is how often the list of intake streams is read again;
// intakeRetry, how soon a client that has never listed them tries again
// after a failed listing.
const (
	intakeRelist = 10 * time.Second
	intakeRetry  = time.Second
)

// openIntake finds the intake stream of the client's region (Config.Region)
// when it has one: Open never declares one (Provision does, for
// Config.Regions); without it, the client's orders go to ORDERS.
func (s *Store) openIntake(ctx context.Context) error {
	if s.cfg.Region == "" {
		return nil
	}
	st, err := s.js.Stream(ctx, IntakeStream(s.cfg.Region))
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		s.log.Info("no intake stream for this region; orders go to the shared queue", "stream", IntakeStream(s.cfg.Region))
		return nil
	case err != nil:
		return fmt.Errorf("intake stream %s: %w", IntakeStream(s.cfg.Region), err)
	}
	s.intake.own = st
	return nil
}

// intakeStreams is every intake stream, listed at most every intakeRelist
// (a failed listing keeps the last list as long), sorted by name. complete
// says a listing has succeeded: until one has (the meta leader being
// elected when the client opened), the list may lack streams that exist,
// and a failed listing is tried again after intakeRetry.
func (s *Store) intakeStreams(ctx context.Context) (_ []jetstream.Stream, complete bool) {
	in := &s.intake
	in.mu.Lock()
	defer in.mu.Unlock()
	if time.Since(in.listed) >= intakeRelist || (!in.known && time.Since(in.listed) >= intakeRetry) {
		lctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
		names := s.js.StreamNames(lctx, jetstream.WithStreamListSubject(subjectIntake+".>"))
		found := map[string]bool{}
		for name := range names.Name() {
			found[name] = true
		}
		cancel()
		if names.Err() == nil {
			in.known = true
			if in.all == nil {
				in.all = map[string]jetstream.Stream{}
			}
			for name := range found {
				if _, ok := in.all[name]; ok || !strings.HasPrefix(name, intakePrefix) {
					continue
				}
				gctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
				st, err := s.js.Stream(gctx, name)
				cancel()
				if err == nil {
					in.all[name] = st
				}
			}
		}
		// A failed listing (the meta leader being elected) keeps the last
		// list until the next: callers do not each wait for it meanwhile.
		in.listed = time.Now()
	}
	out := make([]jetstream.Stream, 0, len(in.all))
	for _, name := range slices.Sorted(maps.Keys(in.all)) {
		out = append(out, in.all[name])
	}
	return out, in.known
}

// orderQueues is where a user's queued order may be, in the order to look:
// the client's own intake stream (its leader in this region), ORDERS, then
// every other region's intake stream; with the subject of order id of
// userKey (userKey "*": any user's) on each. err, when the intake streams
// have never been listed, is what to answer instead of "not found" once
// none of the queues has the order: they may not be all.
func (s *Store) orderQueues(ctx context.Context, userKey, id string) (_ []queueSpot, err error) {
	var out []queueSpot
	if s.intake.own != nil {
		out = append(out, queueSpot{s.intake.own, intakeSubject(s.cfg.Region, userKey, id)})
	}
	out = append(out, queueSpot{s.orderQ, orderSubject(userKey, id)})
	streams, complete := s.intakeStreams(ctx)
	if !complete {
		err = shop.Unavailable("orders cannot be read right now", errors.New("the intake streams of the other regions could not be listed yet"))
	}
	for _, st := range streams {
		name := st.CachedInfo().Config.Name
		if s.intake.own != nil && name == IntakeStream(s.cfg.Region) {
			continue
		}
		out = append(out, queueSpot{st, intakeSubject(strings.TrimPrefix(name, intakePrefix), userKey, id)})
	}
	return out, err
}

// queueSpot is a queue and the subject to look for there.
type queueSpot struct {
	stream  jetstream.Stream
	subject string
}

// KeepIntakeLeader keeps the leader of the client's intake stream in its
// region until ctx is done: at once, then every interval, when another
// region leads it (an election after a lost server moves it, and it never
// moves back by itself), it asks the leader to step down with a placement
// in this region (the servers are named after their region). Nothing to do
// without an intake stream.
func (s *Store) KeepIntakeLeader(ctx context.Context, interval time.Duration) {
	if s.intake.own == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if moved, err := s.placeIntakeLeader(ctx); err != nil {
			s.log.Debug("intake leader not placed", "error", err)
		} else if moved != "" {
			s.log.Info("intake leader moved to this region", "stream", IntakeStream(s.cfg.Region), "from", moved)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// placeIntakeLeader asks for the intake stream's leader in this region if
// another region leads it; moved names that region, empty when nothing was
// asked.
func (s *Store) placeIntakeLeader(ctx context.Context) (moved string, err error) {
	ictx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	defer cancel()
	info, err := s.intake.own.Info(ictx)
	if err != nil {
		return "", fmt.Errorf("intake stream info: %w", err)
	}
	leader := ""
	if info.Cluster != nil {
		leader = info.Cluster.Leader
	}
	if leader == "" || leader == s.cfg.Region {
		return "", nil // leaderless (an election runs) or here already
	}
	var answer struct {
		apiAnswer
		Success bool `json:"success"`
	}
	req := map[string]any{"placement": map[string]any{"tags": []string{"region:" + s.cfg.Region}}}
	if err := s.askAPI(ictx, "STREAM.LEADER.STEPDOWN."+IntakeStream(s.cfg.Region), req, &answer); err != nil {
		return "", fmt.Errorf("intake leader step-down: %w", err)
	}
	if !answer.Success {
		return "", errors.New("intake leader step-down: refused")
	}
	return leader, nil
}

// publishOrder publishes an order message of in (data b) and says on which
// queue the acknowledgement came. A client without an intake stream
// publishes to ORDERS within the write budget. One with an intake stream
// hedges: it publishes to ORDERS and, when ORDERS has not acknowledged
// within the hedge (twice the 90th percentile of its recent
// acknowledgements, between minHedge and maxHedge), to its own intake
// stream as well, and takes the first acknowledgement; the other publish
// is given up. A refusal (ORDERS full, say) before the hedge is the
// answer: only silence sends the order elsewhere. A missed hedge opens the
// breaker, which sends every order straight to the intake stream until a
// probe finds ORDERS' leader again: in an election only the orders in
// flight at its start wait out the hedge, and they wait no longer than the
// hedge and one intake write. Both messages of an order whose ORDERS
// publish was late but not lost carry the same order id and request: the
// processor takes the second as a redelivery of the first.
func (s *Store) publishOrder(ctx context.Context, in Intake, b []byte) (*jetstream.PubAck, jetstream.Stream, error) {
	userKey := shop.UserKey(in.Order.User)
	msg := func(subject string) *nats.Msg {
		m := &nats.Msg{Subject: subject, Data: b, Header: nats.Header{}}
		m.Header.Set(headerIdempotencyID, in.IdempotencyID)
		m.Header.Set(headerRequestHash, in.RequestHash)
		return m
	}
	shared := orderSubject(userKey, in.Order.ID)
	if s.intake.own == nil {
		ack, err := s.publishMsg(ctx, msg(shared), in.IdempotencyID)
		return ack, s.orderQ, err
	}
	own := intakeSubject(s.cfg.Region, userKey, in.Order.ID)
	if s.intake.silent.Load() {
		ack, err := s.publishMsg(ctx, msg(own), in.IdempotencyID)
		return ack, s.intake.own, err
	}

	type answer struct {
		ack   *jetstream.PubAck
		queue jetstream.Stream
		err   error
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel() // the publish not acknowledged first is given up
	answers := make(chan answer, 2)
	publish := func(subject string, queue jetstream.Stream) {
		go func() {
			ack, err := s.publishMsg(pctx, msg(subject), in.IdempotencyID)
			answers <- answer{ack, queue, err}
		}()
	}
	start := time.Now()
	publish(shared, s.orderQ)
	hedge := time.NewTimer(s.intake.latency.current())
	defer hedge.Stop()
	hedged, pending := false, 1
	var refusal, last error
	for {
		select {
		case <-hedge.C:
			if !hedged {
				hedged, pending = true, pending+1
				s.intake.latency.missed()
				s.sharedQueueSilent(fmt.Errorf("no acknowledgement within %s", time.Since(start).Round(time.Millisecond)))
				publish(own, s.intake.own)
			}
		case a := <-answers:
			pending--
			if a.err == nil {
				if a.queue == s.orderQ && !hedged {
					s.intake.latency.add(time.Since(start))
				}
				return a.ack, a.queue, nil
			}
			switch {
			case ctx.Err() != nil:
				return nil, nil, a.err
			case permanent(a.err) && !hedged:
				// The store said no (full, say): not a leader being
				// elected, and no reason to try elsewhere.
				return nil, nil, a.err
			case permanent(a.err):
				refusal = a.err
			default:
				last = a.err
			}
			if !hedged && a.queue == s.orderQ {
				hedged, pending = true, pending+1
				s.sharedQueueSilent(a.err)
				publish(own, s.intake.own)
			}
			if pending == 0 {
				return nil, nil, cmp.Or(refusal, last)
			}
		}
	}
}

// sharedQueueSilent opens the breaker after ORDERS missed the hedge, and
// starts the probe that closes it: ORDERS' stream info, asked every
// breakerProbe until its leader answers. So no order waits for ORDERS
// again before it has a leader: orders never try it blindly while the
// breaker is open.
func (s *Store) sharedQueueSilent(err error) {
	in := &s.intake
	if !in.silent.CompareAndSwap(false, true) {
		return // open, with its probe running
	}
	s.log.Warn("the shared order queue does not answer; orders go to the region's intake stream until it does", "stream", IntakeStream(s.cfg.Region), "error", err)
	go func() {
		defer in.silent.Store(false)
		t := time.NewTicker(breakerProbe)
		defer t.Stop()
		for range t.C {
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.OpTimeout)
			_, err := s.orderQ.Info(ctx)
			cancel()
			if err == nil {
				s.log.Info("the shared order queue answers again; orders go to it")
				return
			}
			if s.nc.IsClosed() {
				return // the client is closed: nothing to probe for
			}
		}
	}()
}

// Bounds of the hedge on ORDERS; the hedge of a client that has no
// acknowledgement from ORDERS yet (firstHedge: enough for a quorum across
// an ocean on a loaded machine, and short enough that the first orders of
// a stamp that took no order before ORDERS lost its leader, such as the
// clients of a lost region sent to it, do not hold their callers for
// seconds); and how often the open breaker asks whether ORDERS has a
// leader again.
const (
	minHedge     = 100 * time.Millisecond
	maxHedge     = 2 * time.Second
	firstHedge   = 250 * time.Millisecond
	breakerProbe = 250 * time.Millisecond
)

// latencies are the last acknowledgement times of ORDERS publishes, and
// the hedge they make, kept up to date as each is added so that an order
// only reads it.
type latencies struct {
	mu    sync.Mutex
	ring  [64]time.Duration
	n     int          // how many were added, ever
	hedge atomic.Int64 // a time.Duration; zero: none added yet
}

// add records d and recomputes the hedge: twice the 90th percentile of
// the recent latencies, within [minHedge, maxHedge].
func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ring[l.n%len(l.ring)] = d
	l.n++
	var sorted [len(l.ring)]time.Duration
	k := copy(sorted[:], l.ring[:min(l.n, len(l.ring))])
	slices.Sort(sorted[:k])
	l.hedge.Store(int64(min(max(2*sorted[k*9/10], minHedge), maxHedge)))
}

// missed records an acknowledgement that did not come within the hedge
// as one that took the hedge: it took at least that, and leaving it out
// would keep the hedge below what ORDERS now takes, so that a loaded
// store got a second write for ever more of its orders. Counted, the
// hedge doubles while more than a tenth of the orders miss it.
func (l *latencies) missed() { l.add(l.current()) }

// current is the hedge; firstHedge before any latency was added.
func (l *latencies) current() time.Duration {
	if h := l.hedge.Load(); h > 0 {
		return time.Duration(h)
	}
	return firstHedge
}
