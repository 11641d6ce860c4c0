package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"testing"

	"github.com/contoso/shoes/internal/shop"
)

// FuzzReadModifyWrite reads any bytes as a stock record, the way a
// reservation does (decodeMembers), and writes what it read back without
// a change (encodeOver). A record of a newer schema is refused with a
// *SchemaError; anything else it refuses is not a record of this schema;
// a record it takes is written back at this release's version, reads back
// as the same stock, and keeps every member this release does not know,
// as JSON equal to what was stored (a member of this release's spelled in
// another case is written back in this release's spelling); and written
// back with a change (a unit more, every hold released), it reads back as
// the changed stock.
//
// Mutations tried: decodeMembers without caseTwins → "invalid seed
// {"available":3,"AVAILABLE":5} accepted"; encodeOver keeping a stored
// member of another case beside v's → "{"AVAILABLE":2,…} written back as
// {"AVAILABLE":2,…,"available":2,…}, which is refused"; and folding only
// against the members written, not those read → "{"HOLDS":{"o":1}}
// changed to {Available:1 Holds:map[]}, written as
// {"HOLDS":{"o":1},"available":1,…}, reads as {… Holds:map[o:1]}" (a
// released hold back). Before the first two fixes, the fuzzer found in a
// second that {"AVAILABLE":0} and {"sChemA":0} were written back as
// records that read otherwise or not at all.
func FuzzReadModifyWrite(f *testing.F) {
	for _, s := range []string{
		`{"available":5}`,
		`{"available":3,"holds":{"01m95dxmsy85y6x131y9qceshz":2},"schema":1}`,
		`{"available":1,"giftWrap":{"paper":"<red>","sizes":[38,39.5]},"holds":{}}`, // a newer release's member
		`{"holds":null,"available":0}`,
		`{}`,
		`{"AVAILABLE":2,"Holds":{"o":1}}`, // this release's members, in another case
		`{"HOLDS":{"o":1}}`,
	} {
		var st shop.Stock
		if _, err := decodeMembers(kindStock, "seed", []byte(s), &st); err != nil {
			f.Fatalf("valid seed %s refused: %v", s, err)
		}
		f.Add([]byte(s))
	}
	for _, s := range []string{
		`{"schema":2,"available":1}`,    // newer
		`{"available":3,"AVAILABLE":5}`, // ambiguous
		`{"holds":{},"holdſ":{"o":1}}`,  // ambiguous as encoding/json folds case
		`{"schema":0}`, `{"schema":"1"}`, `[]`, `null`, `{"available":"five"}`, ``,
	} {
		var st shop.Stock
		if _, err := decodeMembers(kindStock, "seed", []byte(s), &st); err == nil {
			f.Fatalf("invalid seed %s accepted", s)
		}
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var st shop.Stock
		stored, err := decodeMembers(kindStock, "sku", data, &st)
		if err != nil {
			var se *SchemaError
			if errors.As(err, &se) && (!errors.Is(err, ErrSchema) || se.Schema <= kindStock.version) {
				t.Fatalf("schema error %v for a version this release reads", err)
			}
			return
		}
		read, err := membersOf(st)
		if err != nil {
			t.Fatal(err)
		}
		out, err := (&Store{}).encodeOver(kindStock, st, stored, read)
		if err != nil {
			t.Fatalf("writing back %q: %v", data, err)
		}
		var again shop.Stock
		written, err := decodeMembers(kindStock, "sku", out, &again)
		if err != nil {
			t.Fatalf("%q written back as %s, which is refused: %v", data, out, err)
		}
		if again.Available != st.Available || !maps.Equal(again.Holds, st.Holds) {
			t.Fatalf("%q reads as %+v, written back as %s, which reads as %+v", data, st, out, again)
		}
		if string(written[schemaMember]) != "1" {
			t.Fatalf("%q written back as %s: schema %s, want 1", data, out, written[schemaMember])
		}
		// The same record with a change: a unit more, every hold released.
		changed := shop.Stock{Available: st.Available + 1}
		out, err = (&Store{}).encodeOver(kindStock, changed, stored, read)
		if err != nil {
			t.Fatalf("writing back %q changed: %v", data, err)
		}
		var after shop.Stock
		if _, err := decodeMembers(kindStock, "sku", out, &after); err != nil || after.Available != changed.Available || len(after.Holds) != 0 {
			t.Fatalf("%q changed to %+v, written as %s, reads as %+v, %v", data, changed, out, after, err)
		}
		known := map[string]bool{}
		for name := range read {
			known[foldName(name)] = true
		}
		for name, raw := range stored {
			if known[foldName(name)] || name == schemaMember {
				continue // this release's member, or the version
			}
			if !sameJSON(t, raw, written[name]) {
				t.Fatalf("%q written back as %s: member %q was %s, is %s", data, out, name, raw, written[name])
			}
		}
	})
}

// sameJSON reports whether a and b are JSON texts of the same value.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	decode := func(b []byte) any {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		return v
	}
	return reflect.DeepEqual(decode(a), decode(b))
}
