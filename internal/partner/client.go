package partner

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/failsafe-go/failsafe-go/timeout"

	"github.com/contoso/shoes/internal/shop"
)

const (
	defaultAttemptTimeout  = 2 * time.Second
	defaultMaxAttempts     = 4
	defaultBreakerFailures = 5
	defaultBreakerDelay    = 5 * time.Second
	defaultMaxConcurrent   = 16

	// bulkheadWait is how long a call waits for a free slot before it fails
	// with ErrBusy.
	bulkheadWait = time.Second

	// Retry delays: exponential from backoffBase to backoffMax, each varied
	// at random by ±backoffJitter of itself.
	backoffBase   = 100 * time.Millisecond
	backoffMax    = 2 * time.Second
	backoffJitter = 0.5

	// maxErrorBody is how much of a failure answer is read for its detail;
	// maxDetail is the longest detail quoted in an error.
	maxErrorBody = 4 << 10
	maxDetail    = 200
	// maxDrain is how much of an answer is read so that its connection can
	// be reused.
	maxDrain = 64 << 10
)

// ClientConfig configures a Client.
type ClientConfig struct {
	URL     string  // required: the partner's notification endpoint, e.g. http://127.0.0.1:9000/v1/orders
	Secrets Secrets // required: read once per Notify call

	// HTTPClient sends the requests; nil: a client of its own with no
	// overall timeout (the policies bound each attempt). The client is
	// copied so that redirects can be refused: a redirect would carry the
	// API key to wherever the partner points.
	HTTPClient *http.Client

	AttemptTimeout  time.Duration // bound of one attempt; zero: 2 s
	MaxAttempts     int           // attempts within one Notify call; zero: 4
	BreakerFailures int           // consecutive failed attempts that open the breaker; zero: 5
	BreakerDelay    time.Duration // how long the breaker stays open before a half-open trial; zero: 5 s
	// MaxConcurrent is the bulkhead size: at most this many Notify calls at
	// once (including their retry back-off); zero: 16. A call that cannot
	// get a slot within 1 s fails with ErrBusy.
	MaxConcurrent int

	Logger *slog.Logger // nil: discard
}

// Client notifies the partner of orders. It is safe for concurrent use; its
// circuit breaker and bulkhead are shared by all calls.
type Client struct {
	url            string
	secrets        Secrets
	http           *http.Client
	log            *slog.Logger
	attemptTimeout time.Duration
	breaker        circuitbreaker.CircuitBreaker[any]
	// exec composes bulkhead(retry(breaker(timeout(attempt)))): a slot is
	// held for a whole call, every attempt counts with the breaker, and the
	// timeout bounds one attempt.
	exec failsafe.Executor[any]
}

// NewClient returns a client for cfg, or an error when cfg is invalid.
func NewClient(cfg ClientConfig) (*Client, error) {
	switch {
	case cfg.URL == "":
		return nil, errors.New("partner: URL is required")
	case cfg.Secrets == nil:
		return nil, errors.New("partner: Secrets is required")
	case cfg.AttemptTimeout < 0:
		return nil, errors.New("partner: negative attempt timeout")
	case cfg.MaxAttempts < 0:
		return nil, errors.New("partner: negative max attempts")
	case cfg.BreakerFailures < 0:
		return nil, errors.New("partner: negative breaker failures")
	case cfg.BreakerDelay < 0:
		return nil, errors.New("partner: negative breaker delay")
	case cfg.MaxConcurrent < 0:
		return nil, errors.New("partner: negative max concurrent calls")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("partner: URL: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("partner: URL %q is not an absolute http(s) URL", cfg.URL)
	}
	attemptTimeout := cmp.Or(cfg.AttemptTimeout, defaultAttemptTimeout)
	maxAttempts := cmp.Or(cfg.MaxAttempts, defaultMaxAttempts)
	breakerFailures := cmp.Or(cfg.BreakerFailures, defaultBreakerFailures)
	breakerDelay := cmp.Or(cfg.BreakerDelay, defaultBreakerDelay)
	maxConcurrent := cmp.Or(cfg.MaxConcurrent, defaultMaxConcurrent)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	var hc http.Client
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	} else {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = maxConcurrent
		hc.Transport = tr
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	c := &Client{
		url:            u.String(),
		secrets:        cfg.Secrets,
		http:           &hc,
		log:            log,
		attemptTimeout: attemptTimeout,
	}

	transient := func(_ any, err error) bool { return err != nil && !permanent(err) }
	c.breaker = circuitbreaker.NewBuilder[any]().
		HandleIf(transient).
		WithFailureThreshold(uint(breakerFailures)).
		// Without a success threshold a half-open breaker would allow
		// breakerFailures trials and need that many failures to re-open.
		WithSuccessThreshold(1).
		WithDelay(breakerDelay).
		OnStateChanged(func(e circuitbreaker.StateChangedEvent) {
			level := slog.LevelInfo
			if e.NewState == circuitbreaker.OpenState {
				level = slog.LevelWarn
			}
			log.Log(context.Background(), level, "partner circuit breaker changed",
				"from", e.OldState.String(), "to", e.NewState.String())
		}).
		Build()
	retry := retrypolicy.NewBuilder[any]().
		AbortIf(func(_ any, err error) bool {
			return permanent(err) || errors.Is(err, circuitbreaker.ErrOpen)
		}).
		WithMaxAttempts(maxAttempts).
		WithBackoff(backoffBase, backoffMax).
		WithJitterFactor(backoffJitter).
		ReturnLastFailure().
		OnRetryScheduled(func(e failsafe.ExecutionScheduledEvent[any]) {
			log.DebugContext(e.Context(), "retrying partner notification", "attempt", e.Attempts(), "delay", e.Delay, "error", e.LastError())
		}).
		Build()
	c.exec = failsafe.With[any](
		bulkhead.NewBuilder[any](uint(maxConcurrent)).WithMaxWaitTime(bulkheadWait).Build(),
		retry,
		c.breaker,
		timeout.New[any](attemptTimeout),
	)
	return c, nil
}

// Notify sends n once in effect. The body is the JSON of n, with headers
// Content-Type: application/json, X-Api-Key, X-Signature (Sign of the body
// with the signing key) and Idempotency-Key: n.OrderID, so the partner
// deduplicates repeats.
//
// A 2xx answer, and 409 (the partner already has the order), is success.
// Another 4xx except 408 and 429 is permanent: the error wraps ErrRejected
// with kind Invalid, after one attempt. 5xx, 408, 429, attempt timeouts and
// connection errors are retried with exponential back-off and jitter; when
// the attempts run out the error has kind Unavailable. While the breaker is
// open Notify fails at once with ErrCircuitOpen, and with ErrBusy when no
// bulkhead slot frees up within 1 s (both kind Unavailable). An invalid
// OrderID fails with kind Invalid without a call. Errors never contain the
// secrets.
func (c *Client) Notify(ctx context.Context, n Notification) error {
	if err := c.notify(ctx, n); err != nil {
		return fmt.Errorf("notify partner of order %q: %w", n.OrderID, err)
	}
	return nil
}

func (c *Client) notify(ctx context.Context, n Notification) error {
	if !validIdempotencyKey(n.OrderID) {
		return shop.Invalid("orderId", "must be 1-%d letters, digits and ._:- (it is the Idempotency-Key)", maxIdempotencyKey)
	}
	if err := ctx.Err(); err != nil {
		return shop.Unavailable("not sent", err)
	}
	body, err := json.Marshal(n)
	if err != nil {
		return &shop.Error{Kind: shop.KindInternal, Detail: "encode the notification", Err: err}
	}
	apiKey, err := c.secrets.PartnerAPIKey()
	if err != nil {
		return shop.Unavailable("read the partner API key", err)
	}
	signingKey, err := c.secrets.PartnerSigningKey()
	if err != nil {
		return shop.Unavailable("read the partner signing key", err)
	}
	if apiKey == "" || signingKey == "" {
		return shop.Unavailable("the partner credentials are empty", nil)
	}
	req := request{
		orderID:   n.OrderID,
		body:      body,
		apiKey:    apiKey,
		signature: Sign([]byte(signingKey), body),
		redact:    strings.NewReplacer(apiKey, "[redacted]", signingKey, "[redacted]"),
	}

	attempts := 0 // attempts run one after another on this goroutine
	err = c.exec.WithContext(ctx).RunWithExecution(func(exec failsafe.Execution[any]) error {
		attempts++
		return c.attempt(exec.Context(), req)
	})
	var se *statusError
	switch {
	case err == nil:
		c.log.DebugContext(ctx, "partner notified", "order", n.OrderID, "attempts", attempts)
		return nil
	case errors.Is(err, bulkhead.ErrFull):
		return shop.Unavailable(fmt.Sprintf("no free slot for a partner call within %s", bulkheadWait), ErrBusy)
	case errors.Is(err, circuitbreaker.ErrOpen):
		return shop.Unavailable("calls suspended after repeated failures; "+attemptsMade(attempts), ErrCircuitOpen)
	case errors.As(err, &se) && se.permanent():
		return &shop.Error{Kind: shop.KindInvalid, Detail: se.Error(), Err: ErrRejected}
	case ctx.Err() != nil:
		return shop.Unavailable("gave up; "+attemptsMade(attempts), ctx.Err())
	case errors.Is(err, timeout.ErrExceeded):
		err = fmt.Errorf("attempt timed out after %s", c.attemptTimeout)
	}
	return shop.Unavailable("partner unavailable; "+attemptsMade(attempts), err)
}

// attemptsMade says how many attempts a call made.
func attemptsMade(n int) string {
	if n == 1 {
		return "1 attempt made"
	}
	return fmt.Sprintf("%d attempts made", n)
}

// request is what every attempt of one Notify call sends.
type request struct {
	orderID, apiKey, signature string
	body                       []byte
	redact                     *strings.Replacer // blanks the secrets out of partner answers
}

// attempt makes one POST. It returns nil on success, a *statusError for an
// unsuccessful answer and the transport's error otherwise.
func (c *Client) attempt(ctx context.Context, r request) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(r.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set(HeaderAPIKey, r.apiKey)
	req.Header.Set(HeaderSignature, r.signature)
	req.Header.Set(HeaderIdempotencyKey, r.orderID)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
		return nil
	case resp.StatusCode == http.StatusConflict:
		// The partner has the order already, though it says with another
		// body (a redelivered message built anew, say). It will not take a
		// second version, and retrying cannot change that.
		c.log.WarnContext(ctx, "partner already had the order with a different body; treating it as delivered",
			"order", r.orderID, "detail", partnerDetail(resp.Body, r.redact))
		return nil
	}
	return &statusError{status: resp.StatusCode, detail: partnerDetail(resp.Body, r.redact)}
}

// statusError is a partner answer that is neither success nor a 409.
type statusError struct {
	status int
	detail string // the partner's explanation, secrets redacted; may be empty
}

func (e *statusError) Error() string {
	msg := fmt.Sprintf("partner answered %d %s", e.status, http.StatusText(e.status))
	if e.detail != "" {
		msg += ": " + e.detail
	}
	return msg
}

// permanent reports whether repeating the request cannot help: a 3xx
// (redirects are refused) or a 4xx other than 408 and 429.
func (e *statusError) permanent() bool {
	return e.status < 500 && e.status != http.StatusRequestTimeout && e.status != http.StatusTooManyRequests
}

// permanent reports whether err is a permanent partner answer.
func permanent(err error) bool {
	var se *statusError
	return errors.As(err, &se) && se.permanent()
}

// partnerDetail returns a short, printable explanation from a failure
// answer: the detail (or title) of a problem document, else the start of
// the body, with the secrets redacted.
func partnerDetail(body io.Reader, redact *strings.Replacer) string {
	b, _ := io.ReadAll(io.LimitReader(body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxDrain))
	var p struct{ Title, Detail string }
	s := string(b)
	if json.Unmarshal(b, &p) == nil {
		s = cmp.Or(p.Detail, p.Title)
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(redact.Replace(s))
	if utf8.RuneCountInString(s) > maxDetail {
		s = string([]rune(s)[:maxDetail]) + "…"
	}
	return s
}

// Ping asks the partner whether it is up (GET /v1/health beside the
// notification endpoint), outside the retry and breaker policies, so that
// a health check sees an outage before an order meets it. ctx bounds it.
// A ping that succeeds once the breaker's delay has passed is its
// half-open trial, and closes it: without that, a breaker opened by an
// outage would stay half-open, and the partner reported degraded, until an
// order happened to call it (none does while every order is rejected, say
// after a sell-out).
func (c *Client) Ping(ctx context.Context) error {
	if err := c.ping(ctx); err != nil {
		return err
	}
	if c.BreakerState() == circuitbreaker.HalfOpenState.String() && c.breaker.TryAcquirePermit() {
		c.breaker.RecordSuccess()
	}
	return nil
}

func (c *Client) ping(ctx context.Context) error {
	u := c.url
	if i := strings.LastIndex(u, "/"); i >= 0 {
		u = u[:i] + "/health"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("ping partner: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("ping partner: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping partner: %s", resp.Status)
	}
	return nil
}

// BreakerState returns "closed", "open" or "half-open", for health checks
// and metrics. An open breaker whose delay has passed reports "half-open":
// the next call is let through as the trial.
func (c *Client) BreakerState() string {
	st := c.breaker.State()
	if st == circuitbreaker.OpenState && c.breaker.RemainingDelay() == 0 {
		return circuitbreaker.HalfOpenState.String()
	}
	return st.String()
}
