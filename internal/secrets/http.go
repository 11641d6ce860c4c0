package secrets

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxStoreResponseBytes bounds what HTTPProvider reads from the store: far
// more than any real answer (values are at most 8 KiB each).
const maxStoreResponseBytes = 4 << 20

// HTTPProvider reads from the secret-store service (package secretstore) at
// BaseURL with a per-call timeout (zero: 2 s) and an optional bearer Token.
// It asks for every name in one call, GET /v1/secrets?names=a,b.
//
// Its String and GoString hide the token, so printing the provider (or a
// config that holds it) does not leak the credential.
type HTTPProvider struct {
	BaseURL string        // e.g. "http://127.0.0.1:8200"; no trailing /v1
	Token   string        // bearer token; empty: none sent
	Client  *http.Client  // nil: http.DefaultClient
	Timeout time.Duration // bound on one Fetch; zero: 2 s
}

// String describes the provider without its token.
func (p HTTPProvider) String() string {
	tok := "none"
	if p.Token != "" {
		tok = redacted
	}
	return fmt.Sprintf("secrets.HTTPProvider{BaseURL: %q, Token: %s, Timeout: %s}", p.BaseURL, tok, p.timeout())
}

// GoString is String, so %#v hides the token too.
func (p HTTPProvider) GoString() string { return p.String() }

func (p HTTPProvider) timeout() time.Duration {
	if p.Timeout <= 0 {
		return 2 * time.Second
	}
	return p.Timeout
}

// storeSecret is one secret as the store answers it.
type storeSecret struct {
	Name      string    `json:"name"`
	Value     string    `json:"value"`
	Version   int64     `json:"version"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// storeBatch is the store's answer to GET /v1/secrets?names=...
type storeBatch struct {
	Secrets []storeSecret `json:"secrets"`
	Missing []string      `json:"missing,omitempty"`
}

// Fetch reads the named secrets in one request. A name the store does not
// have is an error wrapping ErrNotFound; an unreachable, failing or hanging
// store is an error within the timeout. Errors never hold secret values.
func (p HTTPProvider) Fetch(ctx context.Context, names []string) (map[string]Value, error) {
	if err := checkNames(names); err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return map[string]Value{}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout())
	defer cancel()

	u := strings.TrimRight(p.BaseURL, "/") + "/v1/secrets?" + url.Values{"names": {strings.Join(names, ",")}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("secrets: secret store request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if p.Token != "" {
		req.Header.Set("Authorization", "Bearer "+p.Token)
	}
	client := p.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("secrets: secret store: %w", err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxStoreResponseBytes))
		resp.Body.Close()
	}()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, fmt.Errorf("secrets: secret store refused the credentials: %s", resp.Status)
	default:
		return nil, fmt.Errorf("secrets: secret store answered %s", resp.Status)
	}

	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStoreResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("secrets: secret store: reading the answer: %w", err)
	}
	if len(body) > maxStoreResponseBytes {
		return nil, fmt.Errorf("secrets: secret store answer larger than %d bytes", maxStoreResponseBytes)
	}
	var batch storeBatch
	if err := json.Unmarshal(body, &batch); err != nil {
		// The JSON error could quote part of the body, which holds values.
		return nil, fmt.Errorf("secrets: secret store answered malformed JSON")
	}
	wanted := make(map[string]bool, len(names))
	for _, n := range names {
		wanted[n] = true
	}
	out := make(map[string]Value, len(names))
	for _, s := range batch.Secrets {
		if wanted[s.Name] {
			out[s.Name] = NewValue(s.Value)
		}
	}
	var missing []string
	for _, n := range names {
		if _, ok := out[n]; !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return nil, notFound(missing)
	}
	return out, nil
}
