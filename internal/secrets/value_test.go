package secrets_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/contoso/shoes/internal/secrets"
)

const plainSecret = "s3cr3t-partner-key-7f1e9a"

type holder struct {
	Key    secrets.Value
	hidden secrets.Value
}

func TestValueRevealsOnlyThroughReveal(t *testing.T) {
	v := secrets.NewValue(plainSecret)
	if got := v.Reveal(); got != plainSecret {
		t.Fatalf("Reveal() = %q, want the plaintext", got)
	}
	if got := (secrets.Value{}).Reveal(); got != "" {
		t.Fatalf("zero Value reveals %q, want empty", got)
	}
	direct := []string{
		v.String(), v.GoString(), fmt.Sprint(v), fmt.Sprintf("%v", v), fmt.Sprintf("%+v", v),
		fmt.Sprintf("%#v", v), fmt.Sprintf("%s", v), fmt.Sprintf("%x", v), fmt.Sprintf("%d", v), fmt.Sprintf("%20s", v),
	}
	for _, out := range direct {
		if out != "[redacted]" {
			t.Errorf("direct formatting gave %q, want [redacted]", out)
		}
	}
	if got := fmt.Sprintf("%q", v); got != `"[redacted]"` {
		t.Errorf("%%q gave %s", got)
	}

	h := holder{Key: v, hidden: v}
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d", "%T"} {
		outs = append(outs,
			fmt.Sprintf(verb, h), fmt.Sprintf(verb, &h), fmt.Sprintf(verb, []secrets.Value{v}),
			fmt.Sprintf(verb, map[string]secrets.Value{"k": v}), fmt.Sprintf(verb, &v), fmt.Sprintf(verb, []any{v}))
	}
	outs = append(outs, fmt.Errorf("calling partner with %v", v).Error(), fmt.Sprintln(v, h))
	for _, x := range []any{v, h, &h, map[string]secrets.Value{"k": v}, []secrets.Value{v}} {
		b, err := json.Marshal(x)
		if err != nil {
			t.Fatalf("json.Marshal(%T): %v", x, err)
		}
		outs = append(outs, string(b))
	}
	if b, _ := json.Marshal(v); string(b) != `"[redacted]"` {
		t.Errorf("json.Marshal(v) = %s", b)
	}
	if b, _ := v.MarshalText(); string(b) != "[redacted]" {
		t.Errorf("MarshalText = %s", b)
	}

	var buf bytes.Buffer
	for _, hnd := range []slog.Handler{slog.NewJSONHandler(&buf, nil), slog.NewTextHandler(&buf, nil)} {
		log := slog.New(hnd)
		log.Info("calling partner", "key", v, "holder", h, "ptr", &h, slog.Any("map", map[string]secrets.Value{"k": v}),
			slog.Group("g", "key", v), "list", []secrets.Value{v})
		log.With("key", v).Warn("with attrs")
	}
	outs = append(outs, buf.String())
	if !strings.Contains(buf.String(), `"key":"[redacted]"`) {
		t.Errorf("JSON log does not show the redacted key: %s", buf.String())
	}
	for _, out := range outs {
		if strings.Contains(out, plainSecret) {
			t.Errorf("plaintext leaked: %s", out)
		}
	}
}
