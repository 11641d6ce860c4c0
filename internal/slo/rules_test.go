package slo

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite testdata/rules.golden.yaml from Rules(Default())")

const golden = "testdata/rules.golden.yaml"

func TestRulesGolden(t *testing.T) {
	got, err := Rules(Default())
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestRulesGolden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Rules(Default()) differs from %s; if the change is intended, run go test -run TestRulesGolden -update and review the diff\n%s",
			golden, firstDiff(string(want), string(got)))
	}
}

// firstDiff shows the first line where want and got differ.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n want %q\n  got %q", i+1, wl, gl)
		}
	}
	return ""
}

func TestRulesDeterministic(t *testing.T) {
	slos := Default()
	first, err := Rules(slos)
	if err != nil {
		t.Fatal(err)
	}
	reversed := slices.Clone(slos)
	slices.Reverse(reversed)
	for range 5 {
		again, err := Rules(reversed)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, again) {
			t.Fatalf("Rules depends on the order of its input:\n%s", firstDiff(string(first), string(again)))
		}
	}
	if !slices.Equal(slos, Default()) {
		t.Error("Rules reordered its caller's slice")
	}
}

func TestRulesRejectsInvalid(t *testing.T) {
	for name, slos := range map[string][]SLO{
		"none":            nil,
		"objective":       {{Name: "a", Flow: "browse", Kind: Availability, Objective: 1.5}},
		"threshold":       {{Name: "a", Flow: "browse", Kind: Latency, Objective: 0.99, Threshold: 0.3}},
		"duplicate names": {{Name: "a", Flow: "browse", Kind: Availability, Objective: 0.9}, {Name: "a", Flow: "comment", Kind: Availability, Objective: 0.9}},
		"flow with quote": {{Name: "a", Flow: `br"owse`, Kind: Availability, Objective: 0.9}},
	} {
		if out, err := Rules(slos); err == nil {
			t.Errorf("%s: Rules succeeded:\n%s", name, out)
		}
	}
}

// parsedRules is the part of a rule file the tests read.
type parsedRules struct {
	Groups []struct {
		Name  string
		Rules []struct {
			Record, Alert, Expr, For string
			Labels, Annotations      map[string]string
		}
	}
}

func parseRules(t *testing.T, b []byte) parsedRules {
	t.Helper()
	var f parsedRules
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("rules are not YAML: %v", err)
	}
	return f
}

func TestRulesContent(t *testing.T) {
	out, err := Rules(Default())
	if err != nil {
		t.Fatal(err)
	}
	f := parseRules(t, out)
	var groups []string
	records := map[string]map[string]string{} // slo → record name → expr
	alerts := map[string]map[string]string{}  // slo → alert name → expr
	for _, g := range f.Groups {
		groups = append(groups, g.Name)
		for _, r := range g.Rules {
			slo := r.Labels["slo"]
			if r.Record != "" {
				if records[slo] == nil {
					records[slo] = map[string]string{}
				}
				records[slo][r.Record] = r.Expr
				continue
			}
			if alerts[slo] == nil {
				alerts[slo] = map[string]string{}
			}
			alerts[slo][r.Alert] = r.Expr
			if slo != "" && (r.Labels["flow"] == "" || r.Labels["severity"] == "" ||
				r.Annotations["summary"] == "" || r.Annotations["description"] == "") {
				t.Errorf("%s %s: labels %v annotations %v", slo, r.Alert, r.Labels, r.Annotations)
			}
		}
	}
	wantGroups := []string{"slo-browse-availability", "slo-browse-latency", "slo-checkout-availability",
		"slo-checkout-latency", "slo-comment-availability", "slo-comment-latency", "contoso-regions"}
	if !slices.Equal(groups, wantGroups) {
		t.Errorf("groups %v, want %v", groups, wantGroups)
	}
	for _, s := range Default() {
		for _, w := range []string{"5m", "30m", "1h", "6h", "3d"} {
			ratio := records[s.Name][RecordErrorRatio+w]
			if !strings.Contains(ratio, `component="edge"`) || !strings.Contains(ratio, "["+w+"]") {
				t.Errorf("%s %s: ratio %q", s.Name, w, ratio)
			}
			if rate := records[s.Name][RecordRequestRate+w]; !strings.Contains(rate, "["+w+"]") {
				t.Errorf("%s %s: request rate %q", s.Name, w, rate)
			}
		}
		for alert, want := range map[string][]string{
			AlertFastBurn:   {"ratio_rate1h", "ratio_rate5m", "> 14.4", "rate1h{", ">= 0.1"},
			AlertMediumBurn: {"ratio_rate6h", "ratio_rate30m", "> 6\n", "rate6h{", ">= 0.1"},
			AlertSlowBurn:   {"ratio_rate3d", "ratio_rate6h", "> 1\n", "rate3d{", ">= 0.1"},
		} {
			expr := alerts[s.Name][alert]
			for _, w := range want {
				if !strings.Contains(expr, w) {
					t.Errorf("%s %s: expr %q lacks %q", s.Name, alert, expr, w)
				}
			}
			if budget := "/ " + formatFloat(s.ErrorBudget()) + " >"; strings.Count(expr, budget) != 2 {
				t.Errorf("%s %s: expr %q does not divide both windows by the budget (%q)", s.Name, alert, expr, budget)
			}
		}
	}
	if got := records["checkout-latency"][RecordErrorRatio+"5m"]; !strings.Contains(got, `le=~"1|1\\.0"`) {
		t.Errorf("checkout latency ratio %q does not match both spellings of le 1", got)
	}
	if got := records["browse-latency"][RecordErrorRatio+"5m"]; !strings.Contains(got, `le="0.25"`) {
		t.Errorf("browse latency ratio %q does not select le 0.25", got)
	}
	if got := alerts[""][AlertRedundancyLost]; got != "contoso_regions_healthy < contoso_regions_total" {
		t.Errorf("RedundancyLost expr %q", got)
	}
	if got := alerts[""][AlertRegionsDown]; got != "contoso_regions_up < contoso_regions_total - 1" {
		t.Errorf("RegionsDown expr %q", got)
	}
}

// envRequirePromtool, set to 1, turns a missing promtool from a skip into a
// failure (CI sets it after installing promtool).
const envRequirePromtool = "CONTOSO_REQUIRE_PROMTOOL"

// promtool returns the path of promtool. Without one on PATH it skips the
// test, or fails it when CONTOSO_REQUIRE_PROMTOOL=1.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv(envRequirePromtool) == "1" {
			t.Fatalf("promtool not found on PATH and %s=1: install the Debian package prometheus", envRequirePromtool)
		}
		t.Skip("promtool not found: install the Debian package prometheus (apt-get install prometheus) to check the rules with Prometheus itself; CI installs it")
	}
	return p
}

func TestRulesPromtoolCheck(t *testing.T) {
	bin := promtool(t)
	out, err := Rules(Default())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := exec.CommandContext(t.Context(), bin, "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, res)
	}
	if !strings.Contains(string(res), "SUCCESS") {
		t.Fatalf("promtool check rules did not report success:\n%s", res)
	}
}

// The promtool unit test file format (rule unit tests of Prometheus).
type unitFile struct {
	RuleFiles          []string   `yaml:"rule_files"`
	EvaluationInterval string     `yaml:"evaluation_interval"`
	Tests              []unitTest `yaml:"tests"`
}

type unitTest struct {
	Interval    string        `yaml:"interval"`
	InputSeries []inputSeries `yaml:"input_series"`
	Alerts      []alertTest   `yaml:"alert_rule_test,omitempty"`
	Exprs       []exprTest    `yaml:"promql_expr_test,omitempty"`
}

type inputSeries struct {
	Series string `yaml:"series"`
	Values string `yaml:"values"`
}

type alertTest struct {
	EvalTime  string     `yaml:"eval_time"`
	Alertname string     `yaml:"alertname"`
	ExpAlerts []expAlert `yaml:"exp_alerts"`
}

type expAlert struct {
	ExpLabels      map[string]string `yaml:"exp_labels"`
	ExpAnnotations map[string]string `yaml:"exp_annotations"`
}

type exprTest struct {
	Expr       string      `yaml:"expr"`
	EvalTime   string      `yaml:"eval_time"`
	ExpSamples []expSample `yaml:"exp_samples"`
}

type expSample struct {
	Labels string  `yaml:"labels"`
	Value  float64 `yaml:"value"`
}

// edgeCount is the Prometheus count series of the edge's requests of flow
// answered with status.
func edgeCount(flow, status string) string {
	return fmt.Sprintf(`http_server_request_duration_seconds_count{component="edge",region="westeurope",flow=%q,http_route="GET /",http_request_method="GET",http_response_status_code=%q}`, flow, status)
}

func TestRulesPromtoolUnit(t *testing.T) {
	bin := promtool(t)
	out, err := Rules(Default())
	if err != nil {
		t.Fatal(err)
	}
	rules := parseRules(t, out)
	// fired is the alert alertname of slo (empty for the region alerts) as
	// promtool expects it, its annotations expanded for value.
	fired := func(alertname, slo, value string) expAlert {
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				if r.Alert != alertname || r.Labels["slo"] != slo {
					continue
				}
				labels := map[string]string{}
				for k, v := range r.Labels {
					labels[k] = v
				}
				if slo != "" {
					labels["kind"] = strings.TrimPrefix(slo, r.Labels["flow"]+"-")
				}
				ann := map[string]string{}
				for k, v := range r.Annotations {
					v = strings.ReplaceAll(v, `{{ printf "%.1f" $value }}`, value)
					ann[k] = strings.ReplaceAll(v, "{{ $value }}", value)
				}
				return expAlert{ExpLabels: labels, ExpAnnotations: ann}
			}
		}
		t.Fatalf("no alert %s for %q in the rules", alertname, slo)
		return expAlert{}
	}
	none := func(evalTime string, names ...string) []alertTest {
		var a []alertTest
		for _, n := range names {
			a = append(a, alertTest{EvalTime: evalTime, Alertname: n})
		}
		return a
	}
	burns := []string{AlertFastBurn, AlertMediumBurn, AlertSlowBurn}

	tests := []struct {
		name string
		test unitTest
	}{
		{
			name: "2% of browse requests fail for 1h15m: fast burn pages",
			test: unitTest{
				// 1000 requests a minute, 20 of them 5xx: error ratio 0.02,
				// burn rate 20 against the 0.1 % budget.
				InputSeries: []inputSeries{
					{edgeCount("browse", "200"), "0+980x75"},
					{edgeCount("browse", "503"), "0+20x75"},
				},
				Alerts: []alertTest{
					{EvalTime: "75m", Alertname: AlertFastBurn, ExpAlerts: []expAlert{fired(AlertFastBurn, "browse-availability", "20.0")}},
				},
				Exprs: []exprTest{
					{Expr: `round(10000 * slo:sli_error:ratio_rate1h{slo="browse-availability"})`, EvalTime: "75m", ExpSamples: []expSample{
						{Labels: `{slo="browse-availability",flow="browse",kind="availability"}`, Value: 200}}},
					{Expr: `round(10000 * slo:sli_error:ratio_rate5m{slo="browse-availability"})`, EvalTime: "75m", ExpSamples: []expSample{
						{Labels: `{slo="browse-availability",flow="browse",kind="availability"}`, Value: 200}}},
					{Expr: `round(60 * slo:sli_requests:rate1h{slo="browse-availability"})`, EvalTime: "75m", ExpSamples: []expSample{
						{Labels: `{slo="browse-availability",flow="browse",kind="availability"}`, Value: 1000}}},
				},
			},
		},
		{
			name: "a 3 minute blip after an hour of clean traffic does not page",
			test: unitTest{
				// 1h of clean traffic, then 3 minutes at 2 %: the 5m window
				// burns fast, the 1h window does not.
				InputSeries: []inputSeries{
					{edgeCount("browse", "200"), "0+1000x60 60980+980x3"},
					{edgeCount("browse", "503"), "0+0x60 20+20x3"},
				},
				Alerts: none("63m", burns...),
			},
		},
		{
			name: "errors stopped 10 minutes ago: the 1h window is still high, the 5m one is not, no fast page",
			test: unitTest{
				InputSeries: []inputSeries{
					{edgeCount("browse", "200"), "0+980x60 59800+1000x10"},
					{edgeCount("browse", "503"), "0+20x60 1200x10"},
				},
				Alerts: none("70m", AlertFastBurn),
				Exprs: []exprTest{
					// The long window alone would page.
					{Expr: `slo:sli_error:ratio_rate1h{slo="browse-availability"} / 0.001 > bool 14.4`, EvalTime: "70m", ExpSamples: []expSample{
						{Labels: `{slo="browse-availability",flow="browse",kind="availability"}`, Value: 1}}},
				},
			},
		},
		{
			name: "a tiny error rate does not fire",
			test: unitTest{
				// 1 failure in 2000 requests: burn rate 0.5.
				InputSeries: []inputSeries{
					{edgeCount("browse", "200"), "0+1999x75"},
					{edgeCount("browse", "500"), "0+1x75"},
				},
				Alerts: none("75m", burns...),
				Exprs: []exprTest{
					{Expr: `round(10000 * slo:sli_error:ratio_rate1h{slo="browse-availability"})`, EvalTime: "75m", ExpSamples: []expSample{
						{Labels: `{slo="browse-availability",flow="browse",kind="availability"}`, Value: 5}}},
				},
			},
		},
		{
			name: "every request fails below the minimum traffic: no alert",
			test: unitTest{
				// 5 requests a minute (0.083/s, under 0.1/s), all 503.
				InputSeries: []inputSeries{
					{edgeCount("browse", "503"), "0+5x75"},
				},
				Alerts: none("75m", burns...),
				Exprs: []exprTest{
					{Expr: `round(10000 * slo:sli_error:ratio_rate1h{slo="browse-availability"})`, EvalTime: "75m", ExpSamples: []expSample{
						{Labels: `{slo="browse-availability",flow="browse",kind="availability"}`, Value: 10000}}},
				},
			},
		},
		{
			name: "just above the minimum traffic, every request failing pages",
			test: unitTest{
				// 7 requests a minute: 0.117/s.
				InputSeries: []inputSeries{
					{edgeCount("browse", "503"), "0+7x75"},
				},
				Alerts: []alertTest{
					{EvalTime: "75m", Alertname: AlertFastBurn, ExpAlerts: []expAlert{fired(AlertFastBurn, "browse-availability", "1000.0")}},
				},
			},
		},
		{
			name: "20% of checkouts slower than 1 s, le written the Prometheus 3 way: fast burn pages",
			test: unitTest{
				InputSeries: []inputSeries{
					{`http_server_request_duration_seconds_count{component="edge",flow="checkout",http_response_status_code="201"}`, "0+100x75"},
					{`http_server_request_duration_seconds_bucket{component="edge",flow="checkout",http_response_status_code="201",le="0.5"}`, "0+50x75"},
					{`http_server_request_duration_seconds_bucket{component="edge",flow="checkout",http_response_status_code="201",le="1.0"}`, "0+80x75"},
					{`http_server_request_duration_seconds_bucket{component="edge",flow="checkout",http_response_status_code="201",le="+Inf"}`, "0+100x75"},
				},
				Alerts: []alertTest{
					{EvalTime: "75m", Alertname: AlertFastBurn, ExpAlerts: []expAlert{fired(AlertFastBurn, "checkout-latency", "20.0")}},
				},
			},
		},
		{
			name: "stamp traffic does not count: only the edge's",
			test: unitTest{
				InputSeries: []inputSeries{
					{edgeCount("browse", "200"), "0+1000x75"},
					{`http_server_request_duration_seconds_count{component="stamp",flow="browse",http_response_status_code="503"}`, "0+1000x75"},
				},
				Alerts: none("75m", burns...),
				Exprs: []exprTest{
					// No 5xx at all is an error ratio of 0, not an absent one.
					{Expr: `slo:sli_error:ratio_rate5m{slo="browse-availability"}`, EvalTime: "75m", ExpSamples: []expSample{
						{Labels: `slo:sli_error:ratio_rate5m{slo="browse-availability",flow="browse",kind="availability"}`, Value: 0}}},
				},
			},
		},
		{
			name: "2 of 3 regions healthy: redundancy lost, not regions down",
			test: unitTest{
				InputSeries: []inputSeries{
					{"contoso_regions_healthy", "3 3 2x10"},
					{"contoso_regions_up", "3 3 2x10"},
					{"contoso_regions_total", "3x12"},
				},
				Alerts: []alertTest{
					{EvalTime: "2m", Alertname: AlertRedundancyLost}, // pending: for 1m
					{EvalTime: "5m", Alertname: AlertRedundancyLost, ExpAlerts: []expAlert{fired(AlertRedundancyLost, "", "2")}},
					{EvalTime: "5m", Alertname: AlertRegionsDown},
				},
			},
		},
		{
			name: "1 of 3 regions healthy: regions down pages",
			test: unitTest{
				InputSeries: []inputSeries{
					{"contoso_regions_healthy", "1x10"},
					{"contoso_regions_up", "1x10"},
					{"contoso_regions_total", "3x10"},
				},
				Alerts: []alertTest{
					{EvalTime: "5m", Alertname: AlertRedundancyLost, ExpAlerts: []expAlert{fired(AlertRedundancyLost, "", "1")}},
					{EvalTime: "5m", Alertname: AlertRegionsDown, ExpAlerts: []expAlert{fired(AlertRegionsDown, "", "1")}},
				},
			},
		},
		{
			name: "all regions healthy: quiet",
			test: unitTest{
				InputSeries: []inputSeries{
					{"contoso_regions_healthy", "3x10"},
					{"contoso_regions_up", "3x10"},
					{"contoso_regions_total", "3x10"},
				},
				Alerts: none("5m", AlertRedundancyLost, AlertRegionsDown),
			},
		},
		{
			// One region down and the two survivors degraded while the
			// store elects new leaders: redundancy is lost, but only one
			// region is down, so nobody is paged.
			name: "1 of 3 regions down, 2 degraded: no page",
			test: unitTest{
				InputSeries: []inputSeries{
					{"contoso_regions_healthy", "0x10"},
					{"contoso_regions_up", "2x10"},
					{"contoso_regions_total", "3x10"},
				},
				Alerts: []alertTest{
					{EvalTime: "5m", Alertname: AlertRedundancyLost, ExpAlerts: []expAlert{fired(AlertRedundancyLost, "", "0")}},
					{EvalTime: "5m", Alertname: AlertRegionsDown},
				},
			},
		},
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.test.Interval = "1m"
			b, err := yaml.Marshal(unitFile{RuleFiles: []string{"rules.yaml"}, EvaluationInterval: "1m", Tests: []unitTest{tt.test}})
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, fmt.Sprintf("test%d.yaml", i))
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			res, err := exec.CommandContext(t.Context(), bin, "test", "rules", path).CombinedOutput()
			if err != nil {
				t.Fatalf("promtool test rules: %v\n%s\ntest file:\n%s", err, res, b)
			}
		})
	}
}
