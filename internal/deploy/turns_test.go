package deploy_test

import (
	"os"
	"testing"

	"github.com/contoso/shoes/internal/deploy/deploytest"
)

// TestMain runs this package's tests in turn with the other packages that
// start whole deployments (deploytest.RunInTurn).
func TestMain(m *testing.M) { os.Exit(deploytest.RunInTurn(m)) }
