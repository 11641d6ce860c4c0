package worker_test

import (
	"os"
	"testing"

	"github.com/contoso/shoes/internal/deploy/deploytest"
)

// TestMain runs this package's tests in turn with the packages that start
// whole deployments (deploytest.RunInTurn). Its tests start store clusters
// and kill their servers under the race detector, and `go test ./...`
// runs it beside the verifier's, the last two packages in order: beside
// it, the control run of the verifier's retry proof saw stamps answer in
// 25-30 s (p99) and failed keyed requests whose retries timed out.
func TestMain(m *testing.M) { os.Exit(deploytest.RunInTurn(m)) }
