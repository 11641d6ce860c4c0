package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/contoso/shoes/internal/shop"
)

type sample struct {
	Text  string `json:"text"`
	Stars int    `json:"stars"`
	Tags  []string
}

func TestDecodeJSON(t *testing.T) {
	for _, tc := range []struct {
		name, ct, body string
		kind           shop.Kind
		field          string
	}{
		{"valid", "application/json", `{"text":"hi","stars":3}`, 0, ""},
		{"valid without content type", "", `{"text":"hi"}`, 0, ""},
		{"problem+json media type", "application/merge-patch+json", `{"text":"hi"}`, 0, ""},
		{"empty", "application/json", ``, shop.KindInvalid, ""},
		{"whitespace", "application/json", "  \n", shop.KindInvalid, ""},
		{"malformed", "application/json", `{"text":`, shop.KindInvalid, ""},
		{"syntax error", "application/json", `{"text" "x"}`, shop.KindInvalid, ""},
		{"array not object", "application/json", `[1,2]`, shop.KindInvalid, ""},
		{"string not object", "application/json", `"x"`, shop.KindInvalid, ""},
		{"wrong type string", "application/json", `{"stars":"five"}`, shop.KindInvalid, "stars"},
		{"fraction for integer", "application/json", `{"stars":4.5}`, shop.KindInvalid, "stars"},
		{"huge number", "application/json", `{"stars":1e400}`, shop.KindInvalid, "stars"},
		{"wrong type number", "application/json", `{"text":5}`, shop.KindInvalid, "text"},
		{"unknown field", "application/json", `{"txt":"x"}`, shop.KindInvalid, "txt"},
		{"trailing data", "application/json", `{"text":"x"}{"text":"y"}`, shop.KindInvalid, ""},
		{"trailing garbage", "application/json", `{"text":"x"} x`, shop.KindInvalid, ""},
		{"wrong media type", "text/plain", `{"text":"x"}`, shop.KindUnsupported, ""},
		{"bad media type", "application/json; charset", `{"text":"x"}`, shop.KindUnsupported, ""},
		{"oversized", "application/json", `{"text":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, shop.KindTooLarge, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tc.body))
			if tc.ct != "" {
				r.Header.Set("Content-Type", tc.ct)
			}
			var dst sample
			err := DecodeJSON(r, &dst)
			if tc.kind == 0 {
				if err != nil {
					t.Fatalf("DecodeJSON: %v", err)
				}
				return
			}
			e, ok := errors.AsType[*shop.Error](err)
			if !ok || e.Kind != tc.kind || e.Field != tc.field {
				t.Fatalf("DecodeJSON(%.40q) = %v, want kind %s field %q", tc.body, err, tc.kind, tc.field)
			}
		})
	}
}

// FuzzUnmarshal: what Unmarshal accepts is one JSON object (or null,
// which leaves dst as it was, as encoding/json does), and decodes to what
// encoding/json decodes it to; its encoding decodes to the same value.
// What it refuses is a 400 with a detail. The valid seeds are accepted
// with their values and the others refused.
func FuzzUnmarshal(f *testing.F) {
	for body, want := range map[string]sample{
		`{"text":"x","stars":1}`:       {Text: "x", Stars: 1},
		` {"Tags":["a"],"text":"é"} `:  {Text: "é", Tags: []string{"a"}},
		`{}`:                           {},
		`{"TEXT":"case-insensitive"}`:  {Text: "case-insensitive"},
		`{"text":"a","text":"latest"}`: {Text: "latest"},
	} {
		var got sample
		if err := Unmarshal([]byte(body), &got); err != nil || !reflect.DeepEqual(got, want) {
			f.Fatalf("Unmarshal(%s) = %+v, %v; want %+v", body, got, err, want)
		}
		f.Add([]byte(body))
	}
	for _, s := range []string{`{"stars":"1"}`, `[]`, `{"a":1}`, `{}{}`, "\xff", `{"Tags":[1]}`, ``, `{"stars":1.5}`} {
		var got sample
		if err := Unmarshal([]byte(s), &got); err == nil {
			f.Fatalf("Unmarshal(%q) accepted: %+v", s, got)
		}
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var dst sample
		err := Unmarshal(body, &dst)
		if err == nil {
			trimmed := bytes.TrimSpace(body)
			if !json.Valid(body) || !bytes.HasPrefix(trimmed, []byte("{")) && !bytes.Equal(trimmed, []byte("null")) {
				t.Fatalf("accepted %q, which is not one JSON object", body)
			}
			var std sample
			if err := json.Unmarshal(body, &std); err != nil || !reflect.DeepEqual(std, dst) {
				t.Fatalf("Unmarshal(%q) = %+v; encoding/json decodes %+v, %v", body, dst, std, err)
			}
			enc, err := json.Marshal(dst)
			if err != nil {
				t.Fatal(err)
			}
			var again sample
			if err := Unmarshal(enc, &again); err != nil || !reflect.DeepEqual(again, dst) {
				t.Fatalf("Unmarshal(%q) = %+v, encoded %s, which decodes to %+v, %v", body, dst, enc, again, err)
			}
			return
		}
		if k := shop.KindOf(err); k != shop.KindInvalid {
			t.Fatalf("Unmarshal(%q) error kind %s, want invalid: %v", body, k, err)
		}
		p := ProblemFor(err)
		if p.Status != http.StatusBadRequest || p.Detail == "" {
			t.Fatalf("problem for %v = %+v", err, p)
		}
	})
}

func TestProblemTable(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		detail string
	}{
		{shop.Invalid("stars", "bad"), 400, "bad"},
		{shop.NotFound("product", "x"), 404, `product "x" not found`},
		{shop.Errorf(shop.KindUnauthorized, "", "token expired"), 401, "token expired"},
		{shop.Errorf(shop.KindForbidden, "", "no"), 403, "no"},
		{shop.Errorf(shop.KindConflict, "", "c"), 409, "c"},
		{shop.Errorf(shop.KindTooLarge, "", "big"), 413, "big"},
		{shop.Errorf(shop.KindUnsupported, "", "ct"), 415, "ct"},
		{shop.Unavailable("store down", errors.New("secret cause")), 503, "store down"},
		{errors.New("raw internal detail"), 500, ""},
		{&shop.Error{Kind: shop.KindInternal, Detail: "leak"}, 500, ""},
	} {
		p := ProblemFor(tc.err)
		if p.Status != tc.status || p.Detail != tc.detail || !strings.HasPrefix(p.Type, ProblemTypeBase) || p.Title == "" {
			t.Errorf("ProblemFor(%v) = %+v, want status %d detail %q", tc.err, p, tc.status, tc.detail)
		}
	}
}

func TestWriteErrorIsProblemJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/api/x", nil)
	Chain(Handle(slog.New(slog.DiscardHandler), func(w http.ResponseWriter, r *http.Request) error {
		return shop.Invalid("limit", "too big")
	}), RequestIDs).ServeHTTP(rec, r)
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q", ct)
	}
	var p Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	if p.Status != 400 || p.Field != "limit" || p.Instance != "/api/x" || p.RequestID == "" || p.RequestID != rec.Header().Get(HeaderRequestID) {
		t.Fatalf("problem = %+v", p)
	}
}

func TestRequestIDEchoedOrGenerated(t *testing.T) {
	h := Chain(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if RequestID(r.Context()) != w.Header().Get(HeaderRequestID) {
			t.Error("context and header request ids differ")
		}
	}), RequestIDs, ServedRegion("westeurope", ""))
	for _, tc := range []struct{ sent, want string }{
		{"abc-123", "abc-123"},
		{"A.b_c:d-9", "A.b_c:d-9"},
		{strings.Repeat("x", 128), strings.Repeat("x", 128)},
		{"", ""},
		{strings.Repeat("x", 129), ""},
		{strings.Repeat("x", 200), ""},
		{"bad id\n", ""},
		{"bad/id", ""},
		{"caf\u00e9", ""},
	} {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if tc.sent != "" {
			r.Header.Set(HeaderRequestID, tc.sent)
		}
		h.ServeHTTP(rec, r)
		got := rec.Header().Get(HeaderRequestID)
		if tc.want != "" && got != tc.want {
			t.Errorf("sent %q: got %q, want echoed", tc.sent, got)
		}
		if tc.want == "" && (got == "" || got == tc.sent) {
			t.Errorf("sent %q: got %q, want a fresh id", tc.sent, got)
		}
		if rec.Header().Get(HeaderServedRegion) != "westeurope" {
			t.Errorf("no served region header")
		}
	}
}

func TestRecoverAnswersProblemWithoutStack(t *testing.T) {
	rec := httptest.NewRecorder()
	h := Chain(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("secret internals") }), RequestIDs, Recover(slog.New(slog.DiscardHandler)))
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != 500 || strings.Contains(rec.Body.String(), "secret") || strings.Contains(rec.Body.String(), "goroutine") {
		t.Fatalf("panic answered %d %q", rec.Code, rec.Body.String())
	}
}

func TestPageAndCursor(t *testing.T) {
	c := EncodeCursor("contoso-air-1")
	if got, err := DecodeCursor(c); err != nil || got != "contoso-air-1" {
		t.Fatalf("round trip = %q, %v", got, err)
	}
	for _, q := range []string{"limit=0", "limit=101", "limit=-1", "limit=ten", "cursor=***", "cursor=" + "eA", "limit=1e2"} {
		r := httptest.NewRequest(http.MethodGet, "/?"+q, nil)
		if _, err := ParsePage(r.URL.Query()); shop.KindOf(err) != shop.KindInvalid {
			t.Errorf("ParsePage(%s) = %v, want invalid", q, err)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/?limit=100&cursor="+c, nil)
	if p, err := ParsePage(r.URL.Query()); err != nil || p.Limit != 100 || p.After != "contoso-air-1" {
		t.Fatalf("ParsePage = %+v, %v", p, err)
	}
}
