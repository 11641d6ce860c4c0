package fleet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/chaos"
	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/fleet"
	"github.com/contoso/shoes/internal/shop"
)

// bins is the directory of the binaries TestMain builds once: contoso,
// nats-server and toxiproxy-server.
var bins string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fleet-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		// Static, as a release binary is: the release test packs this
		// very binary into an image.
		if _, err := deploytest.BuildCommand(ctx, dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := fleet.Build(ctx, "", dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		bins = dir
		// Built beside the others; run in turn with them.
		return deploytest.RunInTurn(m)
	}()
	os.Exit(code)
}

// modelRoot is the name of the health model's root in the model every
// test fleet's operations plane is given: the built-in one, renamed, so
// that a test can tell the model was passed on to the plane's process.
const modelRoot = "Contoso Shoes, many processes"

// startFleet starts a fleet of regions (none: the three default ones) for
// a test and stops it when the test ends.
func startFleet(t *testing.T, regions ...string) *fleet.Fleet {
	t.Helper()
	builtIn, err := os.ReadFile(filepath.Join("..", "healthmodel", "model.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(t.TempDir(), "model.yaml")
	if err := os.WriteFile(model, bytes.Replace(builtIn, []byte("name: Contoso Shoes\n"), []byte("name: "+modelRoot+"\n"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f, err := fleet.Start(ctx, fleet.Config{
		Regions: regions, DataDir: t.TempDir(), BinDir: bins, Contoso: filepath.Join(bins, "contoso"),
		OpsTrustLoopback: true, RegistryInsecure: true, HealthModel: model,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			dumpLogs(t, f.DataDir())
		}
	})
	return f
}

// dumpLogs prints the end of every process's log, for a failed test.
func dumpLogs(t *testing.T, dir string) {
	logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		t.Logf("=== %s\n%s", filepath.Base(l), b)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// client is how the tests reach the fleet: every request is bounded.
var client = &http.Client{Timeout: time.Minute}

type answer struct {
	status int
	header http.Header
	body   []byte
	err    error
}

// send sends one request through the fleet's dispatcher as a client of
// region.
func send(f *fleet.Fleet, region, method, path, token, key string, body any) answer {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, f.EdgeURL()+path, rd)
	if err != nil {
		return answer{err: err}
	}
	if region != "" {
		req.Header.Set("X-Client-Region", region)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

func (a answer) String() string {
	if a.err != nil {
		return a.err.Error()
	}
	return fmt.Sprintf("%d %s", a.status, bytes.TrimSpace(a.body))
}

func token(t *testing.T, f *fleet.Fleet, sub string, admin bool) string {
	t.Helper()
	tok, err := f.Issuer().Mint(sub, admin, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// eventually polls cond every 100 ms (each round is requests to the
// fleet's processes) until it returns nil or within passes.
func eventually(t *testing.T, within time.Duration, cond func() error) {
	t.Helper()
	deploytest.EventuallyEvery(t, within, 100*time.Millisecond, cond)
}

type order struct {
	ID     string           `json:"id"`
	Status shop.OrderStatus `json:"status"`
	Reason string           `json:"reason"`
}

// placed is an accepted order and its buyer's token.
type placed struct {
	id, token string
}

// placeOrder places an idempotent order of one unit of sku as a client of
// region.
func placeOrder(f *fleet.Fleet, region, tok, key, sku string) (answer, order) {
	a := send(f, region, http.MethodPost, "/api/orders", tok, key, map[string]any{"items": []shop.Line{{SKU: sku, Quantity: 1}}})
	var o order
	if a.err == nil && a.status < 300 {
		_ = json.Unmarshal(a.body, &o)
	}
	return a, o
}

// waitFinal polls every order through the dispatcher until each is
// confirmed or rejected, and returns them.
func waitFinal(t *testing.T, f *fleet.Fleet, orders []placed, within time.Duration) map[string]order {
	t.Helper()
	final := map[string]order{}
	eventually(t, within, func() error {
		for _, p := range orders {
			if _, ok := final[p.id]; ok {
				continue
			}
			a := send(f, "", http.MethodGet, "/api/orders/"+p.id, p.token, "", nil)
			if a.err != nil || a.status != http.StatusOK {
				return fmt.Errorf("order %s: %s", p.id, a)
			}
			var o order
			if err := json.Unmarshal(a.body, &o); err != nil {
				return err
			}
			if o.Status.Final() {
				final[p.id] = o
			}
		}
		if len(final) < len(orders) {
			return fmt.Errorf("%d of %d orders final", len(final), len(orders))
		}
		return nil
	})
	return final
}

func alive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

var regions = []string{"westeurope", "northeurope", "eastus"}

func TestFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole fleet of processes")
	}
	f := startFleet(t)
	product := shop.SeedCatalog()[0]

	t.Run("EveryRegionReadsAndOrdersThroughTheDispatcher", func(t *testing.T) {
		for region, pids := range f.Processes() {
			for part, pid := range pids {
				if !alive(pid) {
					t.Errorf("%s %s: process %d is not running", region, part, pid)
				}
			}
		}
		var orders []placed
		for i, region := range regions {
			a := send(f, region, http.MethodGet, "/api/products/"+product.ID, "", "", nil)
			if a.err != nil || a.status != http.StatusOK {
				t.Fatalf("%s: GET product = %s", region, a)
			}
			if pop, served := a.header.Get("X-Edge-Pop"), a.header.Get("X-Served-Region"); pop != region || served != region {
				t.Errorf("%s: served by POP %q, stamp region %q; want both %s", region, pop, served, region)
			}
			tok := token(t, f, "buyer-"+region, false)
			sku := shop.SKU(product.ID, product.Sizes[i])
			a, o := placeOrder(f, region, tok, "first-"+region, sku)
			if a.err != nil || a.status != http.StatusAccepted || o.ID == "" {
				t.Fatalf("%s: POST order = %s", region, a)
			}
			orders = append(orders, placed{o.ID, tok})
		}
		for id, o := range waitFinal(t, f, orders, time.Minute) {
			if o.Status != shop.OrderConfirmed {
				t.Errorf("order %s ended %s %q", id, o.Status, o.Reason)
			}
		}
	})

	t.Run("TheOperationsPlaneJudgesTheModelItWasGiven", func(t *testing.T) {
		var root struct{ Name string }
		if err := getJSON(f.OpsURL()+"/ops/health", token(t, f, "ops", true), &root); err != nil || root.Name != modelRoot {
			t.Fatalf("/ops/health's root is named %q (%v); want %q, from the fleet's Config.HealthModel", root.Name, err, modelRoot)
		}
	})
	t.Run("OneOrderIsOneTraceAcrossTheProcesses", func(t *testing.T) { testOrderTrace(t, f) })
	t.Run("RegionOutageIsInvisibleToClients", func(t *testing.T) { testRegionOutage(t, f) })
	t.Run("LinkCutBreaksTheRouteAndHealRestoresIt", func(t *testing.T) { testLinkCut(t, f) })
	t.Run("ChaosActsOnTheProcesses", func(t *testing.T) { testChaosTarget(t, f) })
	t.Run("OneProcessAndManyAreJudgedAlike", func(t *testing.T) { testSameJudgement(t, f) })
	// Last: it replaces every stamp process.
	t.Run("ReleaseOfAnImageReplacesEveryStampProcess", func(t *testing.T) { testImageRelease(t, f) })
}

// traffic is the continuous load of the outage test: per region, reads
// and idempotent orders through the dispatcher, every answer checked.
type traffic struct {
	f    *fleet.Fleet
	sku  string
	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	failures []string
	orders   []placed
	reads    int
	served   map[string]map[string]int // client region → POP → answers
}

// run sends region's traffic until tr.stop closes. It runs in a
// goroutine: every failure goes to tr.failures, for the test to report.
func (tr *traffic) run(region string) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-tr.stop:
			return
		case <-tick.C:
		}
		if i%4 == 3 {
			user := fmt.Sprintf("outage-%s-%d", region, i)
			tok, err := tr.f.Issuer().Mint(user, false, time.Hour, time.Now())
			if err != nil {
				tr.mu.Lock()
				tr.failures = append(tr.failures, fmt.Sprintf("%s mint a token: %v", region, err))
				tr.mu.Unlock()
				continue
			}
			a, o := placeOrder(tr.f, region, tok, "order-"+user, tr.sku)
			tr.mu.Lock()
			// 202 for the order just accepted; 200 when the dispatcher sent
			// it again (same Idempotency-Key) after its POP died and the
			// first attempt's order was already processed: the API answers
			// a replay of a final order with 200 and the order.
			if a.err != nil || (a.status != http.StatusAccepted && a.status != http.StatusOK) || o.ID == "" {
				tr.failures = append(tr.failures, fmt.Sprintf("%s POST order: %s", region, a))
			} else {
				tr.orders = append(tr.orders, placed{o.ID, tok})
			}
			tr.mu.Unlock()
			continue
		}
		a := send(tr.f, region, http.MethodGet, "/api/products/"+shop.SeedCatalog()[1].ID, "", "", nil)
		tr.mu.Lock()
		if a.err != nil || a.status != http.StatusOK {
			tr.failures = append(tr.failures, fmt.Sprintf("%s GET product: %s", region, a))
		} else {
			tr.reads++
			if tr.served[region] == nil {
				tr.served[region] = map[string]int{}
			}
			tr.served[region][a.header.Get("X-Edge-Pop")]++
		}
		tr.mu.Unlock()
	}
}

// judgement samples the operations plane's health model during an outage
// of westeurope: when it first finds westeurope unhealthy, and every
// sample that finds a surviving region anything but healthy.
type judgement struct {
	mu        sync.Mutex
	killed    time.Time
	unhealthy time.Time
	survivors []string
	samples   int
}

func (j *judgement) mark() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.killed = time.Now()
}

// unhealthyAfter is how long after the kill westeurope was first found
// unhealthy; 0: not yet.
func (j *judgement) unhealthyAfter() time.Duration {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.unhealthy.IsZero() {
		return 0
	}
	return j.unhealthy.Sub(j.killed)
}

func (j *judgement) sample(ctx context.Context, f *fleet.Fleet, admin string) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		tree := healthTree(f, admin)
		j.mu.Lock()
		if tree != nil {
			j.samples++
			if !j.killed.IsZero() && j.unhealthy.IsZero() && tree["region.westeurope"].State == "unhealthy" {
				j.unhealthy = time.Now()
			}
			for _, r := range []string{"region.northeurope", "region.eastus"} {
				if st := tree[r].State; st != "healthy" {
					j.survivors = append(j.survivors, fmt.Sprintf("%s %s at %s (%s)", r, st, time.Since(j.killed).Round(100*time.Millisecond), cause(tree, r)))
				}
			}
		}
		j.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// healthStates is every entity's state in GET $OPS/ops/health; nil when
// the plane does not answer.
func healthStates(f *fleet.Fleet, admin string) map[string]string {
	tree := healthTree(f, admin)
	if tree == nil {
		return nil
	}
	out := make(map[string]string, len(tree))
	for id, n := range tree {
		out[id] = n.State
	}
	return out
}

// entity is one node of GET $OPS/ops/health, its children by id.
type entity struct {
	State, Reason string
	children      []string
}

// healthTree is every entity in GET $OPS/ops/health by id; nil when the
// plane does not answer.
func healthTree(f *fleet.Fleet, admin string) map[string]entity {
	type node struct {
		ID, State, Reason string
		Children          []*node
	}
	var root node
	if err := getJSON(f.OpsURL()+"/ops/health", admin, &root); err != nil {
		return nil
	}
	out := map[string]entity{}
	var walk func(*node)
	walk = func(n *node) {
		e := entity{State: n.State, Reason: n.Reason}
		for _, c := range n.Children {
			e.children = append(e.children, c.ID)
			walk(c)
		}
		out[n.ID] = e
	}
	walk(&root)
	return out
}

// cause follows id's children in its own state down to the leaves and
// says what each of those leaves reports: why id is in its state.
func cause(tree map[string]entity, id string) string {
	var leaves []string
	var down func(string)
	down = func(id string) {
		e := tree[id]
		found := false
		for _, c := range e.children {
			if tree[c].State == e.State {
				found = true
				down(c)
			}
		}
		if !found {
			leaves = append(leaves, fmt.Sprintf("%s: %s", id, e.Reason))
		}
	}
	down(id)
	return strings.Join(leaves, "; ")
}

// regionState is one entity's state in the operations plane.
func regionState(f *fleet.Fleet, admin, id string) string {
	if st, ok := healthStates(f, admin)[id]; ok {
		return st
	}
	return "absent"
}

func testRegionOutage(t *testing.T, f *fleet.Fleet) {
	p := shop.SeedCatalog()[1]
	sku := shop.SKU(p.ID, p.Sizes[0])
	const stock = 1000
	admin := token(t, f, "ops", true)
	if a := send(f, "", http.MethodPut, "/api/inventory/"+sku, admin, "", map[string]int{"stock": stock}); a.err != nil || a.status != http.StatusOK {
		t.Fatalf("set stock: %s", a)
	}
	tr := &traffic{f: f, sku: sku, stop: make(chan struct{}), served: map[string]map[string]int{}}
	for _, region := range regions {
		tr.wg.Go(func() { tr.run(region) })
	}
	stopped := false
	stop := func() {
		if !stopped {
			close(tr.stop)
			tr.wg.Wait()
			stopped = true
		}
	}
	defer stop()
	count := func() (int, int) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return tr.reads, len(tr.orders)
	}
	eventually(t, 30*time.Second, func() error {
		if r, o := count(); r < 20 || o < 6 {
			return fmt.Errorf("%d reads, %d orders before the outage", r, o)
		}
		return nil
	})
	// Steady state first: the operations plane finds every region healthy
	// (the model's hysteresis takes a few evaluations after the start).
	eventually(t, time.Minute, func() error {
		for _, r := range regions {
			if st := regionState(f, admin, "region."+r); st != "healthy" {
				return fmt.Errorf("region.%s is %s before the outage", r, st)
			}
		}
		return nil
	})
	// The operations plane's view while westeurope is down, sampled.
	judged := &judgement{}
	sampleCtx, stopSampling := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	go func() { defer close(sampled); judged.sample(sampleCtx, f, admin) }()
	before := f.Processes()["westeurope"]
	judged.mark()
	if err := f.KillRegion("westeurope"); err != nil {
		t.Fatal(err)
	}
	for part, pid := range before {
		if alive(pid) {
			t.Errorf("westeurope %s (pid %d) still runs after KillRegion", part, pid)
		}
	}
	r0, o0 := count()
	eventually(t, time.Minute, func() error { // the outage lasts a while under load
		if r, o := count(); r < r0+60 || o < o0+20 {
			return fmt.Errorf("%d reads, %d orders during the outage", r-r0, o-o0)
		}
		return nil
	})
	eventually(t, 10*time.Second, func() error { // within 10 s of the kill, at most a little later here
		if judged.unhealthyAfter() == 0 {
			return errors.New("westeurope not yet unhealthy in the operations plane")
		}
		return nil
	})
	stopSampling()
	<-sampled
	if d := judged.unhealthyAfter(); d > 10*time.Second {
		t.Errorf("westeurope unhealthy in GET $OPS/ops/health %s after the kill, want within 10 s", d)
	}
	if len(judged.survivors) > 0 {
		t.Errorf("surviving regions were not healthy in the operations plane during the outage, %d times; the first and the last:\n%s\n%s",
			len(judged.survivors), judged.survivors[0], judged.survivors[len(judged.survivors)-1])
	}
	t.Logf("operations plane: westeurope unhealthy %s after the kill; %d samples", judged.unhealthyAfter(), judged.samples)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := f.ReviveRegion(ctx, "westeurope"); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, func() error {
		a := send(f, "westeurope", http.MethodGet, "/api/products/"+p.ID, "", "", nil)
		if a.err != nil || a.status != http.StatusOK {
			return fmt.Errorf("westeurope client: %s", a)
		}
		if pop, served := a.header.Get("X-Edge-Pop"), a.header.Get("X-Served-Region"); pop != "westeurope" || served != "westeurope" {
			return fmt.Errorf("westeurope client served by POP %q, stamp region %q", pop, served)
		}
		return nil
	})
	eventually(t, time.Minute, func() error {
		if st := regionState(f, admin, "region.westeurope"); st != "healthy" {
			return fmt.Errorf("westeurope is %s in the operations plane after its processes restarted", st)
		}
		return nil
	})
	stop()
	tr.mu.Lock()
	failures, orders := tr.failures, tr.orders
	t.Logf("%d reads, %d orders; answers by client region and POP: %v", tr.reads, len(orders), tr.served)
	tr.mu.Unlock()
	if len(failures) > 0 {
		t.Fatalf("%d requests failed during the outage, e.g.:\n%s", len(failures), strings.Join(failures[:min(len(failures), 10)], "\n"))
	}
	if tr.served["westeurope"]["westeurope"] == 0 || tr.served["westeurope"]["northeurope"] == 0 {
		t.Errorf("westeurope clients were served by %v: want their own POP and, during the outage, northeurope's", tr.served["westeurope"])
	}
	confirmed := 0
	for id, o := range waitFinal(t, f, orders, 2*time.Minute) {
		switch o.Status {
		case shop.OrderConfirmed:
			confirmed++
		default:
			t.Errorf("order %s ended %s %q", id, o.Status, o.Reason)
		}
	}
	// Each buyer placed one order (one Idempotency-Key): the store holds
	// exactly that one, so no retry made a second, and the id the buyer
	// was given reads as it. That id is normally the order's own; a retry
	// that crossed the region kill while ORDERS elected a leader may have
	// been queued again in another region's intake stream, and then the
	// processor kept one of the two and recorded the other as its
	// duplicate (docs/architecture.md, "A replay": the residual window).
	renamed := 0
	for _, p := range orders {
		a := send(f, "", http.MethodGet, "/api/orders?limit=10", p.token, "", nil)
		var list struct{ Items []order }
		if a.err != nil || a.status != http.StatusOK || json.Unmarshal(a.body, &list) != nil {
			t.Fatalf("list orders: %s", a)
		}
		if len(list.Items) != 1 {
			t.Errorf("a buyer who placed order %s once holds %d orders: %+v", p.id, len(list.Items), list.Items)
			continue
		}
		if list.Items[0].ID == p.id {
			continue
		}
		g := send(f, "", http.MethodGet, "/api/orders/"+p.id, p.token, "", nil)
		var got order
		if g.err != nil || g.status != http.StatusOK || json.Unmarshal(g.body, &got) != nil || got.ID != list.Items[0].ID {
			t.Errorf("a buyer was given order %s and holds %s, but reading %s answers %s", p.id, list.Items[0].ID, p.id, g)
			continue
		}
		renamed++
	}
	t.Logf("%d of %d orders were replayed across the election and read as the order kept", renamed, len(orders))
	// Every order is final; the holds of the last ones are released
	// right after.
	eventually(t, 30*time.Second, func() error {
		var st struct{ Available, Held int }
		a := send(f, "", http.MethodGet, "/api/inventory/"+sku, admin, "", nil)
		if a.err != nil || a.status != http.StatusOK {
			return fmt.Errorf("stock: %s", a)
		}
		if err := json.Unmarshal(a.body, &st); err != nil {
			return err
		}
		if st.Available != stock-confirmed || st.Held != 0 {
			return fmt.Errorf("stock after %d confirmed orders = %+v; want %d available, none held", confirmed, st, stock-confirmed)
		}
		return nil
	})
}

// routedTo reports whether region's store server has a route to server,
// from its monitoring port.
func routedTo(f *fleet.Fleet, region, server string) (bool, error) {
	var rz struct {
		Routes []struct {
			RemoteName string `json:"remote_name"`
		} `json:"routes"`
	}
	if err := getJSON(f.MonitorURL(region)+"/routez", "", &rz); err != nil {
		return false, err
	}
	for _, r := range rz.Routes {
		if r.RemoteName == server {
			return true, nil
		}
	}
	return false, nil
}

// getJSON GETs url (with a bearer token unless empty) and decodes a 200
// answer.
func getJSON(url, tok string, v any) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %s %s", url, resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// route waits until region's store server's route to server is up (want)
// or gone.
func route(t *testing.T, f *fleet.Fleet, region, server string, want bool, within time.Duration) {
	t.Helper()
	eventually(t, within, func() error {
		ok, err := routedTo(f, region, server)
		if err == nil && ok != want {
			err = fmt.Errorf("%s routed to %s: %v, want %v", region, server, ok, want)
		}
		return err
	})
}

func inject(t *testing.T, c *chaos.Chaos, fault, target string, params map[string]string) chaos.Active {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, err := c.Inject(ctx, chaos.Spec{Fault: fault, Target: target, Duration: chaos.Duration(10 * time.Minute), Params: params})
	if err != nil {
		t.Fatalf("inject %s on %s: %v", fault, target, err)
	}
	return a
}

func heal(t *testing.T, c *chaos.Chaos, a chaos.Active) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	healed, err := c.Heal(ctx, a.ID)
	if err != nil || healed.Error != "" {
		t.Fatalf("heal %s: %v %s", a.ID, err, healed.Error)
	}
}

func newChaos(t *testing.T, f *fleet.Fleet) *chaos.Chaos {
	c, err := chaos.New(chaos.Config{Target: f.Target()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

func testLinkCut(t *testing.T, f *fleet.Fleet) {
	c := newChaos(t, f)
	route(t, f, "northeurope", "eastus", true, time.Minute)
	cut := inject(t, c, chaos.FaultPartition, "northeurope-eastus", nil)
	route(t, f, "northeurope", "eastus", false, 30*time.Second)
	route(t, f, "eastus", "northeurope", false, 30*time.Second)
	// The other links still carry their routes.
	route(t, f, "northeurope", "westeurope", true, time.Second)
	route(t, f, "eastus", "westeurope", true, time.Second)
	heal(t, c, cut)
	route(t, f, "northeurope", "eastus", true, time.Minute)
	route(t, f, "eastus", "northeurope", true, time.Minute)
}

// edgeRTT is the round trip the POP of region measures to the first stamp
// of stampRegion, in milliseconds.
func edgeRTT(f *fleet.Fleet, tok, region, stampRegion string) (float64, error) {
	var st struct {
		POPs []struct {
			Stamps []struct {
				Region  string  `json:"region"`
				RTTMs   float64 `json:"rttMs"`
				Reached bool    `json:"reached"`
			} `json:"stamps"`
		} `json:"pops"`
	}
	if err := getJSON(f.POPOps()[region]+"/ops/edge", tok, &st); err != nil {
		return 0, err
	}
	for _, p := range st.POPs {
		for _, s := range p.Stamps {
			if s.Region == stampRegion && s.Reached {
				return s.RTTMs, nil
			}
		}
	}
	return 0, fmt.Errorf("POP %s has reached no stamp of %s", region, stampRegion)
}

func testChaosTarget(t *testing.T, f *fleet.Fleet) {
	c := newChaos(t, f)
	admin := token(t, f, "ops", true)

	t.Run("LinkLatency", func(t *testing.T) {
		slow := inject(t, c, chaos.FaultLinkLatency, "westeurope-northeurope", map[string]string{"latency": "150ms"})
		eventually(t, 30*time.Second, func() error { // within the POP's 500 ms probe timeout
			if rtt, err := edgeRTT(f, admin, "westeurope", "northeurope"); err != nil || rtt < 250 {
				return fmt.Errorf("rtt %.1f ms, %v; want about 300", rtt, err)
			}
			return nil
		})
		heal(t, c, slow)
		eventually(t, 30*time.Second, func() error {
			if rtt, err := edgeRTT(f, admin, "westeurope", "northeurope"); err != nil || rtt > 100 {
				return fmt.Errorf("rtt %.1f ms, %v; want about 20", rtt, err)
			}
			return nil
		})
	})

	t.Run("StoreNodeLoss", func(t *testing.T) {
		pid := f.Processes()["eastus"]["store"]
		loss := inject(t, c, chaos.FaultStoreNodeLoss, "eastus", nil)
		if alive(pid) {
			t.Fatalf("eastus store server %d still runs", pid)
		}
		route(t, f, "westeurope", "eastus", false, 30*time.Second)
		heal(t, c, loss)
		if p := f.Processes()["eastus"]["store"]; !alive(p) || p == pid {
			t.Fatalf("eastus store server after the heal: pid %d (was %d)", p, pid)
		}
		route(t, f, "westeurope", "eastus", true, time.Minute)
	})

	t.Run("SecretStoreOutage", func(t *testing.T) {
		status := func() error { // 401 without a token: the store answers
			resp, err := client.Get(f.ServiceURLs()["secrets"] + "/v1/status")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				return fmt.Errorf("secret store answered %s", resp.Status)
			}
			return nil
		}
		if err := status(); err != nil {
			t.Fatal(err)
		}
		out := inject(t, c, chaos.FaultSecretStoreOutage, chaos.GlobalTarget, nil)
		if status() == nil {
			t.Fatal("the secret store answers during its outage")
		}
		heal(t, c, out)
		if err := status(); err != nil {
			t.Fatalf("after the heal: %v", err)
		}
	})

	t.Run("PartnerSlow", func(t *testing.T) {
		mode := func() string {
			var m struct{ Mode string }
			if err := getJSON(f.ServiceURLs()["partner"]+"/v1/mode", "", &m); err != nil {
				return err.Error()
			}
			return m.Mode
		}
		slow := inject(t, c, chaos.FaultPartnerSlow, chaos.GlobalTarget, map[string]string{"delay": "2s"})
		if m := mode(); m != chaos.PartnerSlow {
			t.Fatalf("partner mode %q during partner-slow", m)
		}
		heal(t, c, slow)
		if m := mode(); m != chaos.PartnerUp {
			t.Fatalf("partner mode %q after the heal", m)
		}
	})

	t.Run("StampDrain", func(t *testing.T) {
		drained := func() bool {
			var d struct{ Drained bool }
			if err := getJSON(f.Regions()["northeurope"]+"/ops/drain", admin, &d); err != nil {
				t.Fatal(err)
			}
			return d.Drained
		}
		drain := inject(t, c, chaos.FaultStampDrain, "northeurope", nil)
		if !drained() {
			t.Fatal("northeurope's stamp is not drained")
		}
		heal(t, c, drain)
		if drained() {
			t.Fatal("northeurope's stamp is still drained after the heal")
		}
	})

	t.Run("InstanceKill", func(t *testing.T) {
		pid := f.Processes()["eastus"]["stamp"]
		kill := inject(t, c, chaos.FaultInstanceKill, "eastus", nil)
		if alive(pid) {
			t.Fatalf("eastus stamp %d still runs", pid)
		}
		if id := kill.Params["instance"]; !strings.HasPrefix(id, "eastus.") {
			t.Errorf("killed instance %q, want its registry id eastus.<instance>", id)
		}
		heal(t, c, kill) // the instance again, on its port: every POP reaches it as before
		if p := f.Processes()["eastus"]["stamp"]; !alive(p) || p == pid {
			t.Fatalf("no replacement stamp after the heal (killed %d): %v", pid, f.Processes()["eastus"])
		}
		eventually(t, time.Minute, func() error {
			a := send(f, "eastus", http.MethodGet, "/api/products", "", "", nil)
			if a.err != nil || a.status != http.StatusOK || a.header.Get("X-Served-Region") != "eastus" {
				return fmt.Errorf("eastus client: %s (stamp region %q)", a, a.header.Get("X-Served-Region"))
			}
			return nil
		})
	})
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// zombie reports whether pid has exited and waits for its parent to reap
// it (a child of an up that was itself killed is reaped by init).
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return strings.HasPrefix(rest, "Z")
}
