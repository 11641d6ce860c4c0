package secrets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// envPrefix starts the environment variable that holds a secret: the secret
// "partner-api-key" is read from CONTOSO_SECRET_PARTNER_API_KEY.
const envPrefix = "CONTOSO_SECRET_"

// maxFileBytes bounds a mounted secret file; a larger file is an error, not
// a secret.
const maxFileBytes = 64 << 10

// EnvProvider reads secrets from environment variables (name
// "partner-api-key" -> CONTOSO_SECRET_PARTNER_API_KEY) or, when a Dir is set,
// from files Dir/<name> (mounted secrets; trailing newline trimmed). Files
// win over env. An empty value counts as missing, so an unset variable and
// a variable set to "" are the same.
type EnvProvider struct {
	// Getenv looks up an environment variable (os.Getenv in main, a map in
	// tests). nil: no environment source, only files.
	Getenv func(string) string
	// Dir is the directory of mounted secret files. Empty: no file source.
	Dir string
}

// envName returns the environment variable that holds the named secret.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Fetch reads the named secrets. It returns an error wrapping ErrNotFound
// naming every secret found in neither the files nor the environment.
func (p EnvProvider) Fetch(ctx context.Context, names []string) (map[string]Value, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkNames(names); err != nil {
		return nil, err
	}
	out := make(map[string]Value, len(names))
	var missing []string
	for _, name := range names {
		s, err := p.lookup(name)
		if err != nil {
			return nil, err
		}
		if s == "" {
			missing = append(missing, name)
			continue
		}
		out[name] = NewValue(s)
	}
	if len(missing) > 0 {
		return nil, notFound(missing)
	}
	return out, nil
}

// lookup returns the named secret from its file, else from the environment,
// else "". name has been validated, so it cannot leave Dir.
func (p EnvProvider) lookup(name string) (string, error) {
	if p.Dir != "" {
		s, err := readSecretFile(filepath.Join(p.Dir, name))
		switch {
		case err == nil && s != "":
			return s, nil
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return "", err
		}
	}
	if p.Getenv != nil {
		return p.Getenv(envName(name)), nil
	}
	return "", nil
}

// readSecretFile reads a mounted secret, trimming trailing newlines. Its
// errors name the file, never its content.
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		return "", fmt.Errorf("secrets: read secret file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("secrets: read secret file %s: %w", path, err)
	}
	if len(b) > maxFileBytes {
		return "", fmt.Errorf("secrets: secret file %s is larger than %d bytes", path, maxFileBytes)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
