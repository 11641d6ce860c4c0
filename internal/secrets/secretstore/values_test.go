package secretstore_test

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/contoso/shoes/internal/keyfile"
	"github.com/contoso/shoes/internal/secrets/secretstore"
)

// writeValues writes a values file with the given mode and returns its
// path.
func writeValues(t *testing.T, body string, mode os.FileMode) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "secrets.json")
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// A value set through Values is in the file when it is read again, and
// the file stays private.
func TestValuesKeepAChangeAcrossLoads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store", "secrets.json")
	v, err := secretstore.LoadOrCreateValues(path, func() map[string]string { return map[string]string{"partner-api-key": "first"} })
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := v.Get("partner-api-key"); !ok || got != "first" {
		t.Fatalf("created value = %q, %v", got, ok)
	}
	if err := v.Set("partner-api-key", "second"); err != nil {
		t.Fatal(err)
	}
	if err := v.Set("Bad Name", "x"); err == nil {
		t.Fatal("Set accepted a name the store refuses")
	}
	again, err := secretstore.LoadValues(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := again.All(); len(got) != 1 || got["partner-api-key"] != "second" {
		t.Fatalf("reloaded values = %v", got)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("values file mode %v (%v), want 0600", info.Mode().Perm(), err)
	}
	// LoadOrCreateValues keeps what is there.
	kept, err := secretstore.LoadOrCreateValues(path, func() map[string]string { return map[string]string{"other": "x"} })
	if err != nil || len(kept.All()) != 1 {
		t.Fatalf("LoadOrCreateValues on an existing file = %v, %v", kept.All(), err)
	}
}

func TestLoadValuesRefusesWhatTheStoreCouldNotServe(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		mode       os.FileMode
		want       string
	}{
		{"readable by others", `{"a":"b"}`, 0o644, "chmod 600"},
		{"not JSON", `a=b`, 0o600, "JSON object of name to value"},
		{"a list", `["a"]`, 0o600, "JSON object of name to value"},
		{"a bad name", `{"Partner Key":"b"}`, 0o600, `"Partner Key"`},
		{"an empty value", `{"partner-api-key":""}`, 0o600, "must not be empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeValues(t, tc.body, tc.mode)
			_, err := secretstore.LoadValues(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadValues = %v, want an error saying %q", err, tc.want)
			}
		})
	}
	if _, err := secretstore.LoadValues(filepath.Join(t.TempDir(), "none.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadValues of a missing file = %v, want not-exist", err)
	}
	if _, err := secretstore.LoadValues(writeValues(t, `{}`, 0o644)); !errors.Is(err, keyfile.ErrInsecure) {
		t.Fatalf("LoadValues of a readable file = %v, want ErrInsecure", err)
	}
}

// With Persist, a PUT is in the file before it is served; when the write
// fails the PUT answers 500 and the old value stays.
func TestPutIsPersistedBeforeItIsServed(t *testing.T) {
	path := writeValues(t, `{"partner-api-key":"v1"}`, 0o600)
	values, err := secretstore.LoadValues(path)
	if err != nil {
		t.Fatal(err)
	}
	var fail atomic.Bool
	persist := func(name, value string) error {
		if fail.Load() {
			return errors.New("disk full")
		}
		return values.Set(name, value)
	}
	s, ts := start(t, secretstore.Config{Token: token, Persist: persist})
	for name, v := range values.All() {
		s.Set(name, v)
	}
	if r := call(t, ts, http.MethodPut, "/v1/secrets/partner-api-key", `{"value":"v2"}`, "application/json", token); r.status != http.StatusOK {
		t.Fatalf("PUT = %d %s", r.status, r.body)
	}
	reloaded, err := secretstore.LoadValues(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := reloaded.Get("partner-api-key"); got != "v2" {
		t.Fatalf("file holds %q after the PUT, want v2", got)
	}
	fail.Store(true)
	if r := call(t, ts, http.MethodPut, "/v1/secrets/partner-api-key", `{"value":"v3"}`, "application/json", token); r.status != http.StatusInternalServerError {
		t.Fatalf("PUT with a failing write = %d %s, want 500", r.status, r.body)
	} else if strings.Contains(string(r.body), "disk full") || strings.Contains(string(r.body), "v3") {
		t.Fatalf("500 body tells the client the cause or the value: %s", r.body)
	}
	got := decode[struct{ Value string }](t, call(t, ts, http.MethodGet, "/v1/secrets/partner-api-key", "", "", token))
	if got.Value != "v2" {
		t.Fatalf("after a failed PUT the store serves %q, want v2", got.Value)
	}
}
