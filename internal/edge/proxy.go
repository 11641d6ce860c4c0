package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/telemetry"
)

// proxy forwards the public API: each request through its client's POP
// (which picks the stamp and hears how each attempt went) to a stamp,
// retried once elsewhere when it is idempotent. What it refuses without
// reaching a stamp is listed in the package documentation.
//
// Per request it allocates only what net/http's client needs (the
// stamp's request, its header map and contexts) and one attempt per try:
// routing reads the POP's last decision, the copy buffers are pooled, and
// headers are shared with the request and answer they come from, never
// copied value by value.
type proxy struct {
	e         *Edge
	transport http.RoundTripper // to the stamps, traced when telemetry is on; no redirects followed
	limits    *limiter
	// credential is Config.Credential as a header value, shared by every
	// request (the transport only reads it); nil: none.
	credential []string
	// buffers hold *[]byte of copyBufferSize: the buffer an answer is
	// copied to its client through, one per answer in flight.
	buffers sync.Pool
}

// copyBufferSize is the size of the buffers answers are copied through:
// io.Copy's own size, so that a stream's chunk reaches its client as
// one write.
const copyBufferSize = 32 << 10

// newTransport is the connection pool to the stamps: enough idle
// connections per stamp for a POP's concurrent requests (a load generator
// with 64 connections keeps 64 requests in flight), never compressing on
// its own (a client's Accept-Encoding passes through, and an answer's body
// reaches the client as the stamp sent it).
func newTransport(cfg Config) *http.Transport {
	return &http.Transport{
		MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute,
		ResponseHeaderTimeout: cfg.Timeout, DisableCompression: true,
		TLSClientConfig: cfg.StampTLS.Clone(), TLSHandshakeTimeout: 10 * time.Second,
		DialContext: cfg.DialContext,
	}
}

func newProxy(e *Edge, transport *http.Transport) *proxy {
	px := &proxy{
		e:         e,
		transport: e.cfg.Telemetry.Transport(transport, "stamp", "global"),
		limits:    newLimiter(e.cfg.ClientRate, e.cfg.ClientBurst, e.cfg.Now),
		buffers:   sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }},
	}
	if e.cfg.Credential != "" {
		px.credential = []string{e.cfg.Credential}
	}
	return px
}

// Handler serves the public API: each request through its client's POP to
// the chosen stamp, retried once elsewhere when it is idempotent. What it
// refuses without reaching a stamp is listed in the package documentation.
func (e *Edge) Handler() http.Handler {
	// Telemetry first, so that what the others log carries the trace.
	return httpapi.Chain(httpapi.Handle(e.log, e.proxy.serve),
		e.cfg.Telemetry.Middleware("edge", "global", httpapi.Flow), httpapi.RequestIDs, httpapi.Recover(e.log))
}

func (px *proxy) serve(w http.ResponseWriter, r *http.Request) error {
	e := px.e
	e.tel.route(r)
	if !px.limits.allow(clientKey(r)) {
		return shop.Errorf(shop.KindTooMany, "", "too many requests from this client; retry in a second")
	}
	if err := publicTarget(r); err != nil {
		return err
	}
	p, err := e.popFor(r)
	if err != nil {
		return err
	}
	p.inflight.Add(1)
	defer p.inflight.Add(-1)
	telemetry.SetRegion(r.Context(), p.region)
	w.Header()[HeaderEdgePop] = p.header
	retryable := r.Method == http.MethodGet || r.Method == http.MethodHead || r.Header.Get("Idempotency-Key") != ""
	body, err := readPayload(w, r, retryable)
	if err != nil {
		return err
	}
	primary, retry, failOpen := p.route()
	if failOpen {
		// Nothing is healthy: serve from the least-bad stamp rather than
		// fail every request, and say so.
		w.Header().Set(HeaderFailOpen, "true")
	}
	if primary.id == "" {
		return shop.Unavailable("no stamp can serve this request right now", errors.New("no routable stamp"))
	}
	resp, err := px.attempt(r, p, primary, body, false)
	f := blame(r, resp, err, body)
	if f == clientFault {
		closeBody(resp)
		return clientProblem(err, body)
	}
	if f != clientGone {
		e.report(r.Context(), p, primary.id, f == stampFault)
	}
	first := err
	retried := f == stampFault && retryable && !e.cfg.NoRetry && retry.id != ""
	if retried {
		closeBody(resp)
		rp, up := e.retryVia(r, p, retry)
		e.tel.retried(r.Context(), p.region)
		resp, err = px.attempt(r, rp, up, body, true)
		switch f = blame(r, resp, err, body); f {
		case clientFault:
			closeBody(resp)
			return clientProblem(err, body)
		case stampFault, noFault:
			e.report(r.Context(), rp, up.id, f == stampFault)
		}
	}
	if err != nil {
		why := "it " + unanswered(err)
		switch {
		case retried && first != nil:
			why = "it " + unanswered(first) + ", and the retry on another stamp " + unanswered(err)
		case retried:
			why = "the retry on another stamp " + unanswered(err)
		case !retryable:
			why += " (not retried: no Idempotency-Key)"
		case retry.id == "":
			why += " (no other stamp to retry on)"
		}
		return shop.Unavailable("the stamp did not answer: "+why, err)
	}
	defer resp.Body.Close()
	copyResponseHeaders(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	buf := px.buffers.Get().(*[]byte)
	defer px.buffers.Put(buf)
	if resp.ContentLength >= 0 {
		_, _ = io.CopyBuffer(w, resp.Body, *buf)
		return nil
	}
	// A response of unknown length may be a stream (events, a long
	// listing): each chunk goes to the client as it arrives.
	flush := http.NewResponseController(w)
	for {
		n, rerr := resp.Body.Read(*buf)
		if n > 0 {
			if _, werr := w.Write((*buf)[:n]); werr != nil {
				return nil
			}
			_ = flush.Flush()
		}
		if rerr != nil {
			return nil
		}
	}
}

// retryVia is where a retry goes: the stamp chosen with the first attempt,
// from the same POP, unless that POP closed meanwhile: then the POP that
// took its clients over picks.
func (e *Edge) retryVia(r *http.Request, p *pop, retry upstream) (*pop, upstream) {
	e.mu.Lock()
	_, open := e.pops[p.region]
	e.mu.Unlock()
	if open {
		return p, retry
	}
	np, err := e.popFor(r)
	if err != nil || np == p {
		return p, retry
	}
	primary, _, _ := np.route()
	return np, primary
}

// closeBody closes resp's body, if there is a response.
func closeBody(resp *http.Response) {
	if resp != nil {
		resp.Body.Close()
	}
}

// payload is a request body as the attempts send it: kept whole (bounded
// by httpapi.MaxBodyBytes) when the request may be retried, otherwise the
// client's stream passed through once, never held in memory.
type payload struct {
	buf    []byte
	stream *clientBody
	length int64 // of stream; -1: unknown
}

// clientErr is the error reading the client's stream gave, if any.
func (p payload) clientErr() error {
	if p.stream == nil {
		return nil
	}
	p.stream.mu.Lock()
	defer p.stream.mu.Unlock()
	return p.stream.err
}

// clientBody is a client's request body passed through to a stamp,
// remembering whether reading it failed (too long, or the client went
// away) so that the failure is not blamed on the stamp.
type clientBody struct {
	r   io.Reader
	mu  sync.Mutex // the transport may still be sending the body when the answer is in
	err error
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.mu.Lock()
		b.err = err
		b.mu.Unlock()
	}
	return n, err
}

// readPayload takes r's body for forwarding. A declared length over the
// limit is refused before any stamp is reached; a stream that turns out
// longer fails its attempt with *http.MaxBytesError.
func readPayload(w http.ResponseWriter, r *http.Request, retryable bool) (payload, error) {
	if r.Body == nil || r.Body == http.NoBody || r.Method == http.MethodGet || r.Method == http.MethodHead {
		return payload{}, nil
	}
	if r.ContentLength > httpapi.MaxBodyBytes {
		return payload{}, httpapi.BodyTooLarge()
	}
	if !retryable {
		return payload{stream: &clientBody{r: http.MaxBytesReader(w, r.Body, httpapi.MaxBodyBytes)}, length: r.ContentLength}, nil
	}
	buf, err := httpapi.ReadBody(r)
	return payload{buf: buf}, err
}

// unanswered says in a few words why an attempt got no answer, for the
// client's problem detail (the error itself is logged, not shown).
func unanswered(err error) string {
	var nerr net.Error
	switch {
	case errors.Is(err, errStampDown):
		return "went silent"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		return "timed out"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused the connection"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "dropped the connection"
	}
	return "failed"
}

// errStampDown aborts the attempts in flight to a stamp gone silent: it
// left its last probes unanswered and answered none of its POP's attempts
// meanwhile, while another stamp answered (pop.abortSilentLocked). A
// black-holed stamp never answers, and waiting for the attempt's timeout
// would turn a failover into seconds of latency.
var errStampDown = errors.New("the stamp went silent while the request was in flight")

// attempt is one try of a request at one stamp, registered with its POP
// while it is in flight so that the stamp going silent aborts it (and
// an idempotent request is retried). Once the stamp answered, it is the
// answer's body: closing it ends the attempt, its context and its
// registration, not before.
type attempt struct {
	io.ReadCloser // the stamp's answer's body; nil until it answered
	pop           *pop
	stamp         string             // the stamp's id
	inFlight      *inFlight          // the POP's attempts to the stamp, this one among them (track)
	cancel        context.CancelFunc // ends the attempt's context (its timeout, Config.Timeout)
	down          atomic.Bool        // the stamp went silent while the attempt was in flight
	// retry marks a request's retry, which its stamp going silent does
	// not abort (pop.abortLocked): the abort buys a retry elsewhere, and
	// a retry has none left. With a first attempt's stamp silent already,
	// a second one silent too is more often a starved machine, where
	// every stamp answers late, than a second stamp gone; the retry
	// waits for its answer, or its timeout.
	retry bool
}

// abort ends an attempt whose stamp went silent.
func (a *attempt) abort() {
	a.down.Store(true) // before the cancel that the attempt sees
	a.cancel()
}

// end is the attempt's last act: it leaves its POP and its context ends.
func (a *attempt) end() {
	a.pop.untrack(a)
	a.cancel()
}

func (a *attempt) Close() error {
	err := a.ReadCloser.Close()
	a.end()
	return err
}

// attempt forwards r to stamp up from POP p (see upstreamRequest), within
// Config.Timeout, and returns the stamp's answer, whose body ends the
// attempt once closed; retry marks the request's retry (attempt.retry).
func (px *proxy) attempt(r *http.Request, p *pop, up upstream, body payload, retry bool) (*http.Response, error) {
	if up.addr == "" {
		return nil, errors.New("no address")
	}
	ctx, cancel := context.WithTimeout(telemetry.WithCall(r.Context(), telemetry.Call{From: p.region, Region: up.region, Instance: up.id}), px.e.cfg.Timeout)
	out, err := px.upstreamRequest(ctx, r, up, body)
	if err != nil {
		cancel()
		return nil, err
	}
	a := &attempt{pop: p, stamp: up.id, cancel: cancel, retry: retry}
	p.track(a)
	resp, err := px.transport.RoundTrip(out)
	if err != nil {
		a.end()
		if a.down.Load() {
			err = fmt.Errorf("%w: %w", errStampDown, err)
		}
		return nil, err
	}
	a.inFlight.answered.Store(px.e.cfg.Now().UnixNano())
	a.ReadCloser = resp.Body
	resp.Body = a
	return resp, nil
}
