// Package opsplane is the operations plane: it reads a running deployment
// over the network and judges it.
//
// Its inputs are what the parts publish:
//
//   - the stamps registry (every stamp instance announces its region and URL
//     there, once a second), which also times each region's heartbeats;
//   - each stamp instance's health report, read from its /health/stamp like
//     any scraper would, once a second;
//   - each point of presence's routing status, published on NATS
//     (edge.StatusSubject) once a second;
//   - the work queues' backlog, read from the store;
//   - the telemetry of every part, in a telemetry.Sink (fed by the OTLP
//     receiver in `contoso ops`, by the process's own pipeline in `up`).
//
// From them it computes the health model's signals, evaluates the model
// (internal/healthmodel), exports the verdicts as gauges, evaluates the SLOs
// and serves /ops/health, /ops/slo, /ops/edge, /ops/regions, /ops/traces/{id}
// and the dashboard's snapshot. `contoso ops` runs it as a process of its
// own; `contoso up` runs the same code inside its process, over loopback,
// so there is one implementation of the model's inputs.
package opsplane
