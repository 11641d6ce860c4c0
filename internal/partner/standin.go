package partner

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
)

const (
	// maxRecordedOrders bounds the stand-in's memory: a new order beyond it
	// is answered 507.
	maxRecordedOrders = 100_000
	// maxModeDelay is the longest Slow delay PUT /v1/mode accepts.
	maxModeDelay = 10 * time.Minute
)

// Mode is the fault the stand-in simulates.
type Mode string

// The stand-in's modes. Modes apply to /v1/orders; /v1/mode answers in
// every mode.
const (
	Up      Mode = "up"      // answers normally
	Failing Mode = "failing" // answers 503 problem+json
	Slow    Mode = "slow"    // waits the delay, honouring the request context, then answers normally
	Down    Mode = "down"    // closes the connection without an answer, like a reset peer
)

// Valid reports whether m is one of Up, Failing, Slow and Down.
func (m Mode) Valid() bool {
	return m == Up || m == Failing || m == Slow || m == Down
}

// StandInConfig configures a StandIn.
type StandInConfig struct {
	// APIKey and SigningKey return the current expected X-Api-Key and
	// signing key. They are called per request so that a rotation applies at
	// once. nil, or an empty value: every notification is rejected.
	APIKey, SigningKey func() string
	Logger             *slog.Logger // nil: discard
}

// StandIn behaves like the fulfilment partner: it checks the API key and
// the HMAC signature of every notification, deduplicates by
// Idempotency-Key, records what it accepted, and can be told to fail, be
// slow or be down. It is safe for concurrent use.
type StandIn struct {
	apiKey, signingKey func() string
	log                *slog.Logger
	handler            http.Handler
	maxOrders          int // maxRecordedOrders; lowered by tests

	mu       sync.Mutex // guards the fields below
	mode     Mode
	delay    time.Duration
	orders   map[string]*delivery // by order id
	received []Notification       // in arrival order
	rejected int
}

// delivery is what the stand-in keeps per accepted order id.
type delivery struct {
	sum   [sha256.Size]byte // of the first accepted body
	count int               // accepted POSTs with this Idempotency-Key
}

// NewStandIn returns a stand-in in mode Up with nothing received.
func NewStandIn(cfg StandInConfig) *StandIn {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &StandIn{
		apiKey:     cfg.APIKey,
		signingKey: cfg.SigningKey,
		log:        cfg.Logger,
		maxOrders:  maxRecordedOrders,
		mode:       Up,
		orders:     map[string]*delivery{},
	}
	s.handler = s.routes()
	return s
}

// Handler returns the stand-in's HTTP API:
//
//	POST /v1/orders  a notification: 201 {"status":"received"} the first time,
//	                 200 {"status":"duplicate"} for a repeat with the same body,
//	                 409 for a repeat with another body; 401 for a missing or
//	                 wrong X-Api-Key or X-Signature, 400 for a missing
//	                 Idempotency-Key, malformed JSON or an orderId other than
//	                 the Idempotency-Key, 413 over 64 KiB, 507 when 100,000
//	                 orders are recorded
//	GET  /v1/orders  {"orders": Received(), "rejected": Rejected()}
//	GET  /v1/mode    {"mode":"slow","delayMs":500}
//	PUT  /v1/mode    the same document, to change the fault
//
// The mode endpoints are not authenticated: they are the test harness's
// control, not part of the partner's API.
func (s *StandIn) Handler() http.Handler { return s.handler }

func (s *StandIn) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /v1/orders", s.faults(httpapi.Handle(s.log, s.postOrder)))
	mux.Handle("GET /v1/orders", s.faults(httpapi.Handle(s.log, s.listOrders)))
	mux.Handle("GET /v1/health", s.faults(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})))
	mux.Handle("GET /v1/mode", httpapi.Handle(s.log, s.getMode))
	mux.Handle("PUT /v1/mode", httpapi.Handle(s.log, s.putMode))
	return httpapi.Chain(mux, httpapi.RequestIDs, httpapi.Recover(s.log))
}

// SetMode sets the fault to simulate; delay is how long Slow waits
// (negative counts as zero). It panics on a mode that is not one of Up,
// Failing, Slow and Down.
func (s *StandIn) SetMode(m Mode, delay time.Duration) {
	if !m.Valid() {
		panic(fmt.Sprintf("partner: unknown stand-in mode %q", m))
	}
	delay = max(delay, 0)
	s.mu.Lock()
	changed := s.mode != m || s.delay != delay
	s.mode, s.delay = m, delay
	s.mu.Unlock()
	if changed {
		s.log.Info("partner stand-in mode changed", "mode", m, "delay", delay)
	}
}

// Mode returns the current mode and Slow delay.
func (s *StandIn) Mode() (Mode, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode, s.delay
}

// Received returns every distinct order notification accepted, in arrival
// order.
func (s *StandIn) Received() []Notification {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Notification, len(s.received))
	for i, n := range s.received {
		n.Lines = slices.Clone(n.Lines)
		out[i] = n
	}
	return out
}

// Deliveries returns how many accepted POSTs carried orderID as their
// Idempotency-Key: the first delivery and its same-body repeats.
func (s *StandIn) Deliveries(orderID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.orders[orderID]; d != nil {
		return d.count
	}
	return 0
}

// Rejected returns how many notifications were rejected for a missing or
// wrong API key or signature.
func (s *StandIn) Rejected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected
}

// faults applies the current mode before next.
func (s *StandIn) faults(next http.Handler) http.Handler {
	return httpapi.Handle(s.log, func(w http.ResponseWriter, r *http.Request) error {
		mode, delay := s.Mode()
		switch mode {
		case Failing:
			return shop.Unavailable("the partner is failing (stand-in mode failing)", nil)
		case Down:
			hangUp(w)
			return nil
		case Slow:
			// Read the body first: only then does net/http watch the
			// connection and cancel the context when the client goes away.
			head, _ := io.ReadAll(io.LimitReader(r.Body, httpapi.MaxBodyBytes+1))
			r.Body = readCloser{io.MultiReader(bytes.NewReader(head), r.Body), r.Body}
			t := time.NewTimer(delay)
			select {
			case <-r.Context().Done():
				t.Stop()
				return nil // the client gave up; nobody reads an answer
			case <-t.C:
			}
		}
		next.ServeHTTP(w, r)
		return nil
	})
}

// readCloser is a body whose start was read ahead.
type readCloser struct {
	io.Reader
	io.Closer
}

// hangUp closes the connection without an answer, with a TCP reset where it
// can, like a crashed or unreachable peer.
func hangUp(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // not hijackable (HTTP/2): abort the stream
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

func (s *StandIn) postOrder(w http.ResponseWriter, r *http.Request) error {
	if !matches(r.Header.Get(HeaderAPIKey), s.apiKey) {
		s.reject()
		return shop.Errorf(shop.KindUnauthorized, HeaderAPIKey, "missing or wrong API key")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, httpapi.MaxBodyBytes))
	if err != nil {
		return httpapi.BodyError(err)
	}
	key := current(s.signingKey)
	if key == "" || !Verify([]byte(key), body, r.Header.Get(HeaderSignature)) {
		s.reject()
		return shop.Errorf(shop.KindUnauthorized, HeaderSignature, "missing or wrong signature of the body")
	}
	id := r.Header.Get(HeaderIdempotencyKey)
	if !validIdempotencyKey(id) {
		return shop.Invalid(HeaderIdempotencyKey, "header is required: 1-%d letters, digits and ._:-", maxIdempotencyKey)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var n Notification
	if err := httpapi.DecodeJSON(r, &n); err != nil {
		return err
	}
	if n.OrderID != id {
		return shop.Invalid("orderId", "must equal the Idempotency-Key header")
	}

	sum := sha256.Sum256(body)
	s.mu.Lock()
	d := s.orders[id]
	switch {
	case d != nil && d.sum == sum:
		d.count++
		s.mu.Unlock()
		s.log.DebugContext(r.Context(), "partner stand-in: duplicate notification", "order", id)
		httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "duplicate"})
		return nil
	case d != nil:
		s.mu.Unlock()
		return shop.Errorf(shop.KindConflict, "", "order %q was already received with a different body", id)
	case len(s.received) >= s.maxOrders:
		s.mu.Unlock()
		writeInsufficientStorage(w, r, s.log, fmt.Sprintf("the stand-in holds its maximum of %d orders", s.maxOrders))
		return nil
	}
	n.Lines = slices.Clone(n.Lines)
	s.orders[id] = &delivery{sum: sum, count: 1}
	s.received = append(s.received, n)
	s.mu.Unlock()
	s.log.DebugContext(r.Context(), "partner stand-in: notification received", "order", id)
	httpapi.WriteJSON(w, http.StatusCreated, map[string]string{"status": "received"})
	return nil
}

func (s *StandIn) reject() {
	s.mu.Lock()
	s.rejected++
	s.mu.Unlock()
}

// current returns the value of f, or "" when f is nil.
func current(f func() string) string {
	if f == nil {
		return ""
	}
	return f()
}

// matches reports whether got equals the non-empty current value of want,
// in constant time (the lengths are hidden too: the hashes are compared).
func matches(got string, want func() string) bool {
	w := current(want)
	if w == "" {
		return false
	}
	g, e := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(w))
	return subtle.ConstantTimeCompare(g[:], e[:]) == 1
}

func (s *StandIn) listOrders(w http.ResponseWriter, r *http.Request) error {
	httpapi.WriteJSON(w, http.StatusOK, struct {
		Orders   []Notification `json:"orders"`
		Rejected int            `json:"rejected"`
	}{s.Received(), s.Rejected()})
	return nil
}

// modeDoc is the body of GET and PUT /v1/mode.
type modeDoc struct {
	Mode    Mode  `json:"mode"`
	DelayMs int64 `json:"delayMs"`
}

func (s *StandIn) getMode(w http.ResponseWriter, r *http.Request) error {
	m, d := s.Mode()
	httpapi.WriteJSON(w, http.StatusOK, modeDoc{Mode: m, DelayMs: d.Milliseconds()})
	return nil
}

func (s *StandIn) putMode(w http.ResponseWriter, r *http.Request) error {
	var doc modeDoc
	if err := httpapi.DecodeJSON(r, &doc); err != nil {
		return err
	}
	if !doc.Mode.Valid() {
		return shop.Invalid("mode", "must be one of up, failing, slow and down")
	}
	if doc.DelayMs < 0 || doc.DelayMs > maxModeDelay.Milliseconds() {
		return shop.Invalid("delayMs", "must be an integer from 0 to %d", maxModeDelay.Milliseconds())
	}
	s.SetMode(doc.Mode, time.Duration(doc.DelayMs)*time.Millisecond)
	return s.getMode(w, r)
}

// writeInsufficientStorage answers 507 with a problem document in the shape
// httpapi.WriteError gives the statuses that error kinds map to.
func writeInsufficientStorage(w http.ResponseWriter, r *http.Request, log *slog.Logger, detail string) {
	const status = http.StatusInsufficientStorage
	p := httpapi.Problem{
		Type:      httpapi.ProblemTypeBase + "insufficient-storage",
		Title:     "Insufficient storage",
		Status:    status,
		Detail:    detail,
		Instance:  r.URL.Path,
		RequestID: w.Header().Get(httpapi.HeaderRequestID),
	}
	log.LogAttrs(r.Context(), slog.LevelError, "request failed",
		slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.Int("status", status), slog.String("error", detail), slog.String("request_id", p.RequestID))
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
}
