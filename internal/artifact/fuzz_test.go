package artifact

import (
	"encoding/json"
	"strings"
	"testing"
)

func FuzzDecodeAttestation(f *testing.F) {
	f.Add([]byte(`{"digest":"sha256:` + strings.Repeat("ab", 32) + `","env":"dev","profile":"ci","passed":true,"experiments":7,"at":"2026-05-04T01:02:01Z","by":"ci"}`))
	f.Add([]byte(`{"digest":"sha256:` + strings.Repeat("ab", 32) + `","env":"dev","profile":"ci","passed":false,"experiments":0,"at":"2026-05-04T01:02:01Z","future":1}`))
	f.Add([]byte(`{"digest":"sha256:abc","env":"dev","profile":"ci","at":"2026-05-04T01:02:01Z"}`))
	f.Add([]byte(`{} {}`))
	f.Add([]byte(`null`))
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

func FuzzDigestRef(f *testing.F) {
	f.Add("127.0.0.1:5000/contoso/shoes@sha256:"+strings.Repeat("ab", 32), true)
	f.Add("contoso.azurecr.io/contoso/shoes@sha256:"+strings.Repeat("01", 32), false)
	f.Add("contoso.azurecr.io/contoso/shoes:v1.4.0@sha256:"+strings.Repeat("01", 32), false)
	f.Add("[::1]:5000/contoso/shoes@sha256:"+strings.Repeat("ab", 32), true)
	f.Add("127.0.0.1:5000/contoso/shoes:v1.4.0", true)
	f.Add("registry.example.com/x@sha256:"+strings.Repeat("ab", 32), true)
	f.Add("@@", false)
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
