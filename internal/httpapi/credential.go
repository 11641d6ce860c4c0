package httpapi

import (
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
