// Package httpapi holds what every HTTP server of the system shares: RFC 9457
// problem responses and the one table that maps error kinds to status codes,
// strict JSON decoding with size limits, paging cursors, the middleware
// that stamps request ids and regions on every response, and the guard that
// keeps browsers and DNS rebinding away from operations listeners.
package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/contoso/shoes/internal/shop"
)

// ProblemTypeBase prefixes every problem "type" URI; the suffix is the kind.
const ProblemTypeBase = "https://contoso.example/problems/"

// Problem is an RFC 9457 problem details document.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Instance  string `json:"instance,omitempty"`
	Field     string `json:"field,omitempty"`
	RequestID string `json:"requestId,omitempty"`
}

// kinds is the one table from error kind to HTTP status and title.
var kinds = map[shop.Kind]struct {
	status int
	title  string
}{
	shop.KindInvalid:          {http.StatusBadRequest, "Invalid request"},
	shop.KindNotFound:         {http.StatusNotFound, "Not found"},
	shop.KindConflict:         {http.StatusConflict, "Conflict"},
	shop.KindUnauthorized:     {http.StatusUnauthorized, "Unauthorized"},
	shop.KindForbidden:        {http.StatusForbidden, "Forbidden"},
	shop.KindUnavailable:      {http.StatusServiceUnavailable, "Service unavailable"},
	shop.KindTooLarge:         {http.StatusRequestEntityTooLarge, "Request body too large"},
	shop.KindUnsupported:      {http.StatusUnsupportedMediaType, "Unsupported media type"},
	shop.KindMethodNotAllowed: {http.StatusMethodNotAllowed, "Method not allowed"},
	shop.KindUnprocessable:    {http.StatusUnprocessableEntity, "Unprocessable request"},
	shop.KindTooMany:          {http.StatusTooManyRequests, "Too many requests"},
	shop.KindInternal:         {http.StatusInternalServerError, "Internal error"},
}

// ProblemFor builds the problem document for err. Only details of *shop.Error
// values reach the client; anything else is an internal error with a generic
// message.
func ProblemFor(err error) Problem {
	kind := shop.KindOf(err)
	k := kinds[kind]
	p := Problem{Type: ProblemTypeBase + kind.String(), Title: k.title, Status: k.status}
	if e, ok := errors.AsType[*shop.Error](err); ok && kind != shop.KindInternal {
		p.Detail, p.Field = e.Detail, e.Field
	}
	return p
}

// WriteError answers r with the problem for err and logs it: 5xx at error
// level with the cause, 4xx at info level.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	p := ProblemFor(err)
	p.Instance = r.URL.Path
	p.RequestID = w.Header().Get(HeaderRequestID)
	level := slog.LevelInfo
	if p.Status >= 500 {
		level = slog.LevelError
	}
	if log != nil {
		log.LogAttrs(r.Context(), level, "request failed",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", p.Status), slog.String("error", err.Error()),
			slog.String("request_id", p.RequestID))
	}
	if p.Status == http.StatusTooManyRequests || p.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if p.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="contoso"`)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// WriteJSON answers with v as JSON and the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// HandlerFunc is an HTTP handler that returns its error instead of writing it.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Handle adapts h to http.Handler: a returned error becomes a problem
// response, logged through log.
func Handle(log *slog.Logger, h HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			WriteError(w, r, log, err)
		}
	})
}
