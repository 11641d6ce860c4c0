package telemetry

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpCollector records the span names POSTed to /v1/traces.
type otlpCollector struct {
	mu      sync.Mutex
	names   []string
	headers []http.Header
	paths   []string
}

func (c *otlpCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paths = append(c.paths, r.Method+" "+r.URL.Path)
	c.headers = append(c.headers, r.Header.Clone())
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, _ := io.ReadAll(body)
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				c.names = append(c.names, sp.Name)
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	resp, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Write(resp)
}

func TestOTLPExport(t *testing.T) {
	for _, tc := range []struct {
		name     string
		env      map[string]string
		wantPath string
	}{
		{"base endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "{url}", "OTEL_METRICS_EXPORTER": "none"}, "POST /v1/traces"},
		{"base endpoint with slash, gzip, headers", map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "{url}/", "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip", "OTEL_METRICS_EXPORTER": "none",
			"OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=secret%20value",
		}, "POST /v1/traces"},
		{"traces endpoint wins", map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "{url}/custom/traces",
			"OTEL_METRICS_EXPORTER": "none",
		}, "POST /custom/traces"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			col := &otlpCollector{}
			srv := httptest.NewServer(col)
			defer srv.Close()
			env := map[string]string{}
			for k, v := range tc.env {
				if len(v) >= 5 && v[:5] == "{url}" {
					v = srv.URL + v[5:]
				}
				env[k] = v
			}
			tel, err := New(context.Background(), Config{Service: "contoso-test", Getenv: func(k string) string { return env[k] }})
			if err != nil {
				t.Fatal(err)
			}
			if !tel.p.otlp {
				t.Fatal("no OTLP exporter created")
			}
			_, span := tel.Tracer("test").Start(context.Background(), "place order")
			span.End()
			if err := tel.Shutdown(context.Background()); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			col.mu.Lock()
			defer col.mu.Unlock()
			if len(col.paths) == 0 || col.paths[0] != tc.wantPath {
				t.Fatalf("collector saw %v, want %s", col.paths, tc.wantPath)
			}
			if len(col.names) != 1 || col.names[0] != "place order" {
				t.Errorf("exported spans %v, want [place order]", col.names)
			}
			if want := env["OTEL_EXPORTER_OTLP_HEADERS"]; want != "" && col.headers[0].Get("x-api-key") != "secret value" {
				t.Errorf("x-api-key header = %q", col.headers[0].Get("x-api-key"))
			}
		})
	}
}

func TestNoOTLPWithoutEndpoint(t *testing.T) {
	for _, tc := range []struct {
		name   string
		getenv func(string) string
	}{
		{"nil getenv", nil},
		{"no variables", func(string) string { return "" }},
		{"exporter none", func(k string) string {
			return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none",
				"OTEL_METRICS_EXPORTER": "none"}[k]
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tel := mustNew(t, Config{Getenv: tc.getenv})
			if tel.p.otlp {
				t.Error("OTLP exporter created")
			}
		})
	}
}
