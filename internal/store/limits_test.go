package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
)

// streamOf names the stream behind an asset: a bucket is KV_<name>.
func streamOf(a store.Asset) string {
	if a.Kind == store.AssetBucket {
		return "KV_" + a.Name
	}
	return a.Name
}

// undeclared lists how the live configuration of every asset differs from
// its declaration.
func undeclared(ctx context.Context, js jetstream.JetStream) []string {
	var diffs []string
	for _, a := range store.Assets() {
		st, err := js.Stream(ctx, streamOf(a))
		if err != nil {
			diffs = append(diffs, fmt.Sprintf("%s: %v", a.Name, err))
			continue
		}
		c := st.CachedInfo().Config
		age := a.MaxAge
		if a.Kind == store.AssetBucket {
			age = a.TTL
			if c.MaxMsgsPerSubject != int64(a.History) {
				diffs = append(diffs, fmt.Sprintf("%s: history %d, declared %d", a.Name, c.MaxMsgsPerSubject, a.History))
			}
		}
		if c.MaxBytes != a.MaxBytes || c.MaxMsgSize != a.MaxValueSize || c.MaxAge != age || c.Discard != a.Discard || c.Description != a.Description {
			diffs = append(diffs, fmt.Sprintf("%s: max bytes %d, max value %d, max age %s, discard %s, %q; declared %d, %d, %s, %s, %q",
				a.Name, c.MaxBytes, c.MaxMsgSize, c.MaxAge, c.Discard, c.Description, a.MaxBytes, a.MaxValueSize, age, a.Discard, a.Description))
		}
	}
	return diffs
}

func TestEveryAssetIsDeclaredWithLimits(t *testing.T) {
	names := map[string]bool{}
	for _, a := range store.Assets() {
		if names[a.Name] {
			t.Errorf("%s is declared twice", a.Name)
		}
		names[a.Name] = true
		if a.MaxBytes <= 0 || a.MaxValueSize <= 0 || a.Discard != jetstream.DiscardNew {
			t.Errorf("%s: max bytes %d, max value size %d, discard %s: every asset needs both limits and discard new", a.Name, a.MaxBytes, a.MaxValueSize, a.Discard)
		}
		if int64(a.MaxValueSize) > a.MaxBytes {
			t.Errorf("%s: one value (%d bytes) may be larger than the whole asset (%d)", a.Name, a.MaxValueSize, a.MaxBytes)
		}
	}
	// A fresh deployment gets every asset as declared.
	c := storetest.NewCluster(t, "a")
	_, nc := c.MustOpen(t, 0)
	js, _ := jetstream.New(nc)
	for _, d := range undeclared(t.Context(), js) {
		t.Error(d)
	}
}

// An old data directory holds assets created without limits. Open keeps
// them as they are (stamps only look assets up); Provision brings each to
// its declared configuration and keeps what it holds.
func TestProvisionBringsExistingAssetsToTheirDeclaredLimits(t *testing.T) {
	c := storetest.NewCluster(t, "a")
	nc, err := nats.Connect(c.Nodes[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	js, _ := jetstream.New(nc)
	// The assets as an earlier release declared them: no limits on the
	// buckets, the queues without a largest message.
	for _, a := range store.Assets() {
		switch a.Kind {
		case store.AssetBucket:
			if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: a.Name, History: 1, TTL: a.TTL, Storage: jetstream.FileStorage}); err != nil {
				t.Fatal(err)
			}
		case store.AssetQueue:
			q, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: a.Name, Subjects: a.Subjects, Retention: jetstream.WorkQueuePolicy,
				Storage: jetstream.FileStorage, MaxBytes: 1 << 30, Discard: jetstream.DiscardNew})
			if err != nil {
				t.Fatal(err)
			}
			consumer := map[string]string{store.StreamWrites: store.ConsumerWrites, store.StreamOrders: store.ConsumerOrders}[a.Name]
			if _, err := q.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: consumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second}); err != nil {
				t.Fatal(err)
			}
		}
	}
	comments, _ := js.KeyValue(ctx, store.BucketComments)
	if _, err := comments.Put(ctx, "p1.c1", []byte(`{"id":"c1"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Open(ctx, store.Config{Conn: nc, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	if diffs := undeclared(ctx, js); len(diffs) != len(store.Assets()) {
		t.Fatalf("Open changed existing assets; only these are as they were: %v", diffs)
	}
	for range 2 { // provisioning again changes nothing
		if _, err := store.Provision(ctx, store.Config{Conn: nc, Replicas: 1}); err != nil {
			t.Fatal(err)
		}
		for _, d := range undeclared(ctx, js) {
			t.Error(d)
		}
	}
	if e, err := comments.Get(ctx, "p1.c1"); err != nil || string(e.Value()) != `{"id":"c1"}` {
		t.Fatalf("a comment stored before provisioning: %v", err)
	}
	// The queues' consumers are declared too: the earlier 30 s ack wait is
	// the declared one now.
	for stream, name := range map[string]string{store.StreamWrites: store.ConsumerWrites, store.StreamOrders: store.ConsumerOrders} {
		cons, err := js.Consumer(ctx, stream, name)
		if err != nil {
			t.Fatalf("consumer %s: %v", name, err)
		}
		if got := cons.CachedInfo().Config.AckWait; got != 10*time.Second {
			t.Errorf("consumer %s acks within %s after provisioning, want 10s", name, got)
		}
	}
}

// shrink sets the most an asset may hold, as if the declared limit had
// been reached.
func shrink(t *testing.T, js jetstream.JetStream, stream string, maxBytes int64) {
	t.Helper()
	st, err := js.Stream(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.MaxBytes = maxBytes
	if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
}

// wantFull checks that err is the clear answer to a write into a full
// asset, given before the test's context ran out (the write was refused,
// not retried until the write budget).
func wantFull(t *testing.T, ctx context.Context, what string, err error) {
	t.Helper()
	var se *shop.Error
	if !errors.As(err, &se) || se.Kind != shop.KindUnavailable || !strings.HasPrefix(se.Detail, "the store is full: ") {
		t.Fatalf("%s into a full asset = %v, want unavailable, %q...", what, err, "the store is full: ")
	}
	if ctx.Err() != nil {
		t.Fatalf("%s into a full asset was retried until the context ended", what)
	}
}

// A write into a full asset is refused at once with a clear error, and
// every write acknowledged before is still there: on one server, and on
// three, where the stream leader refuses the write before proposing it.
func TestAFullAssetRefusesWritesAndKeepsAcknowledgedOnes(t *testing.T) {
	for _, regions := range [][]string{{"a"}, {"a", "b", "c"}} {
		t.Run(fmt.Sprintf("servers=%d", len(regions)), func(t *testing.T) {
			fillAndRead(t, storetest.NewCluster(t, regions...))
		})
	}
}

func fillAndRead(t *testing.T, c *storetest.Cluster) {
	nc, err := nats.Connect(c.Nodes[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// A budget far longer than the test: a refusal retried like an
	// election would outlast the context.
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	st, err := store.Open(ctx, store.Config{Conn: nc, Replicas: len(c.Nodes), WriteBudget: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	shrink(t, js, "KV_"+store.BucketOrders, 4<<10)
	shrink(t, js, store.StreamWrites, 4<<10)
	shrink(t, js, "KV_"+store.BucketInventory, 1<<10)

	// Orders: a bucket.
	now := time.Now()
	var orders []shop.Order
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatal("100 orders of about 300 bytes fit in 4 KiB")
		}
		o := shop.Order{ID: shop.NewID(now.Add(time.Duration(i) * time.Millisecond)), User: "alice", Status: shop.OrderAccepted,
			Lines: []shop.Line{{SKU: "shoe-42", Quantity: 1}}, CreatedAt: now}
		if _, err := st.CreateOrder(ctx, o); err != nil {
			wantFull(t, ctx, "an order", err)
			break
		}
		orders = append(orders, o)
	}
	if len(orders) == 0 {
		t.Fatal("not one order fitted")
	}
	for _, o := range orders {
		if got, err := st.Order(ctx, shop.UserKey("alice"), o.ID); err != nil || got.ID != o.ID {
			t.Fatalf("acknowledged order %s after the bucket filled: %+v, %v", o.ID, got, err)
		}
	}
	t.Logf("%d orders fitted", len(orders))

	// Comments: a work queue no processor drains here.
	var comments []string
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatal("100 comments fitted in 4 KiB")
		}
		cm := shop.Comment{ID: shop.NewID(now.Add(time.Duration(i) * time.Millisecond)), ProductID: "p1", User: "u", Text: strings.Repeat("grip ", 40)}
		if err := st.SubmitComment(ctx, cm); err != nil {
			wantFull(t, ctx, "a comment", err)
			break
		}
		comments = append(comments, cm.ID)
	}
	info, err := js.Stream(ctx, store.StreamWrites)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().State.Msgs; len(comments) == 0 || got != uint64(len(comments)) {
		t.Fatalf("the queue holds %d messages after %d acknowledged comments", got, len(comments))
	}

	// Stock: the compare-and-set loop gives up at once too.
	err = nil
	for i := 0; err == nil; i++ {
		if i == 100 {
			t.Fatal("100 SKUs fitted in 1 KiB")
		}
		err = st.SetStock(ctx, fmt.Sprintf("shoe-%d", i), 5)
	}
	wantFull(t, ctx, "stock", err)

	// Other assets still take writes.
	if _, err := st.UpdateCart(ctx, shop.UserKey("alice"), func(c *shop.Cart) error { return c.SetItem("shoe-42", 1) }); err != nil {
		t.Fatalf("a cart while orders are full: %v", err)
	}
}

// TestDocsListTheDeclaredLimits keeps the "Store limits" table of the
// operations guide and the declared assets, an intake stream's included,
// in agreement.
func TestDocsListTheDeclaredLimits(t *testing.T) {
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Store limits\n")
	if !ok {
		t.Fatal(`docs/operations.md has no "## Store limits" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	documented := map[string]string{}
	for line := range strings.SplitSeq(section, "\n") {
		cells := strings.Split(strings.Trim(line, "| "), "|")
		if len(cells) < 9 || !strings.HasPrefix(strings.TrimSpace(cells[0]), "`") {
			continue
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		documented[strings.Trim(cells[0], "`")] = strings.Join(cells[1:8], " | ")
	}
	for _, a := range append(store.Assets(), store.IntakeAsset("<region>")) {
		history := "—"
		if a.Kind == store.AssetBucket {
			history = fmt.Sprint(a.History)
		}
		discard := map[jetstream.DiscardPolicy]string{jetstream.DiscardNew: "new", jetstream.DiscardOld: "old"}[a.Discard]
		want := strings.Join([]string{string(a.Kind), duration(a.TTL), history, size(a.MaxBytes), duration(a.MaxAge), size(int64(a.MaxValueSize)), discard}, " | ")
		if got, ok := documented[a.Name]; !ok {
			t.Errorf("docs list no limits for %s; want a row with %s", a.Name, want)
		} else if got != want {
			t.Errorf("docs list %s as\n\t%s\ndeclared\n\t%s", a.Name, got, want)
		}
		delete(documented, a.Name)
	}
	for name := range documented {
		t.Errorf("docs list %s, which is not declared", name)
	}
}

// size writes a byte count as the docs do: 64 MiB, 512 KiB, 2 GiB.
func size(n int64) string {
	for _, u := range []struct {
		unit string
		n    int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.n && n%u.n == 0 {
			return fmt.Sprintf("%d %s", n/u.n, u.unit)
		}
	}
	return fmt.Sprintf("%d B", n)
}

// duration writes a time limit as the docs do: 7 days, 24 h, 1 min, 5 s,
// or — for none.
func duration(d time.Duration) string {
	switch {
	case d == 0:
		return "—"
	case d >= 48*time.Hour && d%(24*time.Hour) == 0:
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%d h", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%d min", d/time.Minute)
	}
	return fmt.Sprintf("%d s", d/time.Second)
}
