//go:build race

package edge_test

// raceEnabled: the race detector, which allocates beside the code it
// watches, is on.
const raceEnabled = true
