package main

import (
	"io"
	"slices"
	"strings"
	"testing"
)

// contoso host refuses what it cannot run before it connects to anything.
func TestHostCommandRefusesBadArguments(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"host"}, "-region is required"},
		{[]string{"host", "--region", "westeurope", "--instances", "0"}, "want 1 or more"},
		{[]string{"host", "--region", "westeurope", "stamp-flag"}, "the stamps' flags go after --"},
		{[]string{"host", "--region", "westeurope", "--", "--listen", "127.0.0.1:9000"}, "the host sets --listen"},
		{[]string{"host", "--region", "westeurope", "--", "--release=v2"}, "the host sets --release"},
		{[]string{"host", "--region", "westeurope", "--listen", "0.0.0.0:8081"}, "wildcard"},
		{[]string{"host", "--region", "westeurope", "--advertise", "https://stamp-weu-1.contoso.example:8081"}, "give no port"},
		{[]string{"host", "--region", "westeurope", "--env", "staging"}, "want dev or prod"},
		{[]string{"host", "--region", "westeurope", "--no-such-flag"}, "not defined"},
	} {
		err := run(t.Context(), tt.args, func(string) string { return "" }, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run(%q) = %v, want an error with %q", tt.args, err, tt.want)
		}
	}
}

// A stamp gets only the variables it reads from the host's environment.
func TestHostPassesTheStampsTheirVariables(t *testing.T) {
	vars := map[string]string{
		"CONTOSO_LKG_KEY": "00ff", "CONTOSO_EDGE_CREDENTIAL": "edge-secret", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://ops:4318",
		"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "Authorization=Bearer%20t", "CONTOSO_SECRET_PARTNER_API_KEY": "k",
		"HOME": "/root", "CONTOSO_REGISTRY_PASSWORD": "registry-secret", "CONTOSO_ADMIN_TOKEN": "admin",
	}
	got := stampEnv(func(k string) string { return vars[k] })
	slices.Sort(got)
	want := []string{"CONTOSO_EDGE_CREDENTIAL=edge-secret", "CONTOSO_LKG_KEY=00ff", "CONTOSO_SECRET_PARTNER_API_KEY=k",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://ops:4318", "OTEL_EXPORTER_OTLP_TRACES_HEADERS=Authorization=Bearer%20t"}
	if !slices.Equal(got, want) {
		t.Errorf("stamp environment %q, want %q", got, want)
	}
}
