package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/contoso/shoes/internal/shop"
)

// Headers the system sets or reads on every request.
const (
	HeaderRequestID     = "X-Request-Id"
	HeaderServedRegion  = "X-Served-Region"
	HeaderServedRelease = "X-Served-Release"
)

// Middleware wraps a handler.
type Middleware func(http.Handler) http.Handler

// Chain applies middleware so that the first listed runs first.
func Chain(h http.Handler, mw ...Middleware) http.Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

// validRequestID reports whether a client's request id may be kept: 1 to
// 128 characters among A-Z, a-z, 0-9 and ".", "_", ":", "-". (Every
// request of every server checks one: a loop, not a regular expression.)
func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

type requestIDKey struct{}

// RequestID returns the request id that the RequestIDs middleware stored in ctx.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// RequestIDs echoes a well-formed X-Request-Id from the client, or makes one,
// and sets it on the response and in the request context.
func RequestIDs(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(HeaderRequestID)
		if !validRequestID(id) {
			id = newRequestID()
		}
		w.Header()[HeaderRequestID] = []string{id}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
	})
}

func newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ServedRegion sets X-Served-Region on every response, and
// X-Served-Release when release is not empty: which region and which
// release answered.
func ServedRegion(region, release string) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(HeaderServedRegion, region)
			if release != "" {
				w.Header().Set(HeaderServedRelease, release)
			}
			next.ServeHTTP(w, r)
		})
	}
}

// statusWriter records the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Recover turns a panic in a handler into a 500 problem (never a stack trace
// to the client) and logs the stack. http.ErrAbortHandler is re-raised.
func Recover(log *slog.Logger) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sw := &statusWriter{ResponseWriter: w}
			defer func() {
				v := recover()
				if v == nil {
					return
				}
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.ErrorContext(r.Context(), "handler panic", "panic", v, "stack", string(debug.Stack()),
					"request_id", RequestID(r.Context()))
				if sw.status == 0 {
					WriteError(sw, r, nil, &shop.Error{Kind: shop.KindInternal})
				}
			}()
			next.ServeHTTP(sw, r)
		})
	}
}

// AccessLog logs every request at debug level with its status and duration.
// While debug is off, it costs a level check.
func AccessLog(log *slog.Logger) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !log.Enabled(r.Context(), slog.LevelDebug) {
				next.ServeHTTP(w, r)
				return
			}
			start := time.Now()
			sw := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(sw, r)
			log.LogAttrs(r.Context(), slog.LevelDebug, "request",
				slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.Int("status", sw.status), slog.Duration("duration", time.Since(start)),
				slog.String("request_id", RequestID(r.Context())))
		})
	}
}

// Scheme is the URL scheme of an HTTP listener or connection: "https" over
// TLS, "http" without.
func Scheme(tls bool) string {
	if tls {
		return "https"
	}
	return "http"
}
