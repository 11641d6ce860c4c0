package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
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

// A health model file that cannot be read or is not a valid model is
// refused by up (either shape) and by ops before anything starts, with
// what is wrong.
func TestABadHealthModelFileIsRefusedBeforeAnythingStarts(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	files := []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "missing.yaml"), "no such file"},
		{"empty", write("empty.yaml", ""), "the file is empty"},
		{"not YAML", write("garbage.yaml", "{{{"), "--health-model"},
		{"an unknown field", write("unknown.yaml", "evaluation: {interval: 2s}\nentities: []\ncolour: red\n"), "colour"},
		{"no root", write("noroot.yaml", "evaluation: {interval: 2s}\nentities: []\n"), "root"},
	}
	commands := map[string][]string{
		"up":             {"up", "--data", t.TempDir(), "--addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0"},
		"up --processes": {"up", "--processes", "--data", t.TempDir(), "--addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0"},
		"ops":            {"ops", "--nats", "nats://127.0.0.1:1", "--listen", "127.0.0.1:0", "--otlp-listen", "127.0.0.1:0", "--data", t.TempDir()},
	}
	for cmd, base := range commands {
		for _, f := range files {
			t.Run(cmd+"/"+f.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				defer cancel()
				var stdout strings.Builder
				args := append(slices.Clone(base), "--health-model", f.path)
				err := run(ctx, args, func(string) string { return "" }, &stdout, io.Discard)
				if err == nil || !strings.Contains(err.Error(), f.want) {
					t.Fatalf("%s --health-model %s: %v, want an error saying %q", cmd, f.name, err, f.want)
				}
				if stdout.Len() != 0 {
					t.Errorf("printed %q before refusing", stdout.String())
				}
			})
		}
	}
}
