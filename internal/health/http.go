package health

import (
	"encoding/json"
	"net/http"
)

// LiveHandler answers 200 while the process serves HTTP; it calls no
// dependency.
func LiveHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(`{"status":"live"}` + "\n"))
	})
}

// ReadyHandler answers 200 when ready returns nil and 503 with the reason
// otherwise. ready must be O(1): it reads cached state, never a dependency.
func ReadyHandler(ready func() error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if err := ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]string{"status": "not-ready", "reason": err.Error()})
			return
		}
		_, _ = w.Write([]byte(`{"status":"ready"}` + "\n"))
	})
}

// StampHandler serves the cached report: 200 for healthy and degraded, 503
// for unhealthy (a drained stamp's report is unhealthy, with "drained":
// true). HEAD gets the status line only.
func (p *Prober) StampHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := p.Report()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Health-Status", rep.Status.String())
		code := http.StatusOK
		if rep.Status == Unhealthy {
			code = http.StatusServiceUnavailable
		}
		w.WriteHeader(code)
		if r.Method == http.MethodHead {
			return
		}
		_ = json.NewEncoder(w).Encode(rep)
	})
}
