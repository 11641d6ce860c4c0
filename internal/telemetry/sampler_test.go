package telemetry

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// The standard sampler variables decide which traces are kept; a trace not
// kept still gives its client an id, and a bad setting keeps every trace.
func TestSamplerFromTheStandardVariables(t *testing.T) {
	for _, tc := range []struct {
		name, sampler, arg string
		kept               bool
	}{
		{"unset keeps every trace", "", "", true},
		{"always_off", "always_off", "", false},
		{"always_on", "always_on", "", true},
		{"parentbased_always_off", "parentbased_always_off", "", false},
		{"ratio zero", "parentbased_traceidratio", "0", false},
		{"ratio one", "traceidratio", "1", true},
		{"ratio without an argument is one", "parentbased_traceidratio", "", true},
		{"upper case", "ALWAYS_OFF", "", false},
		{"unknown sampler: the default", "sometimes", "", true},
		{"ratio out of range: the default", "traceidratio", "1.5", true},
		{"ratio not a number: the default", "parentbased_traceidratio", "half", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"OTEL_TRACES_SAMPLER": tc.sampler, "OTEL_TRACES_SAMPLER_ARG": tc.arg}
			tel := mustNew(t, Config{Getenv: func(k string) string { return env[k] }})
			srv := httptest.NewServer(tel.Middleware("stamp", "westeurope", nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
			defer srv.Close()
			resp, err := http.Get(srv.URL + "/api/products")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			id := resp.Header.Get(HeaderTraceID)
			if len(id) != 32 {
				t.Fatalf("X-Trace-Id = %q, want a trace id whether or not the trace is kept", id)
			}
			if _, kept := tel.Sink().Trace(id); kept != tc.kept {
				t.Fatalf("trace kept = %v, want %v", kept, tc.kept)
			}
		})
	}
}
