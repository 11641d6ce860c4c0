//go:build !unix

package stamp

import "time"

// processCPU is 0 where getrusage is not available: the load report's CPU
// stays 0.
func processCPU() time.Duration { return 0 }
