package worker

// Reserve exposes the reservation step of Order to the tests, which must
// run it from a stale view of an order to see it give back what it took.
var Reserve = (*Worker).reserve
