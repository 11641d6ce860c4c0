package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ProbeRead proves the store answers a read in this region: a direct get
// of the region's probe key, answered by any replica. A missing key is a
// good answer.
func (s *Store) ProbeRead(ctx context.Context, region string) error {
	_, err := s.health.Get(ctx, "probe."+region)
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
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
// message on subject.
func (s *Store) leaderGetLast(ctx context.Context, stream, subject string) (uint64, []byte, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": subject})
	msg, err := s.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, req)
	if err != nil {
		return 0, nil, err
	}
	var resp struct {
		Message *struct {
			Seq  uint64 `json:"seq"`
			Data []byte `json:"data"`
		} `json:"message"`
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, nil, fmt.Errorf("decode message get: %w", err)
	}
	if resp.Error != nil {
		return 0, nil, fmt.Errorf("message get: %d %s", resp.Error.Code, resp.Error.Description)
	}
	if resp.Message == nil {
		return 0, nil, errors.New("message get: empty answer")
	}
	return resp.Message.Seq, resp.Message.Data, nil
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
			MaxDeliver:        5,
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
	// Handlers finish with their own deadline even after ctx is cancelled,
	// so a shutdown drains in-flight work instead of failing it.
	hctx := context.WithoutCancel(ctx)
	handle := func(msg jetstream.Msg) {
		ctx, cancel := context.WithTimeout(hctx, 30*time.Second)
		defer cancel()
		var err error
		subj := msg.Subject()
		switch {
		case len(subj) > len(subjectComment) && subj[:len(subjectComment)] == subjectComment:
			err = h.Comment(ctx, msg.Data())
		case len(subj) > len(subjectRating) && subj[:len(subjectRating)] == subjectRating:
			err = h.Rating(ctx, msg.Data())
		case len(subj) > len(subjectCanary) && subj[:len(subjectCanary)] == subjectCanary:
			err = h.Canary(ctx, msg.Data())
		default:
			err = fmt.Errorf("unknown subject %q", subj)
		}
		switch {
		case err == nil:
			if aerr := msg.DoubleAck(ctx); aerr != nil {
				s.log.Warn("ack failed; the message will be redelivered", "subject", subj, "error", aerr)
			}
		case poisoned(err):
			s.log.Error("dropping a message that can never be processed", "subject", subj, "error", err)
			_ = msg.Term()
		default:
			s.log.Warn("processing failed; redelivering", "subject", subj, "error", err)
			_ = msg.NakWithDelay(time.Second)
		}
	}
	sharedCtx, err := shared.Consume(handle, jetstream.PullMaxMessages(64), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		return fmt.Errorf("process writes: consume: %w", err)
	}
	canaryCtx, err := canary.Consume(handle, jetstream.PullMaxMessages(4), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		sharedCtx.Stop()
		return fmt.Errorf("process writes: consume canaries: %w", err)
	}
	<-ctx.Done()
	s.drain(sharedCtx, canaryCtx)
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
