// Package edge is the global entry point: one point of presence per region that sends each request to the nearest healthy stamp, retries idempotent requests elsewhere, and explains its decisions.
package edge
