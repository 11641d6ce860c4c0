// Package loadtest generates launch-day load against the edge and reports
// what the shop did with it.
//
// A run is open-loop: requests leave on a schedule (a [Profile]: a linear
// ramp, a hold at the peak rate, then a launch spike on the launch
// products) whether or not earlier ones have been answered, so a slow shop
// shows up as latency and errors rather than as a quietly lower rate. The
// generator is vegeta used as a library: a Profile is its Pacer, and a
// targeter builds each request of one of five flows (browse the catalog,
// open a product page, comment, put a size in the cart, check out) for a
// client in one of the configured regions.
//
// Every answer is classified by flow, client region, status and the
// region that served it (X-Served-Region). Latencies go into fixed
// logarithmic histograms ([Histogram]), so memory does not grow with the
// number of requests. After the schedule ends the runner follows every
// accepted order until it is confirmed or rejected, then reads the launch
// SKUs' stock back and checks that no unit was sold twice; with
// Config.Conservation it also reads back every SKU its checkouts named and
// accounts for every unit: in stock, held, or sold to one of its orders.
//
// The package speaks only the shop's public HTTP API, through the edge, as
// a client would: it imports nothing of the shop itself.
package loadtest
