package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strings"

	"github.com/contoso/shoes/internal/shop"
)

// HeaderEdgeCredential carries the per-deployment credential the edge adds
// to every request it forwards. Stamps accept API traffic only with it, so
// the edge is the only public way in (origins locked to their router).
const HeaderEdgeCredential = "X-Edge-Credential"

// RequireCredential answers 403 to requests under prefix that do not carry
// credential in header (compared in constant time). Other paths (health
// probes, operations endpoints with their own tokens) pass. An empty
// credential turns the check off.
func RequireCredential(header, credential, prefix string, log *slog.Logger) Middleware {
	want := []byte(credential)
	return func(next http.Handler) http.Handler {
		if credential == "" {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, prefix) && subtle.ConstantTimeCompare([]byte(r.Header.Get(header)), want) != 1 {
				WriteError(w, r, log, shop.Errorf(shop.KindForbidden, "", "API traffic is accepted only through the edge"))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// RequireBearer answers 401 to every request without "Authorization:
// Bearer token" (compared in constant time, over hashes so the length
// leaks nothing either). An empty token turns the check off.
func RequireBearer(token string, log *slog.Logger) Middleware {
	want := sha256.Sum256([]byte(token))
	return func(next http.Handler) http.Handler {
		if token == "" {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			sum := sha256.Sum256([]byte(got))
			if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
				WriteError(w, r, log, shop.Errorf(shop.KindUnauthorized, "", "a valid bearer token is required"))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
