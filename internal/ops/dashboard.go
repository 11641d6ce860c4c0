// Package ops serves the operations dashboard: one page that shows the
// whole system live — the regions with their stamps (and the release each
// runs) and traffic, where each edge POP sends its clients, the release
// under way with its steps and each region's split, the autoscaler's
// regions and recent events (when the deployment runs one), the health
// model tree,
// the SLOs with their burn rates and alerts, and the recent errors with
// their traces.
//
// The page is plain HTML, one script and one style sheet, embedded in the
// binary and served under /ops/dashboard/; it needs no build step and loads
// nothing from elsewhere. The server pushes a Snapshot to it as server-sent
// events; the caller builds the Snapshot, so this package depends on no
// other part of the system but the health vocabulary (health.Status, from
// internal/health, which imports nothing of ours).
package ops

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
)

// assetFS holds the page: index.html, app.js and app.css.
//
//go:embed assets
var assetFS embed.FS

// Routes the dashboard serves.
const (
	pathRoot     = "/ops/dashboard"
	pathPrefix   = pathRoot + "/"
	pathEvents   = pathPrefix + "events"
	pathSnapshot = pathPrefix + "snapshot"
)

const (
	// minInterval keeps a misconfigured stream from calling Snapshot in a
	// tight loop.
	minInterval = 10 * time.Millisecond
	// minSnapshotTimeout is the least time one Snapshot call gets; it gets
	// the interval when that is longer.
	minSnapshotTimeout = 5 * time.Second
	// eventWriteTimeout bounds the write of one event, so that a client
	// that stopped reading cannot hold a stream open for ever.
	eventWriteTimeout = 10 * time.Second
	// retryMillis is the reconnection delay the stream asks browsers for.
	retryMillis = 2000
)

// contentSecurityPolicy allows the page its own script, style sheet, event
// stream and fetches, and the data: URL of its icon; nothing else. It also
// means no data can run as script even if it reached the DOM as markup.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// contentType returns the media type of an embedded asset by its
// extension; the table is ours so the answer does not depend on the host's
// MIME database.
func contentType(ext string) (string, bool) {
	switch ext {
	case ".html":
		return "text/html; charset=utf-8", true
	case ".js":
		return "text/javascript; charset=utf-8", true
	case ".css":
		return "text/css; charset=utf-8", true
	case ".svg":
		return "image/svg+xml", true
	}
	return "", false
}

// Config configures a Dashboard.
type Config struct {
	// Snapshot builds what the page shows; required. It is called once per
	// open event stream every Interval, and once per request to the
	// snapshot endpoint, so it should be cheap (read cached state). Each
	// call's context ends after the longer of Interval and 5 s.
	Snapshot func(ctx context.Context) (*Snapshot, error)
	// Interval is how often the event stream pushes a snapshot; zero: 1 s.
	// Otherwise it must be at least 10 ms.
	Interval time.Duration
	Logger   *slog.Logger // nil: discard
}

// Dashboard serves the operations page, its event stream and its snapshot
// endpoint.
type Dashboard struct {
	snapshot func(ctx context.Context) (*Snapshot, error)
	interval time.Duration
	log      *slog.Logger
	assets   map[string]asset // by name relative to pathPrefix; read-only after NewDashboard

	closeOnce sync.Once
	closed    chan struct{} // closed by Close
}

type asset struct {
	body        []byte
	contentType string
	etag        string
}

// NewDashboard returns a dashboard; register it with Routes.
func NewDashboard(cfg Config) (*Dashboard, error) {
	if cfg.Snapshot == nil {
		return nil, errors.New("new dashboard: Snapshot is required")
	}
	switch {
	case cfg.Interval == 0:
		cfg.Interval = time.Second
	case cfg.Interval < minInterval:
		return nil, fmt.Errorf("new dashboard: Interval %s is below %s", cfg.Interval, minInterval)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	assets, err := loadAssets(assetFS, "assets")
	if err != nil {
		return nil, fmt.Errorf("new dashboard: %w", err)
	}
	return &Dashboard{
		snapshot: cfg.Snapshot,
		interval: cfg.Interval,
		log:      cfg.Logger,
		assets:   assets,
		closed:   make(chan struct{}),
	}, nil
}

func loadAssets(fsys fs.FS, dir string) (map[string]asset, error) {
	assets := map[string]asset{}
	err := fs.WalkDir(fsys, dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		ct, ok := contentType(path.Ext(p))
		if !ok {
			return fmt.Errorf("asset %s: no content type for its extension", p)
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		assets[strings.TrimPrefix(p, dir+"/")] = asset{
			body:        body,
			contentType: ct,
			etag:        `"` + hex.EncodeToString(sum[:12]) + `"`,
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load assets: %w", err)
	}
	if _, ok := assets["index.html"]; !ok {
		return nil, errors.New("load assets: no index.html")
	}
	return assets, nil
}

// Routes registers the dashboard on mux:
//
//   - GET /ops/dashboard/ serves the page and its assets;
//   - GET /ops/dashboard/events streams an event "snapshot" (the Snapshot
//     as JSON) at once and then every Interval, until the client goes away
//     or Close is called. When Snapshot fails, the stream sends an event
//     "error" whose data is the problem document (RFC 9457) instead, and
//     goes on: the next tick may succeed;
//   - GET /ops/dashboard/snapshot answers one Snapshot as JSON, for tools;
//   - GET /ops/dashboard redirects to /ops/dashboard/.
//
// Errors are problem+json. GET patterns also match HEAD.
func (d *Dashboard) Routes(mux *http.ServeMux) {
	h := func(f httpapi.HandlerFunc) http.Handler { return httpapi.Handle(d.log, f) }
	mux.Handle("GET "+pathRoot, http.RedirectHandler(pathPrefix, http.StatusMovedPermanently))
	mux.Handle("GET "+pathPrefix, h(d.serveAsset))
	mux.Handle("GET "+pathEvents, h(d.serveEvents))
	mux.Handle("GET "+pathSnapshot, h(d.serveSnapshot))
}

// Close ends every open event stream and answers new ones 503, so that
// http.Server.Shutdown, which waits for active requests, does not wait for
// streams that never end: register it with srv.RegisterOnShutdown. The page
// and the snapshot endpoint keep working. Close is idempotent.
func (d *Dashboard) Close() {
	d.closeOnce.Do(func() { close(d.closed) })
}

func (d *Dashboard) serveAsset(w http.ResponseWriter, r *http.Request) error {
	name := strings.TrimPrefix(r.URL.Path, pathPrefix)
	if name == "" {
		name = "index.html"
	}
	a, ok := d.assets[name]
	if !ok {
		return shop.NotFound("dashboard asset", name)
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("ETag", a.etag)
	h.Set("Cache-Control", "no-cache") // revalidate: the ETag makes that a 304
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
	return nil
}

func (d *Dashboard) serveSnapshot(w http.ResponseWriter, r *http.Request) error {
	s, err := d.take(r.Context())
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	httpapi.WriteJSON(w, http.StatusOK, s)
	return nil
}

// take calls the Snapshot func within its timeout and completes the result.
func (d *Dashboard) take(ctx context.Context) (*Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, max(d.interval, minSnapshotTimeout))
	defer cancel()
	s, err := d.snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("take snapshot: %w", err)
	}
	if s == nil {
		return nil, errors.New("take snapshot: Snapshot returned neither a snapshot nor an error")
	}
	if s.Time.IsZero() {
		c := *s
		c.Time = time.Now()
		s = &c
	}
	return s, nil
}

func (d *Dashboard) serveEvents(w http.ResponseWriter, r *http.Request) error {
	select {
	case <-d.closed:
		return shop.Unavailable("the dashboard is shutting down", nil)
	default:
	}
	ctx := r.Context()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // tell reverse proxies not to buffer the stream
	w.WriteHeader(http.StatusOK)

	s := &stream{w: w, rc: http.NewResponseController(w)}
	if err := s.send(fmt.Appendf(nil, "retry: %d\n\n", retryMillis)); err != nil {
		d.endStream(ctx, err)
		return nil
	}
	t := time.NewTicker(d.interval)
	defer t.Stop()
	failing := false
	for {
		if err := d.push(ctx, r, s, &failing); err != nil {
			d.endStream(ctx, err)
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-d.closed:
			return nil
		case <-t.C:
		}
	}
}

// push sends one event: the snapshot, or the problem that kept it from
// being taken. It logs when a stream starts or stops failing, not on every
// failed tick.
func (d *Dashboard) push(ctx context.Context, r *http.Request, s *stream, failing *bool) error {
	snap, err := d.take(ctx)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		if !*failing {
			d.log.ErrorContext(ctx, "dashboard snapshot failed", "error", err, "path", r.URL.Path)
		}
		*failing = true
		p := httpapi.ProblemFor(err)
		p.Instance = r.URL.Path
		return s.event("error", p)
	}
	if *failing {
		d.log.InfoContext(ctx, "dashboard snapshot recovered", "path", r.URL.Path)
	}
	*failing = false
	return s.event("snapshot", snap)
}

func (d *Dashboard) endStream(ctx context.Context, err error) {
	if errors.Is(err, http.ErrNotSupported) {
		d.log.ErrorContext(ctx, "dashboard event stream cannot be flushed; is a middleware hiding http.Flusher?", "error", err)
		return
	}
	d.log.DebugContext(ctx, "dashboard event stream ended", "error", err)
}

// stream writes server-sent events and flushes each one.
type stream struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

// event writes one event whose data is v as JSON; JSON never holds a raw
// newline, so it fits one data line.
func (s *stream) event(name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s event: %w", name, err)
	}
	b := make([]byte, 0, len(data)+len(name)+16)
	b = append(b, "event: "...)
	b = append(b, name...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	b = append(b, "\n\n"...)
	return s.send(b)
}

// send writes b and flushes it. Each write gets its own deadline, lifted
// again once it is done: that also overrides a server-wide WriteTimeout
// that would cut the stream, and keeps an HTTP/2 stream from being reset
// by a deadline that passes while it waits for the next tick.
func (s *stream) send(b []byte) error {
	if err := s.deadline(time.Now().Add(eventWriteTimeout)); err != nil {
		return err
	}
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	if err := s.rc.Flush(); err != nil {
		return err
	}
	return s.deadline(time.Time{})
}

// deadline sets the write deadline where the writer supports one.
func (s *stream) deadline(t time.Time) error {
	if err := s.rc.SetWriteDeadline(t); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}
