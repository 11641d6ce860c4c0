// Package edge is the global entry point: one point of presence per region that sends each request to the nearest healthy stamp, retries idempotent requests elsewhere, and explains its decisions.
//
// # What the edge forwards
//
// The edge is the only public way to the stamps, so it forwards only the
// public API and answers everything else itself, before any stamp is
// reached:
//
//   - Paths under /api/ (any method but CONNECT and TRACE, which get 405),
//     and GET or HEAD /health/live and /health/ready (other methods: 405).
//   - Anything else is 404: a stamp's /metrics (the whole deployment's
//     telemetry), /health/stamp (the edge's own probes), /ops/..., unknown
//     paths.
//   - The request target must be origin-form, a path. Absolute-form
//     ("GET http://host/x", even naming the edge itself), authority-form
//     (CONNECT host:port), asterisk-form (*), an opaque or userinfo target
//     ("GET x:@host:port/x") get 400. (OPTIONS * is answered by net/http
//     itself, 200 with no body, and never reaches the edge's handler.)
//   - The decoded path must be clean: no "." or ".." segment, encoded or
//     not, no empty segment ("//") but a trailing slash, and no backslash;
//     otherwise 400, so that no stamp can be made to redirect or resolve
//     elsewhere.
//
// The upstream URL is built from its parts (the stamp's scheme and address,
// the client's path and query), never by joining strings.
//
// # Headers and framing
//
// Hop-by-hop headers (Connection, Keep-Alive, Proxy-*, TE, Trailer,
// Transfer-Encoding, Upgrade) and every header a Connection header names
// are dropped in both directions. X-Edge-Credential and X-Request-Id are
// always the edge's own, set after that; so is the trace context (traceparent,
// tracestate, baggage) when telemetry is on. A client can neither remove
// them nor keep its own by naming them in Connection.
//
// The edge reframes every request body it forwards: a known length, or
// chunked, never the client's framing. net/http's server refuses before the
// handler runs: conflicting or malformed Content-Length headers (400), a
// Transfer-Encoding other than exactly one "chunked" (501), a Host header
// with user information or several Host headers, invalid header names or
// values (400), headers over the server's limit (431). It merges identical
// Content-Length headers, drops Content-Length beside Transfer-Encoding:
// chunked (the chunked framing wins), ignores Transfer-Encoding in HTTP/1.0,
// and joins an obs-folded header line with a space. A chunked body that
// turns out invalid fails as the edge reads it: 400, and the stamp gets no
// complete request. GET and HEAD bodies are not forwarded; a request
// pipelined behind a body is a request of its own, checked like any other.
//
// # Whose fault
//
// A failure that is the client's (a request that cannot be built as sent, a
// body that fails or runs over the limit) is answered 400 or 413 and never
// counts against a stamp; a client that goes away says nothing of the
// stamp either. Only no answer, or a 502, 503 or 504, counts towards
// ejecting a stamp and is retried elsewhere.
//
// # Releases
//
// While a release is under way, Config.Traffic delivers the release
// controller's traffic table (Weights: region → release → percent). Every
// POP applies each table as it arrives, before the next request: in a
// region the table lists, each release takes its percent of the region's
// traffic whatever its number of stamps, and a stamp whose release is at
// 0 % (or not listed) is on standby. A stamp on standby is still probed and
// shown, but takes no request, as primary, retry or fail-open choice, while
// any other stamp exists (see Decide); /ops/edge shows each stamp's release,
// weight and standby, and the split in force.
//
// # Stamps over TLS
//
// A stamp announced with an https URL is probed and reached over TLS,
// verified with Config.StampTLS against the host the edge dials; it is never
// reached over plain http.
package edge
