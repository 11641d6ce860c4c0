package secrets

import (
	"bytes"
	"crypto/cipher"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func testAEAD(t testing.TB, b byte) cipher.AEAD {
	t.Helper()
	a, err := newLKGAEAD(bytes.Repeat([]byte{b}, lkgKeyLen))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestLKGRoundTripAndTamper(t *testing.T) {
	aead := testAEAD(t, 1)
	in := lkgContents{FetchedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Secrets: map[string]string{"partner-api-key": "plain-value-123"}}
	a, err := encodeLKG(aead, in)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := encodeLKG(aead, in)
	if bytes.Equal(a, b) {
		t.Fatal("two writes of the same contents are identical: the nonce is not fresh")
	}
	if bytes.Contains(a, []byte("plain-value-123")) {
		t.Fatal("the plaintext is in the file")
	}
	out, err := decodeLKG(aead, a)
	if err != nil || !out.FetchedAt.Equal(in.FetchedAt) || out.Secrets["partner-api-key"] != "plain-value-123" {
		t.Fatalf("round trip = %+v, %v", out, err)
	}
	if _, err := decodeLKG(testAEAD(t, 2), a); err == nil || !strings.Contains(err.Error(), "wrong LKGKey") {
		t.Fatalf("decode with another key = %v", err)
	}
	var f lkgFile
	if err := json.Unmarshal(a, &f); err != nil {
		t.Fatal(err)
	}
	f.Ciphertext[0] ^= 1
	tampered, _ := json.Marshal(f)
	if _, err := decodeLKG(aead, tampered); err == nil {
		t.Fatal("a tampered file decoded")
	}
	f.Ciphertext[0] ^= 1
	f.Version = 2
	future, _ := json.Marshal(f)
	if _, err := decodeLKG(aead, future); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Fatalf("decode of version 2 = %v", err)
	}
}

func FuzzDecodeLKG(f *testing.F) {
	aead := testAEAD(f, 9)
	valid, err := encodeLKG(aead, lkgContents{FetchedAt: time.Unix(0, 0), Secrets: map[string]string{"a": "b"}})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range [][]byte{
		valid, []byte(`{}`), []byte(`{"version":1}`), []byte(`{"version":1,"nonce":"","ciphertext":""}`),
		[]byte(`{"version":1,"nonce":"AAAAAAAAAAAAAAAA","ciphertext":"AAAAAAAAAAAAAAAAAAAAAA=="}`),
		[]byte(`[]`), []byte("\xff"), valid[:len(valid)/2], append(bytes.Clone(valid), valid...),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := decodeLKG(aead, data)
		if err != nil {
			return
		}
		for name := range c.Secrets {
			if !ValidName(name) {
				t.Fatalf("decoded an invalid name %q", name)
			}
		}
	})
}

func TestHumanAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 1234 * time.Millisecond: "1.2s", 59 * time.Second: "59s", 5 * time.Minute: "5m",
		5*time.Minute + 7*time.Second: "5m7s", 2*time.Hour + 30*time.Minute: "2h30m", 3 * time.Hour: "3h",
		76 * time.Hour: "3d4h", 72 * time.Hour: "3d",
	} {
		if got := humanAge(d); got != want {
			t.Errorf("humanAge(%s) = %q, want %q", d, got, want)
		}
	}
}
