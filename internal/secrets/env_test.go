package secrets_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contoso/shoes/internal/secrets"
)

func mapEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestEnvProviderSourcesAndPrecedence(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "partner-api-key"), "key-from-file\n")
	writeFile(t, filepath.Join(dir, "crlf-secret"), "crlf-value\r\n")
	writeFile(t, filepath.Join(dir, "empty-file"), "\n")
	env := mapEnv(map[string]string{
		"CONTOSO_SECRET_PARTNER_API_KEY":     "key-from-env",
		"CONTOSO_SECRET_PARTNER_SIGNING_KEY": "signing-from-env",
		"CONTOSO_SECRET_EMPTY_FILE":          "empty-file-env",
	})
	for _, tc := range []struct {
		name  string
		p     secrets.EnvProvider
		names []string
		want  map[string]string
	}{
		{"env only", secrets.EnvProvider{Getenv: env}, []string{"partner-api-key", "partner-signing-key"},
			map[string]string{"partner-api-key": "key-from-env", "partner-signing-key": "signing-from-env"}},
		{"files win over env", secrets.EnvProvider{Getenv: env, Dir: dir}, []string{"partner-api-key", "partner-signing-key"},
			map[string]string{"partner-api-key": "key-from-file", "partner-signing-key": "signing-from-env"}},
		{"files only, newline trimmed", secrets.EnvProvider{Dir: dir}, []string{"partner-api-key", "crlf-secret"},
			map[string]string{"partner-api-key": "key-from-file", "crlf-secret": "crlf-value"}},
		{"empty file falls back to env", secrets.EnvProvider{Getenv: env, Dir: dir}, []string{"empty-file"},
			map[string]string{"empty-file": "empty-file-env"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.p.Fetch(t.Context(), tc.names)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("Fetch returned %d secrets, want %d", len(got), len(tc.want))
			}
			for n, w := range tc.want {
				if got[n].Reveal() != w {
					t.Errorf("%s = %q, want %q", n, got[n].Reveal(), w)
				}
			}
		})
	}
}

func TestEnvProviderMissing(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "partner-api-key"), "key-from-file")
	for _, p := range []secrets.EnvProvider{
		{},
		{Getenv: mapEnv(map[string]string{"CONTOSO_SECRET_PARTNER_API_KEY": "key-from-env", "CONTOSO_SECRET_SIGNING_KEY": ""})},
		{Dir: dir},
	} {
		_, err := p.Fetch(t.Context(), []string{"partner-api-key", "signing-key"})
		if !errors.Is(err, secrets.ErrNotFound) {
			t.Fatalf("Fetch with a missing secret = %v, want ErrNotFound", err)
		}
		if !strings.Contains(err.Error(), "signing-key") || strings.Contains(err.Error(), "key-from") {
			t.Errorf("error %q should name the missing secret and no value", err)
		}
	}
}

func TestEnvProviderRejectsBadNames(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "outside"), "must-not-be-read")
	p := secrets.EnvProvider{Dir: filepath.Join(dir, "mounted")}
	for _, name := range []string{"../outside", "UPPER", "", "-lead", "a/b", strings.Repeat("a", 64)} {
		got, err := p.Fetch(t.Context(), []string{name})
		if err == nil || errors.Is(err, secrets.ErrNotFound) || got != nil {
			t.Errorf("Fetch(%q) = %v, %v; want an invalid-name error", name, got, err)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
