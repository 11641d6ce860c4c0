package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/contoso/shoes/internal/shop"
)

// MaxBodyBytes is the largest request body any endpoint accepts.
const MaxBodyBytes = 64 << 10

// DecodeJSON reads r's body as exactly one JSON object into dst. It rejects
// bodies over MaxBodyBytes, media types other than application/json, unknown
// fields, wrong types and trailing data, naming the offending field.
func DecodeJSON(r *http.Request, dst any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return shop.Errorf(shop.KindUnsupported, "", "Content-Type must be application/json")
		}
	}
	body, err := ReadBody(r)
	if err != nil {
		return err
	}
	return Unmarshal(body, dst)
}

// ReadBody reads r's whole body, at most MaxBodyBytes: a longer one is
// BodyTooLarge, a failed read BodyError's 400.
func ReadBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return nil, BodyError(err)
	}
	if len(body) > MaxBodyBytes {
		return nil, BodyTooLarge()
	}
	return body, nil
}

// BodyTooLarge is the answer to a request body over MaxBodyBytes: 413.
func BodyTooLarge() error {
	return shop.Errorf(shop.KindTooLarge, "", "request body exceeds %d bytes", MaxBodyBytes)
}

// BodyError is the answer to a failed read of a request body: 413 when
// http.MaxBytesReader cut it off, 400 otherwise.
func BodyError(err error) error {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return BodyTooLarge()
	}
	return shop.Invalid("", "could not read the request body")
}

// Unmarshal decodes body as exactly one JSON object into dst with the rules
// of DecodeJSON, without the size and media type checks.
func Unmarshal(body []byte, dst any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return shop.Invalid("", "request body is empty; a JSON object is required")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return shop.Invalid("", "request body must hold a single JSON object")
	}
	return nil
}

func decodeError(err error) error {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syntax):
		return shop.Invalid("", "malformed JSON at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return shop.Invalid("", "request body must be a JSON object")
		}
		return shop.Invalid(typ.Field, "must be a JSON %s", jsonKind(typ.Type.Kind().String()))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return shop.Invalid("", "malformed JSON: unexpected end of input")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return shop.Invalid(field, "unknown field")
	default:
		return shop.Invalid("", "malformed JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "integer"
	case "float32", "float64":
		return "number"
	case "bool":
		return "boolean"
	case "slice", "array":
		return "array"
	case "map", "struct":
		return "object"
	default:
		return fmt.Sprint(goKind)
	}
}
