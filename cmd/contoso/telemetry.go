package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/contoso/shoes/internal/telemetry"
)

// startTelemetry gives a standalone command (stamp, pop, edge, secrets,
// partner) what up gives its parts: OpenTelemetry traces and metrics for
// service (a telemetry.Service constant) in region (empty: a global part),
// exported over OTLP when the standard OTEL_* variables say so, and a
// logger whose lines carry the trace of the request or message they are
// logged for. stop flushes the exporters and stops the collection.
func startTelemetry(service, region string, getenv func(string) string, log *slog.Logger) (*telemetry.Telemetry, *slog.Logger, func(), error) {
	return startTelemetryAs(telemetry.Identity{Service: service, Region: region}, getenv, log)
}

// startTelemetryAs is startTelemetry for a part that names more of its
// identity than its service and region: a stamp, its release.
func startTelemetryAs(id telemetry.Identity, getenv func(string) string, log *slog.Logger) (*telemetry.Telemetry, *slog.Logger, func(), error) {
	tel, stopTel, err := telemetry.Start(context.Background(), telemetry.Config{Service: id.Service, Region: id.Region, Version: id.Version, Zone: id.Zone, Getenv: getenv, Logger: log})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("telemetry: %w", err)
	}
	stop := func() {
		if err := stopTel(); err != nil {
			log.Warn("telemetry flush failed", "error", err)
		}
	}
	return tel, slog.New(telemetry.LogHandler(log.Handler(), tel.Sink())), stop, nil
}
