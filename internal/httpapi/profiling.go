package httpapi

import (
	"net/http"
	"net/http/pprof"
)

// ProfilingPrefix is where Profiling serves.
const ProfilingPrefix = "/debug/pprof/"

// Profiling serves the Go runtime's profiles (net/http/pprof) under
// ProfilingPrefix: the index, cmdline, profile (CPU, ?seconds=N), symbol,
// trace and every named profile (heap, allocs, goroutine, block, mutex,
// threadcreate). A profile shows the process's code and data: mount it
// only on an operations listener, behind its guard and admin check, and
// only when asked (--pprof). A CPU profile or trace must end within the
// listener's write timeout (30 s on a stamp, 60 s on the operations
// addresses).
func Profiling() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+ProfilingPrefix, pprof.Index)
	mux.HandleFunc("GET "+ProfilingPrefix+"cmdline", pprof.Cmdline)
	mux.HandleFunc("GET "+ProfilingPrefix+"profile", pprof.Profile)
	mux.HandleFunc("GET "+ProfilingPrefix+"symbol", pprof.Symbol)
	mux.HandleFunc("POST "+ProfilingPrefix+"symbol", pprof.Symbol)
	mux.HandleFunc("GET "+ProfilingPrefix+"trace", pprof.Trace)
	return mux
}
