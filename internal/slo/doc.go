// Package slo declares the service level objectives of the shop and derives
// everything that watches them: the Prometheus recording and alerting rules
// (Rules), and an in-process evaluation of the same rules for the dashboard
// (Evaluate). docs/slo.md explains the objectives, the error budget math and
// every alert.
//
// Every flow (browse, comment, checkout) has an availability SLO (good: a
// response that is not 5xx) and a latency SLO (good: a response within a
// threshold), both measured on the requests the global entry point answers
// (component "edge"), from the request duration histogram
// http.server.request.duration (Prometheus:
// http_server_request_duration_seconds).
//
// # Definition file
//
// The SLOs are declared in slos.yaml, embedded and returned by Default; Load
// reads the same format:
//
//	slos:
//	  - name: browse-availability   # required; unique; a-z, 0-9 and inner dashes
//	    flow: browse                # required; value of the flow label
//	    kind: availability          # required; availability or latency
//	    objective: 0.999            # required; share of good requests, in (0, 1)
//	    period: 30d                 # error budget period: Nd, Nw or a Go duration in whole hours,
//	                                # at least 3d; absent: 30d
//	    minRequestRate: 0.1         # requests/s over an alert's long window below which
//	                                # no burn-rate alert fires; absent or 0: 0.1
//	    description: Catalogue pages are answered without a server error.  # optional
//	  - name: browse-latency
//	    flow: browse
//	    kind: latency
//	    objective: 0.99
//	    threshold: 0.25             # latency only, required there: seconds, a histogram
//	                                # bucket boundary (see Buckets)
//
// Unknown fields are an error, so a misspelt field does not silently fall
// back to its default.
//
// # Burn rate
//
// The error budget is 1 - objective. The burn rate over a window is the
// window's error ratio divided by the budget: at 1 the budget lasts exactly
// the period. Each SLO gets the three multiwindow alerts of the SRE workbook,
// whose thresholds are the burn rates that spend a share of the period's
// budget within the long window: 2 % in 1h (14.4 for 30 d, page, confirmed
// over 5m), 5 % in 6h (6, page, confirmed over 30m) and 10 % in 3d (1,
// ticket, confirmed over 6h).
package slo
