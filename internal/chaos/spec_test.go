package chaos_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/chaos"
	"github.com/contoso/shoes/internal/shop"
)

var errTarget = errors.New("store server refused to stop")

func TestDecodeSpecCanonical(t *testing.T) {
	for _, tc := range []struct {
		body string
		want chaos.Spec
	}{
		{`{"fault":"partner-outage","duration":"1m"}`, chaos.Spec{Fault: "partner-outage", Target: "global", Duration: chaos.Duration(time.Minute)}},
		{`{"fault":"partner-slow","target":"global","duration":"90s"}`,
			chaos.Spec{Fault: "partner-slow", Target: "global", Duration: chaos.Duration(90 * time.Second), Params: map[string]string{"delay": "3s"}}},
		{`{"fault":"link-latency","target":"a-b","duration":"1h","params":{"jitter":"1000ms"}}`,
			chaos.Spec{Fault: "link-latency", Target: "a-b", Duration: chaos.Duration(time.Hour), Params: map[string]string{"latency": "200ms", "jitter": "1s"}}},
		{`{"fault":"stamp-drain","target":"eastus","duration":"1s","params":{}}`, chaos.Spec{Fault: "stamp-drain", Target: "eastus", Duration: chaos.Duration(time.Second)}},
	} {
		got, err := chaos.DecodeSpec([]byte(tc.body))
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("DecodeSpec(%s) = %+v, %v; want %+v", tc.body, got, err, tc.want)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	b, err := json.Marshal(chaos.Spec{Fault: "partition", Target: "a-b", Duration: chaos.Duration(90 * time.Second)})
	if err != nil || string(b) != `{"fault":"partition","target":"a-b","duration":"1m30s"}` {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	for in, want := range map[string]time.Duration{`"30s"`: 30 * time.Second, `"1h"`: time.Hour, `null`: 7} {
		d := chaos.Duration(7)
		if err := json.Unmarshal([]byte(in), &d); err != nil || time.Duration(d) != want {
			t.Errorf("Unmarshal(%s) = %v, %v; want %v", in, d, err, want)
		}
	}
	for _, in := range []string{`30`, `"soon"`, `""`, `{}`} {
		var d chaos.Duration
		if err := json.Unmarshal([]byte(in), &d); err == nil {
			t.Errorf("Unmarshal(%s) = %v, want an error", in, d)
		}
	}
}

// Independent statement of what a valid Spec is, for the fuzz test.
var (
	fuzzRegion = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	fuzzParams = map[string]map[string][2]time.Duration{ // fault → param → inclusive bounds
		chaos.FaultLinkLatency: {"latency": {time.Millisecond, time.Minute}, "jitter": {0, time.Minute}},
		chaos.FaultPartnerSlow: {"delay": {time.Millisecond, time.Minute}},
	}
)

// FuzzDecodeSpec: whatever DecodeSpec accepts is a spec by the rules
// stated independently above, and its canonical form decodes to itself;
// whatever it refuses is refused as invalid. The valid seeds are accepted
// and the others refused.
func FuzzDecodeSpec(f *testing.F) {
	for _, s := range []string{
		`{"fault":"region-outage","target":"eastus","duration":"30s"}`,
		`{"fault":"link-latency","target":"westeurope-eastus","duration":"1m","params":{"latency":"300ms","jitter":"50ms"}}`,
		`{"fault":"partition","target":"us-east-eu-west","duration":"1h"}`,
		`{"fault":"partner-slow","duration":"10s","params":{"delay":"5s"}}`,
		`{"fault":"secret-store-outage","target":"global","duration":"1s"}`,
	} {
		if _, err := chaos.DecodeSpec([]byte(s)); err != nil {
			f.Fatalf("valid seed %s refused: %v", s, err)
		}
		f.Add([]byte(s))
	}
	for _, s := range []string{
		`{"fault":"partition","target":"a-a","duration":"30s"}`,
		`{"fault":"stamp-drain","target":"eastus","duration":"61m"}`,
		`{"fault":"instance-kill","target":"-","duration":"30s"}`,
		`{"fault":"partner-outage","duration":"-1s"}`,
		`{"fault":"link-latency","target":"a-b","duration":"1m","params":{"latency":"-0s"}}`,
		`{"fault":"partition","duration":"1m","params":null}`,
		`{"duration":1}`, `[]`, `null`, `{}`, "\xff",
	} {
		if got, err := chaos.DecodeSpec([]byte(s)); err == nil {
			f.Fatalf("invalid seed %s accepted as %+v", s, got)
		}
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := chaos.DecodeSpec(body)
		if err != nil {
			if shop.KindOf(err) != shop.KindInvalid {
				t.Fatalf("DecodeSpec(%q) error of kind %s: %v", body, shop.KindOf(err), err)
			}
			return
		}
		var raw struct {
			Fault, Target, Duration string
			Params                  map[string]string
		}
		if err := json.Unmarshal(body, &raw); err != nil {
			t.Fatalf("accepted %q, which is no spec object: %v", body, err)
		}
		if s.Fault != raw.Fault || !slices.Contains(chaos.Faults(), s.Fault) {
			t.Fatalf("accepted %q as fault %q", body, s.Fault)
		}
		if d, err := time.ParseDuration(raw.Duration); err != nil || d != time.Duration(s.Duration) || d < time.Second || d > time.Hour {
			t.Fatalf("accepted %q with duration %v", body, s.Duration)
		}
		switch s.Fault {
		case chaos.FaultSecretStoreOutage, chaos.FaultPartnerOutage, chaos.FaultPartnerSlow:
			if s.Target != "global" || (raw.Target != "" && raw.Target != "global") {
				t.Fatalf("accepted %q with target %q", body, s.Target)
			}
		case chaos.FaultLinkLatency, chaos.FaultPartition:
			a, b, ok := strings.Cut(s.Target, "-")
			if s.Target != raw.Target || !ok || a == "" || b == "" || s.Target == a+"-"+a || !fuzzRegion.MatchString(s.Target) {
				t.Fatalf("accepted %q with link target %q", body, s.Target)
			}
		default:
			if s.Target != raw.Target || !fuzzRegion.MatchString(s.Target) || len(s.Target) > 63 {
				t.Fatalf("accepted %q with region %q", body, s.Target)
			}
		}
		allowed := fuzzParams[s.Fault]
		if len(s.Params) != len(allowed) {
			t.Fatalf("accepted %q with params %v", body, s.Params)
		}
		for k, v := range raw.Params {
			if _, ok := allowed[k]; !ok {
				t.Fatalf("accepted %q with unknown param %q", body, k)
			}
			d, err := time.ParseDuration(v)
			if err != nil || d < allowed[k][0] || d > allowed[k][1] || s.Params[k] != d.String() {
				t.Fatalf("accepted %q with %s=%q as %q", body, k, v, s.Params[k])
			}
		}
		// The canonical spec is a fixed point.
		again, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if s2, err := chaos.DecodeSpec(again); err != nil || !reflect.DeepEqual(s, s2) {
			t.Fatalf("canonical %s decodes to %+v, %v", again, s2, err)
		}
	})
}
