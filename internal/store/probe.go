package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso/shoes/internal/shop"
)

// ProbeRead proves the store answers a read in this region: a direct get
// of the region's probe key, answered by any replica (readLocal, so a
// replica on a server just cut off, which the engine still hands some
// gets to, does not fail the probe and take the stamp out of rotation
// while the others answer). A missing key is a good answer.
func (s *Store) ProbeRead(ctx context.Context, region string) error {
	_, err := s.readLocal(ctx, s.health, "probe."+region)
	if err != nil && !errors.Is(err, errNotFound) {
		return fmt.Errorf("probe read: %w", err)
	}
	return nil
}

// ProbeWrite proves the store takes a replicated write: it writes nonce
// under the region's probe key (the health bucket expires keys after a
// minute) and reads it back from the stream leader, which, unlike a direct
// get, always sees the write it just acknowledged.
func (s *Store) ProbeWrite(ctx context.Context, region, nonce string) error {
	key := "probe." + region
	rev, err := s.health.Put(ctx, key, []byte(nonce))
	if err != nil {
		return fmt.Errorf("probe write: %w", err)
	}
	seq, data, err := s.leaderGetLast(ctx, "KV_"+BucketHealth, "$KV."+BucketHealth+"."+key)
	if err != nil {
		return fmt.Errorf("probe read-back: %w", err)
	}
	if seq < rev || (seq == rev && string(data) != nonce) {
		return fmt.Errorf("probe read-back: got revision %d %q, wrote revision %d %q", seq, data, rev, nonce)
	}
	return nil
}

// leaderGetLast asks the stream leader (not any replica) for the last
// message on subject. It returns jetstream.ErrMsgNotFound when there is none.
func (s *Store) leaderGetLast(ctx context.Context, stream, subject string) (uint64, []byte, error) {
	seq, data, _, err := s.leaderGet(ctx, stream, subject)
	return seq, data, err
}

func (s *Store) leaderGet(ctx context.Context, stream, subject string) (seq uint64, data, hdrs []byte, err error) {
	var answer struct {
		apiAnswer
		Message *struct {
			Seq  uint64 `json:"seq"`
			Data []byte `json:"data"`
			Hdrs []byte `json:"hdrs"`
		} `json:"message"`
	}
	err = s.askAPI(ctx, "STREAM.MSG.GET."+stream, map[string]string{"last_by_subj": subject}, &answer)
	var apiErr *apiError
	switch {
	case errors.As(err, &apiErr) && apiErr.ErrCode == int(jetstream.JSErrCodeMessageNotFound):
		return 0, nil, nil, jetstream.ErrMsgNotFound
	case err != nil:
		return 0, nil, nil, fmt.Errorf("message get: %w", err)
	case answer.Message == nil:
		return 0, nil, nil, errors.New("message get: empty answer")
	}
	return answer.Message.Seq, answer.Message.Data, answer.Message.Hdrs, nil
}

// apiAnswer is what every answer of the JetStream API may carry: an
// error. An answer type embeds it for askAPI.
type apiAnswer struct {
	Error *apiError `json:"error"`
}

func (a *apiAnswer) failure() *apiError { return a.Error }

// apiError is the error of a JetStream API answer.
type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.Code, e.Description) }

// askAPI sends req, as JSON, to the JetStream API's subject (what follows
// $JS.API.) and decodes the answer into answer; an answer that carries an
// error returns it, an *apiError. For the requests the jetstream package
// does not make as the store needs them (from the leader, with a filter
// or a placement).
func (s *Store) askAPI(ctx context.Context, subject string, req any, answer interface{ failure() *apiError }) error {
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode %s: %w", subject, err)
	}
	msg, err := s.nc.RequestWithContext(ctx, jsAPI+subject, b)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(msg.Data, answer); err != nil {
		return fmt.Errorf("decode %s: %w", subject, err)
	}
	if e := answer.failure(); e != nil {
		return e
	}
	return nil
}

// WriteHandler handles the messages of the async write stream. A nil error
// acknowledges the message; an error of kind Invalid drops it (it can never
// succeed); any other error redelivers it after a back-off.
type WriteHandler interface {
	Comment(ctx context.Context, data []byte) error
	Rating(ctx context.Context, data []byte) error
	Canary(ctx context.Context, data []byte) error
}

// ProcessWrites runs region's background processing until ctx is done: it
// pulls from the consumer that all regions share for comments and ratings,
// and from region's own canary consumer, and hands each message to h.
// Poisoned decides which errors drop a message instead of redelivering it.
func (s *Store) ProcessWrites(ctx context.Context, region string, h WriteHandler, poisoned func(error) bool) error {
	canaryName := "canary-" + region
	var canary jetstream.Consumer
	_, err := retrying(ctx, s, func(ctx context.Context) (jetstream.Consumer, error) {
		c, err := s.writes.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable:           canaryName,
			Description:       "end-to-end probe of region " + region + "'s processor",
			FilterSubject:     subjectCanary + region,
			AckPolicy:         jetstream.AckExplicitPolicy,
			AckWait:           10 * time.Second,
			MaxDeliver:        -1, // a work queue keeps what is never acknowledged: retry until done (the processor drops stale canaries)
			InactiveThreshold: time.Hour,
			Replicas:          s.cfg.Replicas,
		})
		canary = c
		return c, err
	})
	if err != nil {
		return fmt.Errorf("process writes: canary consumer: %w", err)
	}
	shared, err := retrying(ctx, s, func(ctx context.Context) (jetstream.Consumer, error) {
		return s.writes.Consumer(ctx, ConsumerWrites)
	})
	if err != nil {
		return fmt.Errorf("process writes: %w", err)
	}
	dispatch := func(ctx context.Context, msg jetstream.Msg) error {
		subj := msg.Subject()
		switch {
		case strings.HasPrefix(subj, subjectComment):
			return h.Comment(ctx, msg.Data())
		case strings.HasPrefix(subj, subjectRating):
			return h.Rating(ctx, msg.Data())
		case strings.HasPrefix(subj, subjectCanary):
			return h.Canary(ctx, msg.Data())
		}
		return fmt.Errorf("unknown subject %q: %w", subj, errUnknownSubject)
	}
	return s.consume(ctx, poisoned, 8, dispatch, shared, canary)
}

var errUnknownSubject = errors.New("no handler")

// ackWait is how long a processor may hold a message without word before
// the server gives it to another processor; progressEvery is how often a
// busy processor says it is still working; newerRetry is how long a
// message this release cannot read (a newer release wrote it) waits before
// it is offered again, to whichever processor comes first.
const (
	ackWait       = 10 * time.Second
	progressEvery = 3 * time.Second
	newerRetry    = 5 * time.Second
)

// ProcessOrders runs order processing until ctx is done: it pulls from the
// order consumers that all regions share, on ORDERS and on every region's
// intake stream, and hands each order, with the request that made it, to
// h, with at most concurrency orders in flight per queue. An intake
// stream declared later (a region provisioned while this runs) is taken
// up within intakeRelist: the consumers are drained and pulled from again
// with it. Acknowledgement works as in ProcessWrites.
func (s *Store) ProcessOrders(ctx context.Context, h func(ctx context.Context, in Intake) error, poisoned func(error) bool, concurrency int) error {
	handle := func(ctx context.Context, msg jetstream.Msg) error {
		in, err := decodeIntake(msg.Data(), msg.Headers())
		if errors.Is(err, ErrSchema) {
			return newerRecord(err)
		}
		if err != nil {
			return shop.Invalid("", "undecodable order: %v", err)
		}
		return h(ctx, in)
	}
	for {
		intake, complete := s.intakeStreams(ctx) // one found later is pulled from then (below)
		queues := append([]jetstream.Stream{s.orderQ}, intake...)
		relist := intakeRelist
		if !complete {
			relist = intakeRetry
		}
		var consumers []jetstream.Consumer
		for _, q := range queues {
			c, err := retrying(ctx, s, func(ctx context.Context) (jetstream.Consumer, error) {
				return q.Consumer(ctx, ConsumerOrders)
			})
			if err != nil {
				return fmt.Errorf("process orders: %w", err)
			}
			consumers = append(consumers, c)
		}
		qctx, stop := context.WithCancel(ctx)
		go func() { // a new intake stream: pull from it too
			defer stop()
			t := time.NewTicker(relist)
			defer t.Stop()
			for {
				select {
				case <-qctx.Done():
					return
				case <-t.C:
					if now, _ := s.intakeStreams(qctx); len(now) != len(queues)-1 {
						return
					}
				}
			}
		}()
		err := s.consume(qctx, poisoned, concurrency, handle, consumers...)
		stop()
		if err != nil || ctx.Err() != nil {
			return err
		}
	}
}

// consume pulls from consumers until ctx is done, running handle for each
// message with at most concurrency in flight per consumer: a nil error
// acknowledges it, a poisoned error drops it, any other error redelivers it
// after a back-off. A message written with a newer schema than this
// release reads (ErrSchema) is neither acknowledged nor dropped: it stays
// on the queue, offered again after newerRetry, for a processor of the
// newer release. Handlers finish with their own deadline after ctx is
// cancelled, so a shutdown drains in-flight work instead of failing it.
func (s *Store) consume(ctx context.Context, poisoned func(error) bool, concurrency int, handle func(context.Context, jetstream.Msg) error, consumers ...jetstream.Consumer) error {
	hctx := context.WithoutCancel(ctx)
	slots := make(chan struct{}, concurrency*len(consumers))
	var inflight sync.WaitGroup
	run := func(msg jetstream.Msg) {
		slots <- struct{}{} // blocks the delivery loop: bounded, never queued without limit
		inflight.Go(func() {
			defer func() { <-slots }()
			ctx, cancel := context.WithTimeout(hctx, 30*time.Second)
			defer cancel()
			// Tell the server the message is still being worked on, so a
			// short ack wait can hand the work of a lost processor to
			// another region quickly without redelivering slow work.
			working := make(chan struct{})
			go func() {
				t := time.NewTicker(progressEvery)
				defer t.Stop()
				for {
					select {
					case <-working:
						return
					case <-t.C:
						_ = msg.InProgress()
					}
				}
			}()
			subj := msg.Subject()
			end := func(error) {}
			if s.cfg.Process != nil {
				ctx, end = s.cfg.Process(ctx, subj, msg.Headers())
			}
			err := handle(ctx, msg)
			end(err)
			close(working)
			switch {
			case err == nil:
				if aerr := msg.DoubleAck(ctx); aerr != nil {
					s.log.WarnContext(ctx, "ack failed; the message will be redelivered", "subject", subj, "error", aerr)
				}
			case errors.Is(err, ErrSchema):
				s.log.WarnContext(ctx, "leaving a message written by a newer release for a processor that reads it", "subject", subj, "error", err, "retry_in", newerRetry)
				_ = msg.NakWithDelay(newerRetry)
			case poisoned(err) || errors.Is(err, errUnknownSubject):
				s.log.ErrorContext(ctx, "dropping a message that can never be processed", "subject", subj, "error", err)
				_ = msg.Term()
			default:
				s.log.WarnContext(ctx, "processing failed; redelivering", "subject", subj, "error", err)
				_ = msg.NakWithDelay(time.Second)
			}
		})
	}
	var ccs []jetstream.ConsumeContext
	for _, c := range consumers {
		cc, err := c.Consume(run, jetstream.PullMaxMessages(2*concurrency), jetstream.PullExpiry(5*time.Second))
		if err != nil {
			for _, cc := range ccs {
				cc.Stop()
			}
			return fmt.Errorf("consume: %w", err)
		}
		ccs = append(ccs, cc)
	}
	<-ctx.Done()
	s.drain(ccs...)
	inflight.Wait()
	return nil
}

// drain stops the consumers and waits, for a bounded time, for the messages
// they already handed out to be handled. Messages not finished are not
// acknowledged and come back to another processor after the ack wait. With
// the connection down there is nothing to drain through: stop at once.
func (s *Store) drain(ccs ...jetstream.ConsumeContext) {
	if !s.nc.IsConnected() {
		for _, cc := range ccs {
			cc.Stop()
		}
		return
	}
	for _, cc := range ccs {
		cc.Drain()
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, cc := range ccs {
		select {
		case <-cc.Closed():
		case <-time.After(time.Until(deadline)):
			cc.Stop()
		}
	}
}

// QueueAge reports the backlog of a work queue that every stamp's
// processors share (StreamWrites: comments and ratings; StreamOrders:
// orders, on ORDERS and every intake stream): how many messages they have
// yet to finish and how long the oldest has waited. Finished messages
// leave a work-queue stream, so the first message on the queue's subjects
// is the oldest unfinished one. The regions' canaries share the writes
// stream but not its queue: a canary that waits is its region's trouble,
// never a comment waiting.
func (s *Store) QueueAge(ctx context.Context, stream string) (age time.Duration, pending uint64, err error) {
	switch stream {
	case StreamOrders:
		// An intake stream that does not answer (its region lost, its
		// leader being elected) is left out: what it holds waits for that
		// election whatever the processors do, and the other queues'
		// backlog is what they can work on.
		age, pending, err = queueAge(ctx, s.orderQ, orderQueue)
		intake, _ := s.intakeStreams(ctx)
		for _, st := range intake {
			if err != nil {
				break
			}
			cfg := st.CachedInfo().Config
			if a, p, ierr := queueAge(ctx, st, workQueue{ConsumerOrders, "", cfg.Subjects}); ierr == nil {
				age, pending = max(age, a), pending+p
			}
		}
		return age, pending, err
	case StreamWrites:
		return queueAge(ctx, s.writes, writeQueue)
	}
	return 0, 0, fmt.Errorf("queue age: %q is not a work queue", stream)
}

// queueAge is QueueAge of one stream and its consumer.
func queueAge(ctx context.Context, st jetstream.Stream, q workQueue) (age time.Duration, pending uint64, err error) {
	name := st.CachedInfo().Config.Name
	c, err := st.Consumer(ctx, q.consumer)
	if err != nil {
		return 0, 0, fmt.Errorf("queue age %s: %w", name, err)
	}
	info := c.CachedInfo()
	if pending = info.NumPending + uint64(info.NumAckPending); pending == 0 {
		return 0, 0, nil
	}
	var oldest time.Time
	for _, subj := range q.subjects {
		m, err := st.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return 0, 0, fmt.Errorf("queue age %s: %w", name, err)
		}
		if oldest.IsZero() || m.Time.Before(oldest) {
			oldest = m.Time
		}
	}
	if oldest.IsZero() { // finished between the two questions
		return 0, pending, nil
	}
	return max(0, time.Since(oldest)), pending, nil
}
