package secrets_test

import (
	"io"
	"log/slog"
	"testing"
)

// testLogger returns a debug-level JSON logger writing to w.
func testLogger(t *testing.T, w io.Writer) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
