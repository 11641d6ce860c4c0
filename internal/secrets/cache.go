package secrets

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/contoso/shoes/internal/health"
)

// Sources of the values a Cache serves, as Status reports them.
const (
	SourceProvider      = "provider"
	SourceLastKnownGood = "last-known-good"
)

// CacheConfig configures a Cache.
type CacheConfig struct {
	// Provider is where the secrets come from. Required.
	Provider Provider
	// Names are the secrets this stamp needs; each must match
	// ^[a-z0-9][a-z0-9-]{0,62}$. Required, duplicates ignored.
	Names []string
	// Refresh is the time between background refreshes, and so the longest
	// a rotated secret takes to be used. Zero: 30 s.
	Refresh time.Duration
	// LKGPath is the file for the encrypted last-known-good copy. Empty: no
	// copy is kept, and Load needs the provider. The file is written with
	// mode 0600 in a directory of mode 0700, and refused on read when group
	// or others can read it (package keyfile).
	LKGPath string
	// Region is the region of the stamp the cache serves. Required with
	// LKGPath: the LKG file is sealed for it, and a file sealed for another
	// region (a copy) is never used.
	Region string
	// LKGKey is the 32-byte key for the LKG file (AES-256-GCM, through
	// HKDF-SHA256). Required with LKGPath. It comes from the stamp's
	// configuration and is never stored beside the file.
	LKGKey []byte
	// Logger receives refresh failures, rotations and fallbacks (names only,
	// never values). nil: discard.
	Logger *slog.Logger
	// Now tells the time for LastRefresh and Age. nil: time.Now.
	Now func() time.Time
}

// Cache holds a stamp's secrets in memory. Load fills it, Run keeps it fresh,
// Get serves from memory without ever waiting on the provider.
type Cache struct {
	provider Provider
	names    []string
	refresh  time.Duration
	lkgPath  string
	region   string      // the LKG file is sealed for it
	aead     cipher.AEAD // nil when there is no LKG file
	log      *slog.Logger
	now      func() time.Time

	// mu serializes fills (Load and refresh) and guards lkgDirty; readers
	// never take it.
	mu       sync.Mutex
	lkgDirty bool // memory holds provider values the LKG file does not

	state atomic.Pointer[cacheState] // nil until the first fill
}

// cacheState is an immutable snapshot of what the cache serves.
type cacheState struct {
	values      map[string]Value
	source      string    // SourceProvider or SourceLastKnownGood
	fetchedAt   time.Time // when values were fetched from the provider
	lastRefresh time.Time // last successful provider fetch; zero if never
	lastErr     string    // last refresh error; "" if it worked
	notFound    bool      // the last refresh failed because a name is missing
	lkgErr      string    // last LKG write error; "" if it worked
}

// Status is a cache's state for the health check.
type Status struct {
	// Source is "provider" or "last-known-good" ("" before the first fill).
	Source string
	// LastRefresh is the time of the last successful provider fetch; zero if
	// never.
	LastRefresh time.Time
	// LastError is the last refresh error text; "" if the last refresh
	// worked. It never holds a secret value.
	LastError string
	// Age is how long ago the served values were fetched from the provider.
	Age time.Duration
}

// NewCache checks cfg and returns an empty cache; call Load, then Run.
func NewCache(cfg CacheConfig) (*Cache, error) {
	if cfg.Provider == nil {
		return nil, errors.New("secrets: CacheConfig.Provider is required")
	}
	if len(cfg.Names) == 0 {
		return nil, errors.New("secrets: CacheConfig.Names is required")
	}
	if err := checkNames(cfg.Names); err != nil {
		return nil, err
	}
	c := &Cache{
		provider: cfg.Provider,
		names:    slices.Compact(slices.Sorted(slices.Values(cfg.Names))),
		refresh:  cfg.Refresh,
		lkgPath:  cfg.LKGPath,
		region:   cfg.Region,
		log:      cfg.Logger,
		now:      cfg.Now,
	}
	if c.refresh <= 0 {
		c.refresh = 30 * time.Second
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.lkgPath != "" {
		if len(cfg.LKGKey) == 0 {
			return nil, errors.New("secrets: CacheConfig.LKGKey is required with LKGPath")
		}
		if cfg.Region == "" {
			return nil, errors.New("secrets: CacheConfig.Region is required with LKGPath")
		}
		aead, err := newLKGAEAD(cfg.LKGKey)
		if err != nil {
			return nil, err
		}
		c.aead = aead
	}
	return c, nil
}

// Load does the first fill: from the provider if it answers within ctx, else
// from the LKG file. It returns an error only when neither has every name.
// An LKG file sealed for another region or of another format version is
// refused (and logged as such), never used. It writes the LKG file
// (atomically: temp file + rename, mode 0600) after every successful fetch
// that changed something, and after the first, so a refused file is
// replaced as soon as the provider answers.
func (c *Cache) Load(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	perr := c.fetchLocked(ctx)
	if perr == nil {
		return nil
	}
	if c.state.Load() != nil {
		// Already filled (Load called again): keep serving what we have.
		return nil
	}
	if c.aead == nil {
		c.log.Error("secrets unavailable: the provider failed and no last-known-good file is configured", "error", perr.Error())
		return fmt.Errorf("secrets: load: provider: %w; no last-known-good file configured", perr)
	}
	lkg, lerr := readLKG(c.aead, c.region, c.lkgPath)
	if errors.Is(lerr, errLKGForeign) {
		c.log.Error("refusing the last-known-good file: it was not sealed for this region or is of another format version; "+
			"this instance cannot start from it while the secret store is down, and the next successful fetch replaces it",
			"file", c.lkgPath, "error", lerr.Error())
	}
	if lerr == nil {
		if missing := c.missing(lkg.Secrets); len(missing) > 0 {
			lerr = fmt.Errorf("last-known-good file lacks %q", missing)
		}
	}
	if lerr != nil {
		c.log.Error("secrets unavailable: the provider failed and there is no usable last-known-good copy",
			"provider_error", perr.Error(), "lkg_error", lerr.Error())
		return fmt.Errorf("secrets: load: provider: %w; last-known-good not available: %w", perr, lerr)
	}
	values := make(map[string]Value, len(c.names))
	for _, n := range c.names {
		values[n] = NewValue(lkg.Secrets[n])
	}
	c.state.Store(&cacheState{
		values:    values,
		source:    SourceLastKnownGood,
		fetchedAt: lkg.FetchedAt,
		lastErr:   perr.Error(),
		notFound:  errors.Is(perr, ErrNotFound),
	})
	c.log.Warn("secret provider failed; serving the last-known-good copy",
		"error", perr.Error(), "fetched_at", lkg.FetchedAt, "secrets", len(values))
	return nil
}

// Run refreshes every Refresh until ctx is done (call after Load). One
// refresh is bounded by the refresh interval; a failed refresh keeps the
// values in memory and is retried at the next tick.
func (c *Cache) Run(ctx context.Context) {
	t := time.NewTicker(c.refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if ctx.Err() != nil {
			return
		}
		c.refreshOnce(ctx)
	}
}

// refreshOnce fetches once from the provider within one refresh interval.
func (c *Cache) refreshOnce(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, c.refresh)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.fetchLocked(ctx) // a failure is recorded in the state and logged
}

// fetchLocked asks the provider for every name. On success it installs the
// values and writes the LKG file if they changed (or the last write failed);
// on failure it records the error and keeps the current values. c.mu is held.
func (c *Cache) fetchLocked(ctx context.Context) error {
	prev := c.state.Load()
	got, err := c.fetchWithin(ctx)
	if err == nil {
		if missing := c.missing(revealAll(got)); len(missing) > 0 {
			err = notFound(missing)
		}
	}
	if err != nil {
		if prev != nil {
			next := *prev
			next.lastErr, next.notFound = err.Error(), errors.Is(err, ErrNotFound)
			c.state.Store(&next)
			if prev.lastErr == "" {
				c.log.Warn("secret refresh failed; serving cached secrets", "error", err.Error(), "source", prev.source)
			} else {
				c.log.Debug("secret refresh still failing", "error", err.Error())
			}
		}
		return err
	}

	now := c.now()
	values := make(map[string]Value, len(c.names))
	for _, n := range c.names {
		values[n] = got[n]
	}
	next := &cacheState{values: values, source: SourceProvider, fetchedAt: now, lastRefresh: now}
	var changed []string
	if prev == nil {
		changed = c.names
	} else {
		for _, n := range c.names {
			if prev.values[n].Reveal() != values[n].Reveal() {
				changed = append(changed, n)
			}
		}
		next.lkgErr = prev.lkgErr
		if prev.lastErr != "" {
			c.log.Info("secret refresh works again", "previous_error", prev.lastErr)
		}
	}
	if len(changed) > 0 {
		c.lkgDirty = true
		if prev != nil {
			c.log.Info("secrets rotated", "names", changed)
		}
	}
	if c.lkgDirty && c.aead != nil {
		plain := make(map[string]string, len(values))
		for n, v := range values {
			plain[n] = v.Reveal()
		}
		if werr := writeLKG(c.aead, c.region, c.lkgPath, lkgContents{FetchedAt: now, Secrets: plain}); werr != nil {
			next.lkgErr = werr.Error()
			c.log.Error("could not save the last-known-good secrets; a new instance could not start while the store is down",
				"error", werr.Error())
		} else {
			next.lkgErr = ""
			c.lkgDirty = false
		}
	}
	c.state.Store(next)
	return nil
}

// fetchWithin calls the provider and gives up when ctx is done, even if the
// provider ignores ctx: Load and refreshes never wait past their deadline.
func (c *Cache) fetchWithin(ctx context.Context) (map[string]Value, error) {
	type result struct {
		values map[string]Value
		err    error
	}
	done := make(chan result, 1)
	go func() {
		v, err := c.provider.Fetch(ctx, slices.Clone(c.names))
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.values, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("secrets: provider did not answer: %w", context.Cause(ctx))
	}
}

// missing returns the configured names that have no non-empty value in m.
func (c *Cache) missing(m map[string]string) []string {
	var out []string
	for _, n := range c.names {
		if m[n] == "" {
			out = append(out, n)
		}
	}
	return out
}

func revealAll(m map[string]Value) map[string]string {
	out := make(map[string]string, len(m))
	for n, v := range m {
		out[n] = v.Reveal()
	}
	return out
}

// Get returns a secret from memory; it never blocks on the provider. A name
// the cache does not hold is an error wrapping ErrNotFound.
func (c *Cache) Get(name string) (Value, error) {
	st := c.state.Load()
	if st == nil {
		return Value{}, fmt.Errorf("secrets: %q: cache not loaded: %w", name, ErrNotFound)
	}
	v, ok := st.values[name]
	if !ok {
		return Value{}, fmt.Errorf("secrets: %q is not one of the cached names: %w", name, ErrNotFound)
	}
	return v, nil
}

// Status is for the health check: where the served values come from, when
// the provider last answered, the last refresh error and the values' age.
func (c *Cache) Status() Status {
	st := c.state.Load()
	if st == nil {
		return Status{}
	}
	return Status{
		Source:      st.source,
		LastRefresh: st.lastRefresh,
		LastError:   st.lastErr,
		Age:         max(c.now().Sub(st.fetchedAt), 0),
	}
}

// Check is a health check function (health.Check.Run). It reads cached
// state only. It returns nil when the last refresh from the provider worked;
// an error wrapping health.ErrDegraded (so the stamp stays in rotation) when
// the store is down but cached values serve; and a plain error before the
// first fill. Neither the detail nor the error holds a secret value.
func (c *Cache) Check(ctx context.Context) (string, error) {
	st := c.state.Load()
	if st == nil {
		return "secrets not loaded", errors.New("secrets: no secrets loaded yet")
	}
	age := humanAge(max(c.now().Sub(st.fetchedAt), 0))
	lkgNote := ""
	if st.lkgErr != "" {
		lkgNote = "; last-known-good copy not saved"
	}
	if st.lastErr == "" {
		return fmt.Sprintf("%d secrets from the store, refreshed %s ago%s", len(st.values), age, lkgNote), nil
	}
	what := "store unreachable"
	if st.notFound {
		what = "secret missing from the store"
	}
	var detail string
	if st.source == SourceLastKnownGood {
		detail = fmt.Sprintf("%s, serving last-known-good from %s ago%s", what, age, lkgNote)
	} else {
		detail = fmt.Sprintf("%s, serving secrets fetched %s ago%s", what, age, lkgNote)
	}
	return detail, fmt.Errorf("secret refresh failing (%s): %w", st.lastErr, health.ErrDegraded)
}

// humanAge prints d for operators: "1.2s", "5m", "2h30m", "3d4h".
func humanAge(d time.Duration) string {
	switch {
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		d = d.Round(time.Second)
		m, s := d/time.Minute, (d%time.Minute)/time.Second
		if s == 0 {
			return fmt.Sprintf("%dm", m)
		}
		return fmt.Sprintf("%dm%ds", m, s)
	case d < 48*time.Hour:
		d = d.Round(time.Minute)
		h, m := d/time.Hour, (d%time.Hour)/time.Minute
		if m == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh%dm", h, m)
	default:
		d = d.Round(time.Hour)
		days, h := d/(24*time.Hour), (d%(24*time.Hour))/time.Hour
		if h == 0 {
			return fmt.Sprintf("%dd", days)
		}
		return fmt.Sprintf("%dd%dh", days, h)
	}
}
