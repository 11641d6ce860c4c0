package partner

import (
	"strings"
	"testing"
)

func TestSignVerifyRoundTripAndTamper(t *testing.T) {
	key, body := []byte("signing-key-1"), []byte(`{"orderId":"o-1"}`)
	sig := Sign(key, body)
	if !strings.HasPrefix(sig, "sha256=") || len(sig) != len("sha256=")+64 {
		t.Fatalf("Sign = %q, want sha256= and 64 hex digits", sig)
	}
	if !Verify(key, body, sig) {
		t.Fatal("Verify rejects Sign's own header")
	}
	flipped := []byte(sig)
	flipped[len(flipped)-1] ^= 1
	for name, ok := range map[string]bool{
		"tampered body":     Verify(key, []byte(`{"orderId":"o-2"}`), sig),
		"other key":         Verify([]byte("signing-key-2"), body, sig),
		"flipped digit":     Verify(key, body, string(flipped)),
		"upper case":        Verify(key, body, "sha256="+strings.ToUpper(strings.TrimPrefix(sig, "sha256="))),
		"no prefix":         Verify(key, body, strings.TrimPrefix(sig, "sha256=")),
		"other algorithm":   Verify(key, body, "sha1="+strings.TrimPrefix(sig, "sha256=")),
		"empty":             Verify(key, body, ""),
		"trailing space":    Verify(key, body, sig+" "),
		"truncated":         Verify(key, body, sig[:len(sig)-2]),
		"appended body":     Verify(key, append(body, ' '), sig),
		"prefix of the key": Verify(key[:len(key)-1], body, sig),
	} {
		if ok {
			t.Errorf("%s: verified", name)
		}
	}
}

func FuzzVerify(f *testing.F) {
	key, body := []byte("k"), []byte(`{"orderId":"o-1"}`)
	f.Add(key, body, Sign(key, body))
	f.Add(key, body, "")
	f.Add(key, body, "sha256=")
	f.Add([]byte{}, []byte{}, Sign(nil, nil))
	f.Add(key, body, "sha256="+strings.Repeat("0", 64))
	f.Add(key, body, "sha256=zz\x00\xff")
	f.Fuzz(func(t *testing.T, key, body []byte, header string) {
		want := Sign(key, body)
		if got := Verify(key, body, header); got != (header == want) {
			t.Fatalf("Verify(%q, %q, %q) = %v; the one right header is %q", key, body, header, got, want)
		}
		if !Verify(key, body, want) {
			t.Fatalf("Verify rejects Sign(%q, %q)", key, body)
		}
	})
}
