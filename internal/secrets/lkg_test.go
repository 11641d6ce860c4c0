package secrets

import (
	"bytes"
	"crypto/cipher"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
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
	a, err := encodeLKG(aead, "westeurope", in)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := encodeLKG(aead, "westeurope", in)
	if bytes.Equal(a, b) {
		t.Fatal("two writes of the same contents are identical: the nonce is not fresh")
	}
	if bytes.Contains(a, []byte("plain-value-123")) {
		t.Fatal("the plaintext is in the file")
	}
	out, err := decodeLKG(aead, "westeurope", a)
	if err != nil || !out.FetchedAt.Equal(in.FetchedAt) || out.Secrets["partner-api-key"] != "plain-value-123" {
		t.Fatalf("round trip = %+v, %v", out, err)
	}
	if _, err := decodeLKG(testAEAD(t, 2), "westeurope", a); err == nil || !strings.Contains(err.Error(), "wrong LKGKey") {
		t.Fatalf("decode with another key = %v", err)
	}
	var f lkgFile
	if err := json.Unmarshal(a, &f); err != nil {
		t.Fatal(err)
	}
	f.Ciphertext[0] ^= 1
	tampered, _ := json.Marshal(f)
	if _, err := decodeLKG(aead, "westeurope", tampered); err == nil {
		t.Fatal("a tampered file decoded")
	}
	f.Ciphertext[0] ^= 1
	f.Version = 3
	future, _ := json.Marshal(f)
	if _, err := decodeLKG(aead, "westeurope", future); !errors.Is(err, errLKGForeign) || !strings.Contains(err.Error(), "format version 3") {
		t.Fatalf("decode of version 3 = %v", err)
	}
}

// knownLKG is a version 2 file sealed under the key of 32 bytes 0x01, with
// an all-zero nonce, for region westeurope, holding knownContents. A change
// to the format, the key derivation or the additional data changes it.
const knownLKG = `{"version":2,"region":"westeurope","nonce":"AAAAAAAAAAAAAAAA","ciphertext":"2x7ALLNOXSWaIr81b2FQBb3tjh2vkn1rx4xt3t/aTohrqfgReTIdhV/ivhAo0N6wlLWUksnq1acl1WD7DOa3WvBoWfT9sziWDoCtlduQCzImhxw+g17kmA24XP/s6PZpfQerhKJpwS7hx9rmhsUjfsqAvt9GqX/NkUFctcmT278PLU/nHx3zrSEDxGM="}` + "\n"

var knownContents = lkgContents{
	FetchedAt: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
	Secrets:   map[string]string{"partner-api-key": "known-api-key", "partner-signing-key": "known-signing-key"},
}

// The known answer: the file seals to the same bytes, opens for its own
// region, and does not open for another, neither as it is (the envelope
// says westeurope) nor with the envelope's region or version edited (the
// additional data binds both). A file of format version 1, written by the
// version 1 code, is refused the same way.
func TestLKGKnownAnswerIsBoundToItsRegionAndVersion(t *testing.T) {
	aead := testAEAD(t, 1)
	got, err := sealLKG(aead, "westeurope", make([]byte, aead.NonceSize()), knownContents)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != knownLKG {
		t.Fatalf("sealed file =\n%s\nwant\n%s", got, knownLKG)
	}
	c, err := decodeLKG(aead, "westeurope", []byte(knownLKG))
	if err != nil || !c.FetchedAt.Equal(knownContents.FetchedAt) || !maps.Equal(c.Secrets, knownContents.Secrets) {
		t.Fatalf("open for westeurope = %+v, %v", c, err)
	}
	_, err = decodeLKG(aead, "northeurope", []byte(knownLKG))
	if !errors.Is(err, errLKGForeign) || !strings.Contains(err.Error(), `sealed for region "westeurope", this stamp serves "northeurope"`) {
		t.Fatalf("open for northeurope = %v, want a refusal naming both regions", err)
	}
	var f lkgFile
	if err := json.Unmarshal([]byte(knownLKG), &f); err != nil {
		t.Fatal(err)
	}
	f.Region = "northeurope"
	relabelled, _ := json.Marshal(f)
	if _, err := decodeLKG(aead, "northeurope", relabelled); err == nil || !strings.Contains(err.Error(), "cannot be decrypted") {
		t.Fatalf("open for northeurope of a file relabelled northeurope = %v, want a decryption failure", err)
	}
	f.Region, f.Version = "westeurope", 1
	rolledBack, _ := json.Marshal(f)
	if _, err := decodeLKG(aead, "westeurope", rolledBack); !errors.Is(err, errLKGForeign) || !strings.Contains(err.Error(), "format version 1") {
		t.Fatalf("open of a file relabelled version 1 = %v", err)
	}

	v1, err := os.ReadFile("testdata/lkg-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	f = lkgFile{}
	if err := json.Unmarshal(v1, &f); err != nil || f.Version != 1 || f.Region != "" {
		t.Fatalf("testdata/lkg-v1.json is not a version 1 file: %+v, %v", f, err)
	}
	_, err = decodeLKG(testAEAD(t, 7), "westeurope", v1)
	if !errors.Is(err, errLKGForeign) || !strings.Contains(err.Error(), "format version 1, this stamp reads version 2") {
		t.Fatalf("open of a version 1 file = %v", err)
	}
	// Relabelled version 2, it does not open either.
	f.Version, f.Region = 2, "westeurope"
	relabelled, _ = json.Marshal(f)
	if _, err := decodeLKG(testAEAD(t, 7), "westeurope", relabelled); err == nil || !strings.Contains(err.Error(), "cannot be decrypted") {
		t.Fatalf("open of a version 1 file relabelled version 2 = %v", err)
	}
}

// FuzzDecodeLKG: whatever decodes is a file this code could have written
// for that region: it re-encodes and opens to the same contents, and does
// not open for another region. Anything else is an error, never a panic.
// The input also serves as contents, sealed and opened again: as a secret's
// value it opens to itself (when it is UTF-8; JSON replaces the bytes that
// are not), and as a secret's name it opens to itself when it is a valid
// name and not at all otherwise. The valid seeds
// open to what was sealed.
func FuzzDecodeLKG(f *testing.F) {
	aead := testAEAD(f, 9)
	at := time.Date(2026, 5, 4, 1, 2, 3, 4, time.UTC)
	sealed := map[string]lkgContents{}
	for _, c := range []lkgContents{
		{FetchedAt: time.Unix(0, 0).UTC(), Secrets: map[string]string{"a": "b"}},
		{},
		{FetchedAt: at, Secrets: map[string]string{"partner-api-key": "k\u00e9y \"quoted\"\n", "partner-signing-key": ""}},
	} {
		b, err := encodeLKG(aead, "westeurope", c)
		if err != nil {
			f.Fatal(err)
		}
		sealed[string(b)] = c
	}
	for b, want := range sealed {
		got, err := decodeLKG(aead, "westeurope", []byte(b))
		if err != nil || !got.FetchedAt.Equal(want.FetchedAt) || !maps.Equal(got.Secrets, want.Secrets) {
			f.Fatalf("valid seed opens to %+v, %v; want %+v", got, err, want)
		}
		f.Add([]byte(b))
	}
	valid, err := encodeLKG(aead, "westeurope", lkgContents{FetchedAt: time.Unix(0, 0), Secrets: map[string]string{"a": "b"}})
	if err != nil {
		f.Fatal(err)
	}
	other, err := encodeLKG(aead, "eastus", lkgContents{FetchedAt: time.Unix(0, 0), Secrets: map[string]string{"a": "b"}})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range [][]byte{
		other, []byte(knownLKG), []byte(`{}`), []byte(`{"version":2}`), []byte(`{"version":2,"region":"westeurope","nonce":"","ciphertext":""}`),
		[]byte(`{"version":2,"region":"westeurope","nonce":"AAAAAAAAAAAAAAAA","ciphertext":"AAAAAAAAAAAAAAAAAAAAAA=="}`),
		[]byte(`{"version":1,"nonce":"AAAAAAAAAAAAAAAA","ciphertext":"AAAAAAAAAAAAAAAAAAAAAA=="}`),
		[]byte(`[]`), []byte("\xff"), valid[:len(valid)/2], append(bytes.Clone(valid), valid...),
	} {
		if c, err := decodeLKG(aead, "westeurope", s); err == nil {
			f.Fatalf("%q opened for westeurope under key 9: %+v", s, c)
		}
		f.Add(s)
	}
	f.Add([]byte("partner-api-key"))
	f.Add([]byte("Upper-Case"))
	f.Fuzz(func(t *testing.T, data []byte) {
		asValue := lkgContents{FetchedAt: at, Secrets: map[string]string{"value": string(data)}}
		got, err := sealAndOpen(t, aead, asValue)
		switch {
		case err != nil:
			t.Fatalf("%+v sealed does not open: %v", asValue, err)
		case !got.FetchedAt.Equal(at) || len(got.Secrets) != 1 || !utf8.ValidString(got.Secrets["value"]):
			t.Fatalf("%+v sealed opens as %+v", asValue, got)
		case utf8.Valid(data) && got.Secrets["value"] != string(data):
			t.Fatalf("%+v sealed opens as %+v", asValue, got)
		}
		asName := lkgContents{FetchedAt: at, Secrets: map[string]string{string(data): "v"}}
		got, err = sealAndOpen(t, aead, asName)
		switch {
		case ValidName(string(data)) && (err != nil || !got.FetchedAt.Equal(at) || !maps.Equal(got.Secrets, asName.Secrets)):
			t.Fatalf("%+v sealed opens as %+v, %v", asName, got, err)
		case !ValidName(string(data)) && err == nil:
			t.Fatalf("%+v, whose name is invalid, sealed opens as %+v", asName, got)
		}

		c, err := decodeLKG(aead, "westeurope", data)
		if err != nil {
			if c.Secrets != nil || !c.FetchedAt.IsZero() {
				t.Fatalf("an error (%v) came with contents", err)
			}
			return
		}
		for name := range c.Secrets {
			if !ValidName(name) {
				t.Fatalf("decoded an invalid name %q", name)
			}
		}
		if _, err := decodeLKG(aead, "eastus", data); err == nil {
			t.Fatal("a file that opens for westeurope opens for eastus too")
		}
		again, err := encodeLKG(aead, "westeurope", c)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		c2, err := decodeLKG(aead, "westeurope", again)
		if err != nil || !c2.FetchedAt.Equal(c.FetchedAt) || !maps.Equal(c2.Secrets, c.Secrets) {
			t.Fatalf("re-encoded file opens to %+v, %v; want %+v", c2, err, c)
		}
	})
}

// sealAndOpen seals c for westeurope and opens the file again.
func sealAndOpen(t *testing.T, aead cipher.AEAD, c lkgContents) (lkgContents, error) {
	t.Helper()
	b, err := encodeLKG(aead, "westeurope", c)
	if err != nil {
		t.Fatalf("encode %+v: %v", c, err)
	}
	return decodeLKG(aead, "westeurope", b)
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
