package partner

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
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

// FuzzVerify: Sign is "sha256=" and the lower-case hex HMAC-SHA256 of the
// body, computed here with crypto/hmac on its own, and Verify accepts that
// header and no other. The known answer is among the seeds.
func FuzzVerify(f *testing.F) {
	key, body := []byte("k"), []byte(`{"orderId":"o-1"}`)
	f.Add([]byte(katKey), []byte(katBody), katSignature)
	f.Add([]byte(katKey), []byte(katBody), flipBit(katSignature, len(katSignature)-1))
	f.Add(key, body, Sign(key, body))
	f.Add(key, body, "")
	f.Add(key, body, "sha256=")
	f.Add([]byte{}, []byte{}, Sign(nil, nil))
	f.Add(key, body, "sha256="+strings.Repeat("0", 64))
	f.Add(key, body, "sha256=zz\x00\xff")
	f.Fuzz(func(t *testing.T, key, body []byte, header string) {
		mac := hmac.New(sha256.New, key)
		mac.Write(body)
		want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
		if got := Sign(key, body); got != want {
			t.Fatalf("Sign(%q, %q) = %q, want %q", key, body, got, want)
		}
		if got := Verify(key, body, header); got != (header == want) {
			t.Fatalf("Verify(%q, %q, %q) = %v; the one right header is %q", key, body, header, got, want)
		}
		if !Verify(key, body, want) {
			t.Fatalf("Verify rejects the right header of (%q, %q)", key, body)
		}
	})
}

// A known answer, computed outside this code with
//
//	printf '%s' "$katBody" | openssl dgst -sha256 -hmac 'partner-signing-key-KAT-2026'
//
// (python3 -c 'import hmac, hashlib; print(hmac.new(key, body,
// hashlib.sha256).hexdigest())' gives the same digest). What is signed is
// the raw request body and nothing else (no timestamp, no header); the
// header is "sha256=" and the lower-case hex digest.
const (
	katKey       = "partner-signing-key-KAT-2026"
	katBody      = `{"orderId":"o-kat-1","user":"alice","lines":[{"sku":"p1-42","quantity":2}],"region":"westeurope","at":"2026-01-02T03:04:05Z"}`
	katSignature = "sha256=20e2cf55c599165306e04041b919e46acb782c70564e3fc7f076edb89cfcdcc8"
)

// katNotification is the notification whose JSON is katBody.
var katNotification = Notification{
	OrderID: "o-kat-1",
	User:    "alice",
	Lines:   []Line{{SKU: "p1-42", Quantity: 2}},
	Region:  "westeurope",
	At:      time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
}

// flipBit returns s with the lowest bit of its byte i inverted.
func flipBit(s string, i int) string {
	b := []byte(s)
	b[i] ^= 1
	return string(b)
}

func TestSignatureKnownAnswer(t *testing.T) {
	t.Run("Sign", func(t *testing.T) {
		if got := Sign([]byte(katKey), []byte(katBody)); got != katSignature {
			t.Fatalf("Sign = %q, want %q", got, katSignature)
		}
	})
	t.Run("Verify", func(t *testing.T) {
		if !Verify([]byte(katKey), []byte(katBody), katSignature) {
			t.Fatal("Verify rejects the known signature")
		}
		for name, ok := range map[string]bool{
			"one bit of the header": Verify([]byte(katKey), []byte(katBody), flipBit(katSignature, len(katSignature)-1)),
			"one bit of the body":   Verify([]byte(katKey), []byte(flipBit(katBody, len(katBody)/2)), katSignature),
			"one bit of the key":    Verify([]byte(flipBit(katKey, 0)), []byte(katBody), katSignature),
		} {
			if ok {
				t.Errorf("%s changed: verified", name)
			}
		}
	})
	t.Run("the client sends it", func(t *testing.T) {
		f := startPartner(t, &tap{record: true})
		f.keys.set(testAPIKey, katKey)
		c := f.client(t, ClientConfig{Secrets: newKeys(testAPIKey, katKey)})
		if err := c.Notify(t.Context(), katNotification); err != nil {
			t.Fatalf("Notify: %v", err)
		}
		reqs := f.tap.requests()
		if len(reqs) != 1 {
			t.Fatalf("%d requests, want 1", len(reqs))
		}
		if got := string(reqs[0].body); got != katBody {
			t.Errorf("body = %s, want %s", got, katBody)
		}
		if got := reqs[0].header.Get(HeaderSignature); got != katSignature {
			t.Errorf("%s = %q, want %q", HeaderSignature, got, katSignature)
		}
	})
	t.Run("the stand-in takes it and refuses a one-bit change", func(t *testing.T) {
		f := startPartner(t, nil)
		f.keys.set(testAPIKey, katKey)
		post := func(sig string) int {
			t.Helper()
			status, _, _ := send(t, http.MethodPost, f.ordersURL(), http.Header{
				"Content-Type":       {"application/json"},
				HeaderAPIKey:         {testAPIKey},
				HeaderSignature:      {sig},
				HeaderIdempotencyKey: {katNotification.OrderID},
			}, []byte(katBody))
			return status
		}
		if got := post(flipBit(katSignature, len(katSignature)-1)); got != http.StatusUnauthorized {
			t.Errorf("one bit of the signature changed: %d, want 401", got)
		}
		if got := post(katSignature); got != http.StatusCreated {
			t.Fatalf("the known signature: %d, want 201", got)
		}
		if got := f.standIn.Received(); len(got) != 1 || !reflect.DeepEqual(got[0], katNotification) {
			t.Errorf("Received = %+v, want [%+v]", got, katNotification)
		}
		if got := f.standIn.Rejected(); got != 1 {
			t.Errorf("Rejected = %d, want 1", got)
		}
	})
}
