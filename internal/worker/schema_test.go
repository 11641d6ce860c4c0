package worker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
	"github.com/contoso/shoes/internal/worker"
)

// logSink collects what the processors' goroutines log.
type logSink struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A processor of this release that takes a queued comment or order written
// with a newer schema neither processes it nor drops it: it leaves it on
// the queue for a processor of the newer release (redelivered after a
// delay, to whichever processor asks first) and logs why. After it has
// been handed each message twice and has stopped, both are still queued,
// and nothing was stored or sent to the partner; a comment of this
// release, meanwhile, went through.
func TestAMessageOfANewerSchemaStaysQueuedForANewerProcessor(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	ctx := t.Context()
	nc, err := nats.Connect(c.Nodes[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	var logs logSink
	st, err := store.Open(ctx, store.Config{Conn: nc, Replicas: 1, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	standIn, client := partnerStandIn(t)
	w := worker.New(worker.Config{Region: "westeurope", Store: st, Partner: client})

	const sku = "contoso-skyline-1-42"
	if err := st.SetStock(ctx, sku, 5); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	at := now.Format(time.RFC3339Nano)
	commentID, orderID := shop.NewID(now), shop.NewID(now)
	// Sound messages in every member this release knows: only their
	// version stops it.
	newer := map[string]string{
		"writes.comment.p1": fmt.Sprintf(`{"schema":%d,"id":%q,"productId":"p1","user":"u","text":"from the next release","createdAt":%q}`,
			store.SchemaComment+1, commentID, at),
		"orders.new": fmt.Sprintf(`{"schema":%d,"id":%q,"user":"alice","items":[{"sku":%q,"quantity":1}],"status":"accepted","acceptedIn":"westeurope","createdAt":%q,"updatedAt":%q}`,
			store.SchemaOrder+1, orderID, sku, at, at),
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for subject, doc := range newer {
		if _, err := js.Publish(ctx, subject, []byte(doc)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SubmitComment(ctx, shop.Comment{ID: shop.NewID(now), ProductID: "p2", User: "u", Text: "from this release", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(runCtx)
	}()
	queued := func(stream, subject string) uint64 {
		t.Helper()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Subjects[subject]
	}
	delivered := func(stream, consumer string) uint64 {
		t.Helper()
		c, err := js.Consumer(ctx, stream, consumer)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.Delivered.Consumer
	}
	// Deliveries: the comment of this release once and the newer one at
	// least twice; the newer order at least twice.
	deadline := time.Now().Add(30 * time.Second)
	for w.Processed() < 1 || delivered(store.StreamWrites, store.ConsumerWrites) < 3 || delivered(store.StreamOrders, store.ConsumerOrders) < 2 {
		if queued(store.StreamWrites, "writes.comment.p1") == 0 || queued(store.StreamOrders, "orders.new") == 0 {
			t.Fatal("a message of a newer schema left the queue")
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: %d processed; comment deliveries %d, order deliveries %d", w.Processed(),
				delivered(store.StreamWrites, store.ConsumerWrites), delivered(store.StreamOrders, store.ConsumerOrders))
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	<-done

	if n := queued(store.StreamWrites, "writes.comment.p1"); n != 1 {
		t.Errorf("%d newer comments queued after the processor stopped, want 1", n)
	}
	if n := queued(store.StreamOrders, "orders.new"); n != 1 {
		t.Errorf("%d newer orders queued after the processor stopped, want 1", n)
	}
	if n := queued(store.StreamWrites, "writes.comment.p2"); n != 0 {
		t.Errorf("the comment of this release is still queued (%d)", n)
	}
	comments, err := js.KeyValue(ctx, store.BucketComments)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comments.Get(ctx, "p1."+commentID); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("the newer comment was stored: %v", err)
	}
	if o, err := st.Order(ctx, shop.UserKey("alice"), orderID); shop.KindOf(err) != shop.KindNotFound {
		t.Errorf("the newer order was recorded: %+v, %v", o, err)
	}
	if got := standIn.Received(); len(got) != 0 {
		t.Errorf("the partner was told of %d orders, want none", len(got))
	}
	for _, want := range []string{
		"leaving a message written by a newer release",
		fmt.Sprintf("comment %s: written with schema %d, this release reads up to %d", commentID, store.SchemaComment+1, store.SchemaComment),
		fmt.Sprintf("order %s: written with schema %d, this release reads up to %d", orderID, store.SchemaOrder+1, store.SchemaOrder),
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, logs.String())
		}
	}
}
