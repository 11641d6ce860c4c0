package worker_test

import (
	"os"
	"testing"

	"github.com/contoso/shoes/internal/deploy/deploytest"
)

// TestMain runs this package's tests in turn with the packages that start
// whole deployments (deploytest.RunInTurn). Its tests start store clusters
// and kill their servers under the race detector, and `go test ./...`
// would run it beside the verifier's, the last two packages in order,
// whose proofs judge a deployment under load. (It did not explain the
// control run's slow stamps it was first suspected of: with the worker
// waiting for its turn they answered as late.)
func TestMain(m *testing.M) { os.Exit(deploytest.RunInTurn(m)) }
