package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/contoso/shoes/internal/telemetry"
)

// startTelemetry gives a standalone command (stamp, edge) what up gives its
// parts: OpenTelemetry traces and metrics for service, exported over OTLP
// when the standard OTEL_* variables say so, and a logger whose warnings
// carry their trace. stop flushes the exporters and stops the collection.
func startTelemetry(service string, getenv func(string) string, log *slog.Logger) (*telemetry.Telemetry, *slog.Logger, func(), error) {
	tel, err := telemetry.New(context.Background(), telemetry.Config{Service: service, Getenv: getenv, Logger: log})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("telemetry: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tel.Run(runCtx); close(done) }()
	stop := func() {
		cancel()
		<-done
		ctx, cancelFlush := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancelFlush()
		if err := tel.Shutdown(ctx); err != nil {
			log.Warn("telemetry flush failed", "error", err)
		}
	}
	return tel, slog.New(telemetry.LogHandler(log.Handler(), tel.Sink())), stop, nil
}
