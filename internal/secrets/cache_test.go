package secrets_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/keyfile"
	"github.com/contoso/shoes/internal/secrets"
	"github.com/contoso/shoes/internal/secrets/secretstore"
)

var stampNames = []string{"partner-api-key", "partner-signing-key"}

const (
	apiKeyV1  = "partner-api-key-value-v1-9c41"
	signKeyV1 = "partner-signing-key-value-v1-77aa"
	apiKeyV2  = "partner-api-key-value-v2-0b3d"
)

func lkgKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// fakeClock is a settable Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newCache(t *testing.T, cfg secrets.CacheConfig) *secrets.Cache {
	t.Helper()
	if cfg.Names == nil {
		cfg.Names = stampNames
	}
	c, err := secrets.NewCache(cfg)
	if err != nil {
		t.Fatalf("NewCache: %v", err)
	}
	return c
}

// within returns a context that ends after d, so no test waits forever.
func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustGet(t *testing.T, c *secrets.Cache, name, want string) {
	t.Helper()
	v, err := c.Get(name)
	if err != nil {
		t.Fatalf("Get(%s): %v", name, err)
	}
	if v.Reveal() != want {
		t.Fatalf("Get(%s) is not the expected value", name)
	}
}

func assertNoSecret(t *testing.T, where string, texts ...string) {
	t.Helper()
	for _, s := range texts {
		for _, secret := range []string{apiKeyV1, signKeyV1, apiKeyV2} {
			if strings.Contains(s, secret) {
				t.Errorf("%s leaks a secret value: %s", where, s)
			}
		}
	}
}

// The scenario the package exists for: a stamp instance loads from the
// store and saves the LKG copy; later, with the store down, a brand-new
// instance starts from that copy, serves, and reports itself degraded.
func TestNewInstanceStartsFromLKGWhileStoreIsDown(t *testing.T) {
	store, ts := startStore(t, storeToken)
	store.Set("partner-api-key", apiKeyV1)
	store.Set("partner-signing-key", signKeyV1)
	provider := secrets.HTTPProvider{BaseURL: ts.URL, Token: storeToken, Client: ts.Client(), Timeout: time.Second}
	lkgPath := filepath.Join(t.TempDir(), "state", "secrets.lkg")
	clock := newFakeClock()
	var logs bytes.Buffer
	logger := testLogger(t, &logs)

	first := newCache(t, secrets.CacheConfig{Provider: provider, Region: "westeurope", LKGPath: lkgPath, LKGKey: lkgKey(7), Now: clock.Now, Logger: logger})
	if err := first.Load(within(t, 5*time.Second)); err != nil {
		t.Fatalf("Load from the store: %v", err)
	}
	mustGet(t, first, "partner-api-key", apiKeyV1)
	if st := first.Status(); st.Source != "provider" || !st.LastRefresh.Equal(clock.Now()) || st.LastError != "" || st.Age != 0 {
		t.Fatalf("Status after Load = %+v", st)
	}
	clock.Advance(1200 * time.Millisecond)
	detail, err := first.Check(t.Context())
	if err != nil || detail != "2 secrets from the store, refreshed 1.2s ago" {
		t.Fatalf("Check = %q, %v", detail, err)
	}

	// The LKG file: private, an envelope of ciphertext, no plaintext, no temp files left.
	fi, err := os.Stat(lkgPath)
	if err != nil {
		t.Fatalf("LKG file not written: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("LKG file mode %v, want 0600", fi.Mode().Perm())
	}
	raw, err := os.ReadFile(lkgPath)
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, "LKG file", string(raw))
	if bytes.Contains(raw, []byte("partner-api-key")) {
		t.Errorf("LKG file shows secret names in the clear")
	}
	var env map[string]any
	if err := json.Unmarshal(raw, &env); err != nil || env["version"] != float64(2) || env["region"] != "westeurope" || env["nonce"] == nil || env["ciphertext"] == nil || len(env) != 4 {
		t.Errorf("LKG file is not the documented envelope: %s (%v)", raw, err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(lkgPath)); len(entries) != 1 {
		t.Errorf("LKG directory holds %d entries, want only the file", len(entries))
	}

	// The store goes down; a new process starts with the same path and key.
	store.SetAvailable(false)
	clock.Advance(5*time.Minute - 1200*time.Millisecond)
	second := newCache(t, secrets.CacheConfig{Provider: provider, Region: "westeurope", LKGPath: lkgPath, LKGKey: lkgKey(7), Now: clock.Now, Logger: logger})
	if err := second.Load(within(t, 5*time.Second)); err != nil {
		t.Fatalf("Load with the store down and an LKG file: %v", err)
	}
	mustGet(t, second, "partner-api-key", apiKeyV1)
	mustGet(t, second, "partner-signing-key", signKeyV1)
	st := second.Status()
	if st.Source != "last-known-good" || !st.LastRefresh.IsZero() || st.LastError == "" || st.Age != 5*time.Minute {
		t.Fatalf("Status from LKG = %+v", st)
	}
	detail, err = second.Check(t.Context())
	if err == nil || !errors.Is(err, health.ErrDegraded) {
		t.Fatalf("Check from LKG = %q, %v; want a degraded error", detail, err)
	}
	if detail != "store unreachable, serving last-known-good from 5m ago" {
		t.Errorf("Check detail = %q", detail)
	}
	assertNoSecret(t, "Check", detail, err.Error(), st.LastError)

	// A third process with the wrong key: neither source works.
	third := newCache(t, secrets.CacheConfig{Provider: provider, Region: "westeurope", LKGPath: lkgPath, LKGKey: lkgKey(8), Logger: logger})
	err = third.Load(within(t, 5*time.Second))
	if err == nil || !strings.Contains(err.Error(), "cannot be decrypted") {
		t.Fatalf("Load with a wrong LKG key and the store down = %v, want a decryption error", err)
	}
	assertNoSecret(t, "Load error", err.Error())
	if _, err := third.Get("partner-api-key"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("Get after a failed Load = %v, want ErrNotFound", err)
	}
	if _, err := third.Check(t.Context()); err == nil || errors.Is(err, health.ErrDegraded) {
		t.Fatalf("Check after a failed Load = %v, want unhealthy", err)
	}
	assertNoSecret(t, "logs", logs.String())
}

func TestLoadFailsWithoutStoreOrLKG(t *testing.T) {
	store, ts := startStore(t, "")
	store.SetAvailable(false)
	provider := secrets.HTTPProvider{BaseURL: ts.URL, Client: ts.Client()}
	for _, cfg := range []secrets.CacheConfig{
		{Provider: provider},
		{Provider: provider, Region: "westeurope", LKGPath: filepath.Join(t.TempDir(), "never-written"), LKGKey: lkgKey(1)},
	} {
		c := newCache(t, cfg)
		if err := c.Load(within(t, 5*time.Second)); err == nil {
			t.Fatalf("Load with no source succeeded (LKGPath %q)", cfg.LKGPath)
		}
	}
}

// The store accepts the connection and never answers: Load gives up when
// its context ends (before the provider's own, longer, timeout) and
// falls back to the LKG copy.
func TestLoadFallsBackWhenStoreHangs(t *testing.T) {
	store, ts := startStore(t, "")
	store.Set("partner-api-key", apiKeyV1)
	store.Set("partner-signing-key", signKeyV1)
	provider := secrets.HTTPProvider{BaseURL: ts.URL, Client: ts.Client(), Timeout: time.Minute}
	lkgPath := filepath.Join(t.TempDir(), "secrets.lkg")
	if err := newCache(t, secrets.CacheConfig{Provider: provider, Region: "westeurope", LKGPath: lkgPath, LKGKey: lkgKey(3)}).Load(within(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	store.SetMode(secretstore.Hang)
	c := newCache(t, secrets.CacheConfig{Provider: provider, Region: "westeurope", LKGPath: lkgPath, LKGKey: lkgKey(3)})
	start := time.Now()
	if err := c.Load(within(t, 200*time.Millisecond)); err != nil {
		t.Fatalf("Load with a hanging store: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Load took %s", d)
	}
	mustGet(t, c, "partner-signing-key", signKeyV1)
	if st := c.Status(); st.Source != "last-known-good" {
		t.Fatalf("Source = %q", st.Source)
	}
}

// A rotated secret is used within one refresh interval, without a restart,
// and the LKG copy follows.
func TestRunPicksUpRotation(t *testing.T) {
	store, ts := startStore(t, storeToken)
	store.Set("partner-api-key", apiKeyV1)
	store.Set("partner-signing-key", signKeyV1)
	provider := secrets.HTTPProvider{BaseURL: ts.URL, Token: storeToken, Client: ts.Client(), Timeout: time.Second}
	lkgPath := filepath.Join(t.TempDir(), "secrets.lkg")
	c := newCache(t, secrets.CacheConfig{Provider: provider, Refresh: 10 * time.Millisecond, Region: "westeurope", LKGPath: lkgPath, LKGKey: lkgKey(5)})
	if err := c.Load(within(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { stop(); <-done }()

	store.Set("partner-api-key", apiKeyV2)
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := c.Get("partner-api-key")
		if err != nil {
			t.Fatal(err)
		}
		if v.Reveal() == apiKeyV2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rotated secret was not picked up within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	<-done

	raw, _ := os.ReadFile(lkgPath)
	assertNoSecret(t, "LKG file", string(raw))
	store.SetAvailable(false)
	fresh := newCache(t, secrets.CacheConfig{Provider: provider, Region: "westeurope", LKGPath: lkgPath, LKGKey: lkgKey(5)})
	if err := fresh.Load(within(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	mustGet(t, fresh, "partner-api-key", apiKeyV2)
}

// The store goes down after Load: Get keeps serving from memory, Check
// reports degraded, and both recover when the store does.
func TestStoreDownAfterLoadKeepsServing(t *testing.T) {
	store, ts := startStore(t, "")
	store.Set("partner-api-key", apiKeyV1)
	store.Set("partner-signing-key", signKeyV1)
	provider := secrets.HTTPProvider{BaseURL: ts.URL, Client: ts.Client(), Timeout: time.Second}
	c := newCache(t, secrets.CacheConfig{Provider: provider, Refresh: 10 * time.Millisecond})
	if err := c.Load(within(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { stop(); <-done }()

	store.SetAvailable(false)
	waitFor(t, "the refresh to fail", func() bool { return c.Status().LastError != "" })
	mustGet(t, c, "partner-api-key", apiKeyV1)
	detail, err := c.Check(t.Context())
	if !errors.Is(err, health.ErrDegraded) || !strings.HasPrefix(detail, "store unreachable, serving secrets fetched ") {
		t.Fatalf("Check with the store down = %q, %v", detail, err)
	}
	if st := c.Status(); st.Source != "provider" || st.LastRefresh.IsZero() {
		t.Fatalf("Status with the store down = %+v", st)
	}
	assertNoSecret(t, "Check", detail, err.Error())

	store.SetAvailable(true)
	waitFor(t, "the refresh to work again", func() bool { _, err := c.Check(t.Context()); return err == nil })
	mustGet(t, c, "partner-api-key", apiKeyV1)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Run on a fake clock: a rotation lands at the next tick, a secret deleted
// at the source degrades the check but keeps serving, and the refresh
// interval is the default 30 s.
func TestRunOnFakeClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		env := map[string]string{
			"CONTOSO_SECRET_PARTNER_API_KEY":     apiKeyV1,
			"CONTOSO_SECRET_PARTNER_SIGNING_KEY": signKeyV1,
		}
		getenv := func(k string) string { mu.Lock(); defer mu.Unlock(); return env[k] }
		setenv := func(k, v string) { mu.Lock(); defer mu.Unlock(); env[k] = v }

		c := newCache(t, secrets.CacheConfig{Provider: secrets.EnvProvider{Getenv: getenv}})
		if err := c.Load(t.Context()); err != nil {
			t.Fatal(err)
		}
		loadedAt := time.Now()
		ctx, stop := context.WithCancel(t.Context())
		defer stop()
		go c.Run(ctx)

		setenv("CONTOSO_SECRET_PARTNER_API_KEY", apiKeyV2)
		time.Sleep(29 * time.Second)
		synctest.Wait()
		mustGet(t, c, "partner-api-key", apiKeyV1)
		time.Sleep(time.Second)
		synctest.Wait()
		mustGet(t, c, "partner-api-key", apiKeyV2)
		if st := c.Status(); !st.LastRefresh.Equal(loadedAt.Add(30*time.Second)) || st.Age != 0 {
			t.Fatalf("Status after the tick = %+v", st)
		}

		setenv("CONTOSO_SECRET_PARTNER_SIGNING_KEY", "")
		time.Sleep(30 * time.Second)
		synctest.Wait()
		mustGet(t, c, "partner-signing-key", signKeyV1)
		detail, err := c.Check(t.Context())
		if !errors.Is(err, health.ErrDegraded) || detail != "secret missing from the store, serving secrets fetched 30s ago" {
			t.Fatalf("Check after the secret vanished = %q, %v", detail, err)
		}
		if st := c.Status(); !strings.Contains(st.LastError, "partner-signing-key") {
			t.Fatalf("LastError = %q", st.LastError)
		}
	})
}

func TestNewCacheValidatesConfig(t *testing.T) {
	p := secrets.EnvProvider{}
	for name, cfg := range map[string]secrets.CacheConfig{
		"no provider":         {Names: stampNames},
		"no names":            {Provider: p},
		"bad name":            {Provider: p, Names: []string{"Partner_Key"}},
		"LKG path, no key":    {Provider: p, Names: stampNames, Region: "westeurope", LKGPath: "x"},
		"LKG key of 16 bytes": {Provider: p, Names: stampNames, Region: "westeurope", LKGPath: "x", LKGKey: make([]byte, 16)},
		"LKG path, no region": {Provider: p, Names: stampNames, LKGPath: "x", LKGKey: lkgKey(1)},
	} {
		if _, err := secrets.NewCache(cfg); err == nil {
			t.Errorf("NewCache(%s) succeeded", name)
		}
	}
}

func TestGetUnknownName(t *testing.T) {
	c := newCache(t, secrets.CacheConfig{Provider: secrets.EnvProvider{Getenv: mapEnv(map[string]string{
		"CONTOSO_SECRET_PARTNER_API_KEY": apiKeyV1, "CONTOSO_SECRET_PARTNER_SIGNING_KEY": signKeyV1,
	})}})
	if _, err := c.Get("partner-api-key"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("Get before Load = %v", err)
	}
	if err := c.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get("other-secret"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("Get of a name not configured = %v", err)
	}
}

// refusedLKG puts lkg in place as the westeurope stamp's LKG file, takes
// the store down and checks that a new cache refuses the file, saying why
// (want) in its error and in one log line that names the file, and that
// it serves nothing from it. Then the store comes back: the next
// successful fetch replaces the file with one this stamp opens.
func refusedLKG(t *testing.T, lkg []byte, key []byte, want string) {
	t.Helper()
	store, ts := startStore(t, storeToken)
	store.Set("partner-api-key", apiKeyV1)
	store.Set("partner-signing-key", signKeyV1)
	provider := secrets.HTTPProvider{BaseURL: ts.URL, Token: storeToken, Client: ts.Client(), Timeout: time.Second}
	path := filepath.Join(t.TempDir(), "stamps", "westeurope", "secrets.lkg")
	if err := keyfile.Write(path, lkg); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cfg := secrets.CacheConfig{Provider: provider, Region: "westeurope", LKGPath: path, LKGKey: key, Logger: testLogger(t, &logs)}

	store.SetAvailable(false)
	c := newCache(t, cfg)
	err := c.Load(within(t, 5*time.Second))
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Load from the refused file with the store down = %v; want an error naming %s and saying %q", err, path, want)
	}
	if _, err := c.Get("partner-api-key"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("Get after the refusal = %v: a refused file served a value", err)
	}
	var refusal map[string]any
	for line := range strings.Lines(logs.String()) {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && strings.HasPrefix(rec["msg"].(string), "refusing the last-known-good file") {
			refusal = rec
		}
	}
	if refusal == nil || refusal["level"] != "ERROR" || refusal["file"] != path ||
		!strings.Contains(refusal["msg"].(string), "not sealed for this region or is of another format version") ||
		!strings.Contains(refusal["msg"].(string), "cannot start from it while the secret store is down") ||
		!strings.Contains(refusal["error"].(string), want) {
		t.Fatalf("no clear log line about the refused file; logs:\n%s", logs.String())
	}
	assertNoSecret(t, "logs", logs.String())

	// The store answers again: the same cache loads and replaces the file,
	// and a new instance starts from the replacement while the store is down.
	store.SetAvailable(true)
	if err := c.Load(within(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil || bytes.Equal(raw, lkg) {
		t.Fatalf("the refused file was not replaced (%v)", err)
	}
	store.SetAvailable(false)
	fresh := newCache(t, cfg)
	if err := fresh.Load(within(t, 5*time.Second)); err != nil {
		t.Fatalf("Load from the replaced file: %v", err)
	}
	mustGet(t, fresh, "partner-signing-key", signKeyV1)
	if st := fresh.Status(); st.Source != secrets.SourceLastKnownGood {
		t.Fatalf("Source = %q", st.Source)
	}
}

// A copy of another region's LKG file, sealed with the same key, is
// refused: the region is bound into the file's additional data.
func TestLKGFileOfAnotherRegionIsRefused(t *testing.T) {
	store, ts := startStore(t, storeToken)
	store.Set("partner-api-key", apiKeyV1)
	store.Set("partner-signing-key", signKeyV1)
	eastus := filepath.Join(t.TempDir(), "stamps", "eastus", "secrets.lkg")
	c := newCache(t, secrets.CacheConfig{Provider: secrets.HTTPProvider{BaseURL: ts.URL, Token: storeToken, Client: ts.Client()},
		Region: "eastus", LKGPath: eastus, LKGKey: lkgKey(4)})
	if err := c.Load(within(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	copied, err := os.ReadFile(eastus)
	if err != nil {
		t.Fatal(err)
	}
	refusedLKG(t, copied, lkgKey(4), `sealed for region "eastus", this stamp serves "westeurope"`)
}

// A file of format version 1 (written by the version 1 code, same key and
// secrets: a rolled-back or pre-upgrade file) is refused the same way.
func TestLKGFileOfAnOlderFormatIsRefused(t *testing.T) {
	v1, err := os.ReadFile("testdata/lkg-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	refusedLKG(t, v1, lkgKey(7), "format version 1, this stamp reads version 2")
}

// An LKG file that group or others can read is refused on read, with the
// fix in the error; the next write makes it private again.
func TestLKGFileReadableByOthersIsRefused(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("permission bits mean nothing on Windows")
	}
	store, ts := startStore(t, storeToken)
	store.Set("partner-api-key", apiKeyV1)
	store.Set("partner-signing-key", signKeyV1)
	path := filepath.Join(t.TempDir(), "secrets.lkg")
	cfg := secrets.CacheConfig{Provider: secrets.HTTPProvider{BaseURL: ts.URL, Token: storeToken, Client: ts.Client(), Timeout: time.Second},
		Region: "westeurope", LKGPath: path, LKGKey: lkgKey(6)}
	if err := newCache(t, cfg).Load(within(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	store.SetAvailable(false)
	c := newCache(t, cfg)
	err := c.Load(within(t, 5*time.Second))
	if !errors.Is(err, keyfile.ErrInsecure) || !strings.Contains(err.Error(), "mode 0644") || !strings.Contains(err.Error(), "chmod 600 "+path) {
		t.Fatalf("Load from a 0644 LKG file with the store down = %v; want a refusal with the fix", err)
	}
	if _, err := c.Get("partner-api-key"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("Get after the refusal = %v", err)
	}
	store.SetAvailable(true)
	if err := c.Load(within(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("after the next fetch the LKG file is %v, %v; want mode 0600", fi.Mode().Perm(), err)
	}
}
