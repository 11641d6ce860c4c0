// Package deploytest starts real deployments for tests: embedded JetStream
// servers clustered over simulated links, and real stamps on loopback.
package deploytest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso/shoes/internal/autoscale"
	"github.com/contoso/shoes/internal/deploy"
	"github.com/contoso/shoes/internal/healthmodel"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/netsim"
	"github.com/contoso/shoes/internal/poll"
	"github.com/contoso/shoes/internal/stamp"
	"github.com/contoso/shoes/internal/store"
)

// Options adjusts a test deployment.
type Options struct {
	DataDir string        // empty: a fresh t.TempDir()
	Latency bool          // simulate inter-region latency (off by default for speed)
	Probe   time.Duration // zero: 200 ms
	// SecretRefresh is the stamps' secret refresh interval; zero: 200 ms.
	SecretRefresh time.Duration
	// EdgeRate and EdgeBurst set the edge's per-client limit; zero: its defaults.
	EdgeRate  float64
	EdgeBurst int
	// EdgeNoRetry turns the edge's retry of idempotent requests off (a
	// guarantee broken on purpose).
	EdgeNoRetry bool
	// UnsafeBlindStockWrites makes the stamps write the inventory without
	// compare-and-set (a guarantee broken on purpose).
	UnsafeBlindStockWrites bool
	// StampFault is a defect every stamp injects from its start
	// (deploy.Config.StampFault); zero: none.
	StampFault stamp.Fault
	// OpsNeedToken makes the operations endpoints require an admin token
	// from loopback clients too (production mode).
	OpsNeedToken bool
	// TLS encrypts every hop with the deployment's own CA (deploy.Config.TLS).
	// CONTOSO_TEST_TLS=1 in the environment turns it on for every test
	// deployment, so the same tests prove the TLS path.
	TLS bool
	// Env is the deployment's environment (deploy.Config.Env); zero: dev.
	Env string
	// Instances is deploy.Config.Instances: stamp instances per region,
	// one per zone; zero: 1.
	Instances int
	// ReleaseStartTimeout is deploy.Config.ReleaseStartTimeout.
	ReleaseStartTimeout time.Duration
	// Pprof serves the Go runtime's profiles on the operations address
	// (deploy.Config.Pprof).
	Pprof bool
	// ScaleMax and Scaling are the autoscaler's (deploy.Config.ScaleMax
	// and Scaling); zero: the deployment's defaults.
	ScaleMax int
	Scaling  autoscale.Policy
	// HealthModel is the operations plane's health model
	// (deploy.Config.HealthModel); nil: the default.
	HealthModel *healthmodel.Model
	// NoTLS keeps plain HTTP whatever CONTOSO_TEST_TLS says: for tests that
	// drive a browser, which does not trust the deployment's CA.
	NoTLS bool
}

// MustStart starts a deployment of regions and stops it when the test ends.
// Logs go to the test log when CONTOSO_TEST_LOG is set.
func MustStart(tb testing.TB, opts Options, regions ...string) *deploy.Deployment {
	tb.Helper()
	d, err := Start(tb, opts, regions...)
	if err != nil {
		tb.Fatalf("start deployment: %v", err)
	}
	tb.Cleanup(func() {
		if err := d.Close(); err != nil {
			tb.Errorf("close deployment: %v", err)
		}
	})
	return d
}

// Start starts a deployment without registering its cleanup, for tests
// that stop and restart it themselves.
func Start(tb testing.TB, opts Options, regions ...string) (*deploy.Deployment, error) {
	tb.Helper()
	if opts.DataDir == "" {
		opts.DataDir = tb.TempDir()
	}
	if opts.Probe == 0 {
		opts.Probe = 200 * time.Millisecond
	}
	if opts.SecretRefresh == 0 {
		opts.SecretRefresh = 200 * time.Millisecond
	}
	var h slog.Handler = slog.DiscardHandler
	if os.Getenv("CONTOSO_TEST_LOG") != "" {
		h = slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	// Every test deployment also checks that each part's store user may
	// do everything the part does.
	// And a failed test shows the deployment's last errors (a 5xx and
	// why, a failed write), which are otherwise discarded.
	errs := &lastLines{max: 30}
	denied := &deniedCounter{Handler: h, n: new(atomic.Int64),
		errs: slog.NewTextHandler(errs, &slog.HandlerOptions{Level: slog.LevelError})}
	tb.Cleanup(func() {
		if n := denied.n.Load(); n > 0 {
			tb.Errorf("the store refused %d operations of the deployment's parts (%s); run with CONTOSO_TEST_LOG=1 to see them", n, deploy.LogPermissionDenied)
		}
		if tb.Failed() {
			if lines, total := errs.get(); total > 0 {
				tb.Logf("the deployment logged %d errors; the last %d:\n%s", total, len(lines), strings.Join(lines, ""))
			}
		}
	})
	log := slog.New(denied)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	d, err := deploy.Start(ctx, deploy.Config{
		Regions:                regions,
		DataDir:                opts.DataDir,
		Network:                netsim.Config{Off: !opts.Latency},
		ProbeInterval:          opts.Probe,
		HealthModel:            opts.HealthModel,
		Instances:              opts.Instances,
		ScaleMax:               opts.ScaleMax,
		Scaling:                opts.Scaling,
		SecretRefresh:          opts.SecretRefresh,
		EdgeClientRate:         opts.EdgeRate,
		EdgeClientBurst:        opts.EdgeBurst,
		OpsTrustLoopback:       !opts.OpsNeedToken,
		EdgeNoRetry:            opts.EdgeNoRetry,
		UnsafeBlindStockWrites: opts.UnsafeBlindStockWrites,
		StampFault:             opts.StampFault,
		Pprof:                  opts.Pprof,
		Env:                    opts.Env,
		ReleaseStartTimeout:    opts.ReleaseStartTimeout,
		TLS:                    (opts.TLS || os.Getenv("CONTOSO_TEST_TLS") == "1") && !opts.NoTLS,
		Logger:                 log,
	})
	if err == nil {
		deployments.Store(d, PlainClient(d).Transport)
		tb.Cleanup(func() { deployments.Delete(d) })
	}
	return d, err
}

// deployments are the running test deployments, whose stamps Send reaches
// with the edge credential, each with a transport that trusts its CA.
var deployments sync.Map // *deploy.Deployment -> http.RoundTripper

// Client is the HTTP client Send uses. Requests to a test deployment's
// stamp carry that deployment's edge credential, as if the edge had
// forwarded them, so tests can address one region's stamp directly; a test
// of the credential itself uses PlainClient. Requests to any part of a
// deployment trust its CA when it runs with TLS.
var Client = &http.Client{Transport: credentialTransport{}}

// PlainClient is a client of d that adds nothing to a request, but trusts
// d's CA.
func PlainClient(d *deploy.Deployment) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = d.ClientTLS()
	return &http.Client{Transport: tr}
}

type credentialTransport struct{}

func (credentialTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var rt http.RoundTripper = http.DefaultTransport
	deployments.Range(func(k, v any) bool {
		d := k.(*deploy.Deployment)
		stamp := slices.Contains(d.StampHosts(), req.URL.Host)
		if !stamp && !slices.Contains(d.Hosts(), req.URL.Host) {
			return true
		}
		rt = v.(http.RoundTripper)
		if stamp {
			req = req.Clone(req.Context())
			req.Header.Set(httpapi.HeaderEdgeCredential, d.EdgeCredential())
		}
		return false
	})
	return rt.RoundTrip(req)
}

// deniedCounter counts deploy.LogPermissionDenied records and hands
// every error record to errs as well as to the Handler.
type deniedCounter struct {
	slog.Handler
	n    *atomic.Int64
	errs slog.Handler
}

func (c *deniedCounter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError || c.Handler.Enabled(ctx, l)
}

func (c *deniedCounter) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == deploy.LogPermissionDenied {
		c.n.Add(1)
	}
	if r.Level >= slog.LevelError {
		_ = c.errs.Handle(ctx, r)
	}
	if !c.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return c.Handler.Handle(ctx, r)
}

func (c *deniedCounter) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &deniedCounter{Handler: c.Handler.WithAttrs(attrs), n: c.n, errs: c.errs.WithAttrs(attrs)}
}

func (c *deniedCounter) WithGroup(name string) slog.Handler {
	return &deniedCounter{Handler: c.Handler.WithGroup(name), n: c.n, errs: c.errs.WithGroup(name)}
}

// lastLines keeps the last max lines written to it, each cut to
// maxLine bytes, and counts them all.
type lastLines struct {
	max   int
	mu    sync.Mutex
	lines []string
	total int
}

const maxLine = 600

func (l *lastLines) Write(p []byte) (int, error) {
	line := string(p)
	if len(line) > maxLine {
		line = line[:maxLine] + "…\n"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total++
	if len(l.lines) == l.max {
		l.lines = append(l.lines[:0], l.lines[1:]...)
	}
	l.lines = append(l.lines, line)
	return len(p), nil
}

// get returns the lines kept, oldest first, and how many were written.
func (l *lastLines) get() ([]string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines), l.total
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(string(p))
	return len(p), nil
}

// Eventually polls cond every 20 ms until it returns nil or the deadline
// passes, then fails the test with cond's last error.
func Eventually(tb testing.TB, within time.Duration, cond func() error) {
	tb.Helper()
	EventuallyEvery(tb, within, 20*time.Millisecond, cond)
}

// EventuallyEvery is Eventually polling every every: for conditions that
// cost a round of requests each time they are asked.
func EventuallyEvery(tb testing.TB, within, every time.Duration, cond func() error) {
	tb.Helper()
	poll.Until(tb, within, every, cond)
}

// Response is an HTTP answer read whole.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v, failing the test when it does not decode.
func (r Response) JSON(tb testing.TB, v any) {
	tb.Helper()
	if err := r.Decode(v); err != nil {
		tb.Fatal(err)
	}
}

// Decode decodes the body into v: JSON for goroutines, which must not end
// the test.
func (r Response) Decode(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("decode %q: %w", r.Body, err)
	}
	return nil
}

// Body turns a test body into a reader: nil is no body, a string or
// []byte is sent as is, anything else is marshalled as JSON.
func Body(tb testing.TB, body any) io.Reader {
	tb.Helper()
	rd, err := encodeBody(body)
	if err != nil {
		tb.Fatal(err)
	}
	return rd
}

func encodeBody(body any) (io.Reader, error) {
	switch b := body.(type) {
	case nil:
		return nil, nil
	case string:
		return strings.NewReader(b), nil
	case []byte:
		return bytes.NewReader(b), nil
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("encode body: %w", err)
		}
		return bytes.NewReader(enc), nil
	}
}

// Do sends one request with an optional bearer token and body (see Body)
// and reads the answer.
func Do(tb testing.TB, method, url, token string, body any) Response {
	tb.Helper()
	return DoKeyed(tb, method, url, token, "", body)
}

// DoKeyed is Do with an Idempotency-Key header (none when key is empty).
func DoKeyed(tb testing.TB, method, url, token, key string, body any) Response {
	tb.Helper()
	req, err := NewRequest(method, url, token, key, body)
	if err != nil {
		tb.Fatal(err)
	}
	return Send(tb, req)
}

// NewRequest builds the request DoKeyed sends: an optional bearer token,
// Idempotency-Key and body (see Body, sent as JSON).
func NewRequest(method, url, token, key string, body any) (*http.Request, error) {
	rd, err := encodeBody(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return nil, fmt.Errorf("new request: %w", err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	return req, nil
}

// Send sends req and reads the answer whole.
func Send(tb testing.TB, req *http.Request) Response {
	tb.Helper()
	res, err := Exchange(req)
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

// Exchange is Send returning its error: for goroutines, which must not
// end the test.
func Exchange(req *http.Request) (Response, error) {
	resp, err := Client.Do(req)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: read body: %w", req.Method, req.URL, err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// StoreConn connects to region's store server as the store's
// administrator, for tests that look at or change the store directly; the
// connection closes when the test ends.
func StoreConn(tb testing.TB, d *deploy.Deployment, region string) *nats.Conn {
	tb.Helper()
	url, ok := d.ClientURL(region)
	if !ok {
		tb.Fatalf("no store server in region %s", region)
	}
	opts, err := d.StoreCredentials(store.RoleAdmin).Options()
	if err != nil {
		tb.Fatal(err)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		tb.Fatalf("connect to the store in %s: %v", region, err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// Token mints a development token of d's issuer.
func Token(tb testing.TB, d *deploy.Deployment, sub string, admin bool) string {
	tb.Helper()
	tok, err := NewToken(d, sub, admin)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// NewToken is Token returning its error: for goroutines, which must not
// end the test.
func NewToken(d *deploy.Deployment, sub string, admin bool) (string, error) {
	tok, err := d.Issuer().Mint(sub, admin, time.Hour, time.Now())
	if err != nil {
		return "", fmt.Errorf("mint a token for %s: %w", sub, err)
	}
	return tok, nil
}
