package artifact

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzDecodeAttestation: what decodeAttestation accepts is complete and
// re-encodes to JSON that decodes to the same attestation. The valid seeds
// are accepted and the others refused.
func FuzzDecodeAttestation(f *testing.F) {
	for _, tc := range []struct {
		json  string
		valid bool
	}{
		{`{"digest":"sha256:` + strings.Repeat("ab", 32) + `","env":"dev","profile":"ci","passed":true,"experiments":7,"at":"2026-05-04T01:02:01Z","by":"ci"}`, true},
		{`{"digest":"sha256:` + strings.Repeat("ab", 32) + `","env":"dev","profile":"ci","passed":false,"experiments":0,"at":"2026-05-04T01:02:01Z","future":1}`, true},
		{`{"digest":"sha256:abc","env":"dev","profile":"ci","at":"2026-05-04T01:02:01Z"}`, false},
		{`{"digest":"sha256:` + strings.Repeat("ab", 32) + `","env":"dev","profile":"ci","experiments":-1,"at":"2026-05-04T01:02:01Z"}`, false},
		{`{"digest":"sha256:` + strings.Repeat("ab", 32) + `","env":"dev","profile":"ci"}`, false},
		{`{} {}`, false},
		{`null`, false},
	} {
		if _, err := decodeAttestation([]byte(tc.json)); (err == nil) != tc.valid {
			f.Fatalf("decodeAttestation(%s) = %v; valid: %v", tc.json, err, tc.valid)
		}
		f.Add([]byte(tc.json))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := decodeAttestation(b)
		if err != nil {
			return
		}
		if err := a.check(); err != nil {
			t.Fatalf("decoded an incomplete attestation %+v: %v", a, err)
		}
		again, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		b2, err := decodeAttestation(again)
		if err != nil || !b2.At.Equal(a.At) || b2.Digest != a.Digest || b2.Passed != a.Passed || b2.Env != a.Env ||
			b2.Profile != a.Profile || b2.Experiments != a.Experiments || b2.By != a.By {
			t.Fatalf("%+v re-encoded as %s decodes as %+v, %v", a, again, b2, err)
		}
	})
}

// FuzzDigestRef: a reference digestRef accepts names a sha256 digest, over
// plain HTTP only on loopback, and prints as a reference that parses to
// itself. The valid seeds are accepted and the others refused.
func FuzzDigestRef(f *testing.F) {
	for _, tc := range []struct {
		ref             string
		insecure, valid bool
	}{
		{"127.0.0.1:5000/contoso/shoes@sha256:" + strings.Repeat("ab", 32), true, true},
		{"contoso.azurecr.io/contoso/shoes@sha256:" + strings.Repeat("01", 32), false, true},
		{"contoso.azurecr.io/contoso/shoes:v1.4.0@sha256:" + strings.Repeat("01", 32), false, true},
		{"[::1]:5000/contoso/shoes@sha256:" + strings.Repeat("ab", 32), true, true},
		{"127.0.0.1:5000/contoso/shoes:v1.4.0", true, false},
		{"registry.example.com/x@sha256:" + strings.Repeat("ab", 32), true, false},
		{"contoso.azurecr.io/contoso/shoes@sha256:" + strings.Repeat("ab", 31), false, false},
		{"contoso.azurecr.io/contoso/shoes@sha512:" + strings.Repeat("ab", 64), false, false},
		{"@@", false, false},
	} {
		o := newOptions(nil)
		o.insecure = tc.insecure
		if _, err := o.digestRef(tc.ref); (err == nil) != tc.valid {
			f.Fatalf("digestRef(%q) with insecure %v = %v; valid: %v", tc.ref, tc.insecure, err, tc.valid)
		}
		f.Add(tc.ref, tc.insecure)
	}
	f.Fuzz(func(t *testing.T, ref string, insecure bool) {
		o := newOptions(nil)
		o.insecure = insecure
		d, err := o.digestRef(ref)
		if err != nil {
			return
		}
		if !validDigest.MatchString(d.DigestStr()) {
			t.Fatalf("%q accepted with digest %q", ref, d.DigestStr())
		}
		if insecure && !isLoopback(d.Context().RegistryStr()) {
			t.Fatalf("%q accepted for plain HTTP off loopback (%s)", ref, d.Context().RegistryStr())
		}
		again, err := o.digestRef(d.String())
		if err != nil || again.String() != d.String() {
			t.Fatalf("%q parsed as %q, which parses as %q, %v", ref, d.String(), again.String(), err)
		}
		if tag := attestationTag(d.DigestStr()); !strings.HasPrefix(tag, "sha256-") || !strings.HasSuffix(tag, ".verify") || len(tag) != len("sha256-.verify")+64 {
			t.Fatalf("attestation tag %q", tag)
		}
	})
}
