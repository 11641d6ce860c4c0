package worker

// Reserve exposes the reservation step of Order to the tests, which must
// run it from a stale view of an order to see it give back what it took.
var Reserve = (*Worker).reserve

// Commit exposes what reserve does once its reservation returned, so a
// test can interleave two processors' steps.
var Commit = (*Worker).commit
