package main

import (
	"fmt"
	"runtime/debug"
	"strconv"
)

// defaultUpGCPercent is up's garbage collection target when neither -gogc
// nor GOGC says otherwise: a collection when the heap has grown by half of
// what was live, not by all of it (Go's default, 100). The one process
// holds three store servers, whose message-block buffers are most of its
// live heap; with Go's default its RSS passed 500 MB at 1,000 requests/s,
// with 50 it stayed at 361 MB, for more collector work (read p99 68 ms
// instead of 27 ms at that step). Unlike a memory limit, it has no cliff:
// past capacity the collector does not run without pause, and requests
// slow down instead of failing (docs/performance.md, Memory).
const defaultUpGCPercent = 50

// GC targets accepted by -gogc: below 10 the collector runs nearly all
// the time; above 1000 the heap may grow to eleven times what is live.
const (
	minGCPercent = 10
	maxGCPercent = 1000
)

// applyGCPercent sets the process's garbage collection target from -gogc
// (value, given when the flag was given) and returns a function that puts
// the previous target back. A GOGC in the environment is the runtime's
// already, and wins over the flag's default but not over the flag given.
func applyGCPercent(value string, given bool, getenv func(string) string) (restore func(), err error) {
	if !given && getenv("GOGC") != "" {
		return func() {}, nil
	}
	n, err := strconv.Atoi(value)
	if err != nil || n < minGCPercent || n > maxGCPercent {
		return nil, fmt.Errorf("-gogc must be a whole number from %d to %d, not %q", minGCPercent, maxGCPercent, value)
	}
	prev := debug.SetGCPercent(n)
	return func() { debug.SetGCPercent(prev) }, nil
}
