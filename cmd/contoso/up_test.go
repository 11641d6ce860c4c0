package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

func TestUpProcessesRefusesWhatItCannotRun(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"TLS", []string{"--tls"}, "--tls is not supported with --processes"},
		{"two regions", []string{"--regions", "westeurope,eastus"}, "two cannot keep a quorum"},
		{"a missing binaries directory", []string{"--bin", "/nonexistent/bin"}, "/nonexistent/bin/nats-server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			var stdout strings.Builder
			args := append([]string{"up", "--processes", "--data", t.TempDir(), "--addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0"}, tc.args...)
			err := run(ctx, args, func(string) string { return "" }, &stdout, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("up %v: %v, want an error saying %q", tc.args, err, tc.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("printed %q before refusing", stdout.String())
			}
		})
	}
}
