package arch

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/contoso/shoes"

// imports lists, per package of the module, the packages of the module it
// imports directly (tests excluded).
func imports(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	graph := map[string][]string{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, module+"/") {
				graph[strings.TrimPrefix(p.ImportPath, module+"/")] = append(graph[strings.TrimPrefix(p.ImportPath, module+"/")], strings.TrimPrefix(imp, module+"/"))
			}
		}
		if _, ok := graph[strings.TrimPrefix(p.ImportPath, module+"/")]; !ok {
			graph[strings.TrimPrefix(p.ImportPath, module+"/")] = nil
		}
	}
	return graph
}

func TestDependencyDirection(t *testing.T) {
	g := imports(t)
	if len(g) < 10 {
		t.Fatalf("go list found only %d packages: %v", len(g), g)
	}
	rules := []struct {
		pkg    string
		banned []string // packages pkg must not import directly
		only   []string // when set, the only packages of ours pkg may import
	}{
		{pkg: "internal/shop", only: []string{}},
		{pkg: "internal/readmodel", only: []string{"internal/shop"}},
		{pkg: "internal/httpapi", only: []string{"internal/shop"}},
		// The health vocabulary (health.Status) and the prober: the
		// standard library only, so that every part may share the one
		// status type.
		{pkg: "internal/health", only: []string{}},
		// The health model judges signals; of ours it knows only the
		// status type, never the prober, the stamps or the deployment.
		{pkg: "internal/healthmodel", only: []string{"internal/health"}},
		{pkg: "internal/netsim", only: []string{}},
		// Secret material on disk: the standard library only.
		{pkg: "internal/keyfile", only: []string{}},
		{pkg: "internal/auth", only: []string{"internal/shop", "internal/keyfile"}},
		{pkg: "internal/store", only: []string{"internal/shop", "internal/backoff"}},
		// Retries: the standard library only, so that every part may share
		// the one loop.
		{pkg: "internal/backoff", only: []string{}},
		// Waiting in tests: the standard library only, so that any
		// package's tests may use it.
		{pkg: "internal/poll", only: []string{}},
		{pkg: "internal/pki", only: []string{"internal/keyfile"}},
		// The order rules: the store and the vocabulary, never HTTP.
		{pkg: "internal/checkout", only: []string{"internal/shop", "internal/store"}},
		{pkg: "internal/worker", only: []string{"internal/shop", "internal/store", "internal/partner", "internal/backoff"}},
		{pkg: "internal/partner", only: []string{"internal/shop", "internal/httpapi"}},
		{pkg: "internal/secrets", only: []string{"internal/shop", "internal/health", "internal/keyfile"}},
		{pkg: "internal/secrets/secretstore", only: []string{"internal/shop", "internal/httpapi", "internal/secrets", "internal/keyfile"}},
		// The edge routes on what stamps say about themselves (their
		// health reports); it never reads the store directly (deploy hands
		// it the registry).
		{pkg: "internal/edge", only: []string{"internal/shop", "internal/httpapi", "internal/telemetry", "internal/ratelimit", "internal/health", "internal/backoff"}},
		{pkg: "internal/ratelimit", only: []string{}},
		{pkg: "internal/stamp", banned: []string{"internal/deploy", "internal/netsim"}},
		// Telemetry, SLOs and the dashboard know nothing of the shop's parts:
		// the composition root feeds them. The dashboard shows states in
		// the health vocabulary.
		{pkg: "internal/telemetry", only: []string{"internal/shop", "internal/httpapi", "internal/buildinfo"}},
		{pkg: "internal/slo", only: []string{}},
		{pkg: "internal/ops", only: []string{"internal/shop", "internal/httpapi", "internal/health"}},
		// Faults reach the deployment through the interface chaos declares.
		{pkg: "internal/chaos", only: []string{"internal/shop", "internal/httpapi"}},
		{pkg: "internal/release", only: []string{"internal/shop", "internal/httpapi", "internal/health"}},
		{pkg: "internal/buildinfo", only: []string{}},
		{pkg: "internal/artifact", only: []string{}},
		// Child processes: the standard library only, so that every
		// supervisor (the fleet, the host) runs them the same way.
		{pkg: "internal/child", only: []string{}},
		// A host runs stamps as processes and follows the releases: it
		// never builds a stamp or a deployment itself.
		{pkg: "internal/host", only: []string{"internal/artifact", "internal/buildinfo", "internal/child", "internal/launch", "internal/release", "internal/store"}},
		// Starts and drains travel between the operations plane and the
		// agents; the package knows the launcher interface and the store's
		// subjects, never a stamp or a deployment.
		{pkg: "internal/launch", only: []string{"internal/httpapi", "internal/release", "internal/store", "internal/shop"}},
	}
	for _, r := range rules {
		deps, ok := g[r.pkg]
		if !ok {
			t.Errorf("package %s not found", r.pkg)
			continue
		}
		for _, d := range deps {
			if slices.Contains(r.banned, d) || (r.only != nil && !slices.Contains(r.only, d)) {
				t.Errorf("%s imports %s, which the dependency rules forbid", r.pkg, d)
			}
		}
	}
	// Only the command, the test helpers and the fleet (the deployment as
	// processes, which runs the same parts) compose a whole deployment.
	for pkg, deps := range g {
		if slices.Contains(deps, "internal/deploy") && !strings.HasPrefix(pkg, "cmd/") && pkg != "internal/deploy/deploytest" && pkg != "internal/fleet" {
			t.Errorf("%s imports internal/deploy; only commands compose deployments", pkg)
		}
	}
}
