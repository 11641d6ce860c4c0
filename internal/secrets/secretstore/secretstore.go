// Package secretstore is a small secret-store service (the role of a managed
// vault): secrets over HTTP, versioned, with rotation, and a switch that
// makes it unavailable so tests and chaos experiments can take it down.
//
// Routes (all JSON; errors are RFC 9457 problems):
//
//	GET /v1/secrets/{name}      one secret: {"name","value","version","updatedAt"}
//	PUT /v1/secrets/{name}      create or rotate: {"value":"..."} -> {"name","version","updatedAt"}
//	GET /v1/secrets?names=a,b   several secrets in one call: {"secrets":[...],"missing":[...]}
//	GET /v1/status              {"mode":"up"|"unavailable"|"hang","held":N}: N requests held by the hang mode now
//	PUT /v1/status              {"mode":"..."}: the chaos switch
//
// When a Token is configured every route needs "Authorization: Bearer
// <token>". The /v1/status routes answer in every mode; the secret routes
// answer 503 at once while the store is Unavailable and never answer while
// it Hangs. Secret values are never logged.
//
// The store holds its secrets in memory. [Values] is the file that keeps
// them between runs: fill the store from it with Set, and give its Set as
// [Config.Persist] so that a PUT is written to the file before it is served.
package secretstore

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/secrets"
	"github.com/contoso/shoes/internal/shop"
)

// Limits on what the store accepts.
const (
	MaxValueBytes = 8 << 10 // longest secret value
	MaxBatchNames = 100     // most names in one GET /v1/secrets
	maxNameLen    = 63
)

// Mode is the store's availability, switched by SetMode or PUT /v1/status.
type Mode uint8

const (
	// Up serves every request; the zero value.
	Up Mode = iota
	// Unavailable answers every secret request with 503 at once.
	Unavailable
	// Hang accepts secret requests and never answers them until the mode
	// changes or the client gives up, so that client timeouts are exercised.
	Hang
)

var modeNames = [...]string{Up: "up", Unavailable: "unavailable", Hang: "hang"}

// String returns "up", "unavailable" or "hang".
func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("mode(%d)", m)
}

// MarshalText encodes the mode as its String.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

func parseMode(s string) (Mode, bool) {
	for m, name := range modeNames {
		if s == name {
			return Mode(m), true
		}
	}
	return 0, false
}

// Config configures a Server.
type Config struct {
	// Token is the bearer token every request must carry. Empty: no
	// authentication (tests only).
	Token string
	// Logger receives one line per change and per failed request, never a
	// secret value. nil: discard.
	Logger *slog.Logger
	// Persist, when set, is called with every change made through PUT
	// /v1/secrets/{name} before the store serves it, one change at a time
	// in the order they apply (typically Values.Set, so a restart keeps
	// it). When it fails the PUT answers 500 and the store keeps the old
	// value. Set does not call it. nil: changes live in memory only.
	Persist func(name, value string) error
}

// String describes the config without its token.
func (c Config) String() string {
	if c.Token == "" {
		return "secretstore.Config{Token: none}"
	}
	return "secretstore.Config{Token: [redacted]}"
}

// GoString is String, so %#v hides the token too.
func (c Config) GoString() string { return c.String() }

// Server is the secret store: versioned secrets in memory behind an HTTP
// handler. Its methods are safe for concurrent use.
type Server struct {
	authorized httpapi.Middleware // requires the bearer token when one is configured
	log        *slog.Logger
	handler    http.Handler
	persist    func(name, value string) error // nil: none

	putMu sync.Mutex // orders the changes made through PUT when persist is set: persisted and applied one at a time

	mu          sync.Mutex
	secrets     map[string]*entry
	mode        Mode
	modeChanged chan struct{} // closed and replaced on every mode change

	held atomic.Int64 // requests the hang mode holds now
}

// entry is one secret's current version.
type entry struct {
	value     string
	version   int64
	updatedAt time.Time
}

// New returns an empty store in mode Up.
func New(cfg Config) *Server {
	s := &Server{
		log:         cfg.Logger,
		persist:     cfg.Persist,
		secrets:     map[string]*entry{},
		modeChanged: make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.authorized = httpapi.RequireBearer(cfg.Token, s.log)
	s.handler = httpapi.Chain(s.routes(), httpapi.RequestIDs, httpapi.Recover(s.log))
	return s
}

// Handler returns the store's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// routes registers every route of the store.
func (s *Server) routes() http.Handler {
	h := func(f httpapi.HandlerFunc) http.Handler { return httpapi.Handle(s.log, f) }
	mux := http.NewServeMux()
	mux.Handle("GET /v1/secrets/{name}", s.gate(h(s.getSecret)))
	mux.Handle("PUT /v1/secrets/{name}", s.gate(h(s.putSecret)))
	mux.Handle("/v1/secrets/{name}", s.gate(h(methodNotAllowed("GET, HEAD, PUT"))))
	mux.Handle("GET /v1/secrets", s.gate(h(s.getSecrets)))
	mux.Handle("/v1/secrets", s.gate(h(methodNotAllowed("GET, HEAD"))))
	mux.Handle("GET /v1/status", s.authorized(h(s.getStatus)))
	mux.Handle("PUT /v1/status", s.authorized(h(s.putStatus)))
	mux.Handle("/v1/status", s.authorized(h(methodNotAllowed("GET, HEAD, PUT"))))
	mux.Handle("/", h(func(w http.ResponseWriter, r *http.Request) error {
		return shop.Errorf(shop.KindNotFound, "", "no such route")
	}))
	return mux
}

func methodNotAllowed(allow string) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Allow", allow)
		return shop.Errorf(shop.KindMethodNotAllowed, "", "use %s", allow)
	}
}

// gate applies the mode to a secret route, then authorization.
func (s *Server) gate(next http.Handler) http.Handler {
	auth := s.authorized(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for {
			s.mu.Lock()
			mode, changed := s.mode, s.modeChanged
			s.mu.Unlock()
			switch mode {
			case Up:
				auth.ServeHTTP(w, r)
				return
			case Unavailable:
				w.Header().Set("Retry-After", "1")
				httpapi.WriteError(w, r, nil, shop.Unavailable("the secret store is unavailable", nil))
				return
			default: // Hang: hold the request until the mode changes or the client leaves.
				s.held.Add(1)
				select {
				case <-changed:
					s.held.Add(-1)
				case <-r.Context().Done():
					s.held.Add(-1)
					return
				}
			}
		}
	})
}

// secretJSON is one secret as the store answers it.
type secretJSON struct {
	Name      string    `json:"name"`
	Value     string    `json:"value"`
	Version   int64     `json:"version"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// versionJSON answers a PUT: the new version, without echoing the value.
type versionJSON struct {
	Name      string    `json:"name"`
	Version   int64     `json:"version"`
	UpdatedAt time.Time `json:"updatedAt"`
}

type batchJSON struct {
	Secrets []secretJSON `json:"secrets"`
	Missing []string     `json:"missing,omitempty"`
}

type statusJSON struct {
	Mode Mode  `json:"mode"`
	Held int64 `json:"held"` // requests the hang mode holds now
}

func (s *Server) getSecret(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if !secrets.ValidName(name) {
		return invalidName("name")
	}
	s.mu.Lock()
	e, ok := s.secrets[name]
	var out secretJSON
	if ok {
		out = secretJSON{Name: name, Value: e.value, Version: e.version, UpdatedAt: e.updatedAt}
	}
	s.mu.Unlock()
	if !ok {
		return shop.NotFound("secret", name)
	}
	writeSecretJSON(w, out)
	return nil
}

func (s *Server) putSecret(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if !secrets.ValidName(name) {
		return invalidName("name")
	}
	var body struct {
		Value *string `json:"value"`
	}
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return err
	}
	if err := checkValue(body.Value); err != nil {
		return err
	}
	e, err := s.put(name, *body.Value)
	if err != nil {
		return err
	}
	writeSecretJSON(w, versionJSON{Name: name, Version: e.version, UpdatedAt: e.updatedAt})
	return nil
}

func (s *Server) getSecrets(w http.ResponseWriter, r *http.Request) error {
	var names []string
	seen := map[string]bool{}
	for _, list := range r.URL.Query()["names"] {
		for n := range strings.SplitSeq(list, ",") {
			if n = strings.TrimSpace(n); n == "" || seen[n] {
				continue
			}
			if !secrets.ValidName(n) {
				return shop.Invalid("names", "entry %d is not a valid secret name (want ^[a-z0-9][a-z0-9-]{0,62}$)", len(names)+1)
			}
			seen[n] = true
			names = append(names, n)
			if len(names) > MaxBatchNames {
				return shop.Invalid("names", "at most %d names per request", MaxBatchNames)
			}
		}
	}
	if len(names) == 0 {
		return shop.Invalid("names", "is required: a comma-separated list of secret names")
	}
	out := batchJSON{Secrets: []secretJSON{}}
	s.mu.Lock()
	for _, n := range names {
		if e, ok := s.secrets[n]; ok {
			out.Secrets = append(out.Secrets, secretJSON{Name: n, Value: e.value, Version: e.version, UpdatedAt: e.updatedAt})
		} else {
			out.Missing = append(out.Missing, n)
		}
	}
	s.mu.Unlock()
	writeSecretJSON(w, out)
	return nil
}

func (s *Server) getStatus(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	httpapi.WriteJSON(w, http.StatusOK, statusJSON{Mode: s.Mode(), Held: s.held.Load()})
	return nil
}

func (s *Server) putStatus(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Mode *string `json:"mode"`
	}
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return err
	}
	if body.Mode == nil {
		return shop.Invalid("mode", "is required: one of up, unavailable, hang")
	}
	m, ok := parseMode(*body.Mode)
	if !ok {
		return shop.Invalid("mode", "must be one of up, unavailable, hang")
	}
	s.SetMode(m)
	w.Header().Set("Cache-Control", "no-store")
	httpapi.WriteJSON(w, http.StatusOK, statusJSON{Mode: m, Held: s.held.Load()})
	return nil
}

// writeSecretJSON answers 200 with v, never cached by anything in between.
func writeSecretJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Cache-Control", "no-store")
	httpapi.WriteJSON(w, http.StatusOK, v)
}

func invalidName(field string) error {
	return shop.Invalid(field, "must match ^[a-z0-9][a-z0-9-]{0,62}$")
}

func checkValue(v *string) error {
	switch {
	case v == nil:
		return shop.Invalid("value", "is required")
	case *v == "":
		return shop.Invalid("value", "must not be empty")
	case len(*v) > MaxValueBytes:
		return shop.Errorf(shop.KindTooLarge, "value", "must be at most %d bytes", MaxValueBytes)
	}
	return nil
}

// Set creates the named secret at version 1 or rotates it to the next
// version, in memory only (Config.Persist is not called). It panics on a name the HTTP API would reject or an empty or
// oversized value, as on any programming error.
func (s *Server) Set(name, value string) {
	if !secrets.ValidName(name) {
		panic(fmt.Sprintf("secretstore: Set: invalid secret name %q", name))
	}
	if err := checkValue(&value); err != nil {
		panic("secretstore: Set " + name + ": " + err.Error())
	}
	s.set(name, value)
}

// put is a change through the API: persisted first, when the store
// persists its changes, then applied.
func (s *Server) put(name, value string) (entry, error) {
	if s.persist == nil {
		return s.set(name, value), nil
	}
	s.putMu.Lock()
	defer s.putMu.Unlock()
	if err := s.persist(name, value); err != nil {
		return entry{}, fmt.Errorf("persist secret %s: %w", name, err)
	}
	return s.set(name, value), nil
}

// set stores value under name as the next version and logs the change (the
// name and version only).
func (s *Server) set(name, value string) entry {
	s.mu.Lock()
	e, ok := s.secrets[name]
	if !ok {
		e = &entry{}
		s.secrets[name] = e
	}
	e.value, e.version, e.updatedAt = value, e.version+1, time.Now().UTC()
	out := *e
	s.mu.Unlock()
	s.log.Info("secret set", "name", name, "version", out.version)
	return out
}

// SetAvailable switches the store Up (true) or Unavailable (false).
func (s *Server) SetAvailable(up bool) {
	if up {
		s.SetMode(Up)
	} else {
		s.SetMode(Unavailable)
	}
}

// SetMode switches the store's availability. Requests held by Hang are
// released and answered in the new mode.
func (s *Server) SetMode(m Mode) {
	if int(m) >= len(modeNames) {
		panic(fmt.Sprintf("secretstore: SetMode: unknown %s", m))
	}
	s.mu.Lock()
	prev := s.mode
	if prev != m {
		s.mode = m
		close(s.modeChanged)
		s.modeChanged = make(chan struct{})
	}
	s.mu.Unlock()
	if prev != m {
		s.log.Warn("secret store mode changed", "from", prev.String(), "to", m.String())
	}
}

// Mode returns the store's availability.
func (s *Server) Mode() Mode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}
