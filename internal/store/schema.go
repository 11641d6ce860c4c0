package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/contoso/shoes/internal/shop"
)

// Schema versions of the records the store and the processors write, one
// per kind of record. Every record names the version it was written with
// in its "schema" member; a record without one was written before versions
// were recorded and is version 1. This release writes each kind at the
// version below and reads every version up to it: a record of a higher
// version is refused with ErrSchema, never rewritten.
//
// Adding an optional member keeps the version: readers ignore members they
// do not know and read-modify-writes keep them (see encode). A version goes
// up only for a change an older reader would misread (a member whose
// meaning or type changes); docs/architecture.md ("Changing a record")
// gives the rule across releases.
const (
	// SchemaOrder is the order record (orders bucket) and the queued order
	// message (orders.new), which is the record as first written.
	// 1: id, user, items, status, reason, acceptedIn, createdAt, updatedAt;
	// optional: sameAs, reservation (SKU -> token of the order's hold).
	SchemaOrder = 1
	// SchemaIdempotency is the idempotency record.
	// 1: id, userKey, requestHash.
	SchemaIdempotency = 1
	// SchemaStock is a SKU's stock record (inventory bucket).
	// 1: available, holds (order id -> quantity); optional: holders (order
	// id -> token of the reservation that made the hold).
	SchemaStock = 1
	// SchemaCart is a user's cart. 1: items, updatedAt.
	SchemaCart = 1
	// SchemaProduct is a catalog product. 1: id, brand, model, category,
	// price, sizes, colour, description, launch, updatedAt.
	SchemaProduct = 1
	// SchemaComment is a comment, queued and processed.
	// 1: id, productId, user, text, createdAt.
	SchemaComment = 1
	// SchemaRating is a rating, queued and processed.
	// 1: id, productId, user, stars, createdAt.
	SchemaRating = 1
	// SchemaCanary is the queued canary message. 1: region, id.
	SchemaCanary = 1
	// SchemaStampEntry is a stamps registry entry.
	// 1: id, region, url, release, startedAt, heartbeatAt.
	SchemaStampEntry = 1
)

// The probe writes and canary receipts of the health bucket are bare ids,
// not JSON records, and carry no version.

// schemaMember names the version member of every record.
const schemaMember = "schema"

// recordKind is one kind of record: its name in errors and logs, and the
// version this release writes and the highest it reads.
type recordKind struct {
	name    string
	version int
}

var (
	kindOrder       = recordKind{"order", SchemaOrder}
	kindIdempotency = recordKind{"idempotency record", SchemaIdempotency}
	kindStock       = recordKind{"stock", SchemaStock}
	kindCart        = recordKind{"cart", SchemaCart}
	kindProduct     = recordKind{"product", SchemaProduct}
	kindComment     = recordKind{"comment", SchemaComment}
	kindRating      = recordKind{"rating", SchemaRating}
	kindCanary      = recordKind{"canary", SchemaCanary}
	kindStampEntry  = recordKind{"stamp entry", SchemaStampEntry}
)

// ErrSchema matches (errors.Is) every refusal of a record written with a
// schema newer than this release reads: the record is sound, this release
// cannot read it, a newer one can.
var ErrSchema = errors.New("record written with a newer schema")

// SchemaError refuses one record written with a newer schema. It matches
// ErrSchema.
type SchemaError struct {
	Record string // what and which: "order 01J…", "stock contoso-skyline-1-42"
	Schema int    // the version the record was written with
	Reads  int    // the highest version this release reads
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("%s: written with schema %d, this release reads up to %d: upgrade before reading it", e.Record, e.Schema, e.Reads)
}

// Is makes errors.Is(err, ErrSchema) true.
func (e *SchemaError) Is(target error) bool { return target == ErrSchema }

// newerRecord is what a client sees of a SchemaError: unavailable (503),
// not internal. Nothing is broken and retrying works: the edge may send the
// retry to a stamp of the newer release, and once the upgrade finishes
// every stamp reads the record. Other errors pass unchanged.
func newerRecord(err error) error {
	if errors.Is(err, ErrSchema) {
		return shop.Unavailable(newerDetail, err)
	}
	return err
}

// newerDetail is the client's message for a record of a newer schema.
const newerDetail = "the record was written by a newer release of the service; retry later"

// members is a record as its top-level members, kept so that a
// read-modify-write can write back what this release does not know.
type members map[string]json.RawMessage

// decodeRecord checks that data, a record of kind k stored under key
// (empty for a queued message: its "id" member names it then), is of a
// version this release reads, and decodes it into v. A record of a newer
// version returns a *SchemaError and leaves v alone.
func decodeRecord(k recordKind, key string, data []byte, v any) error {
	_, err := decodeMembers(k, key, data, v)
	return err
}

// decodeMembers is decodeRecord that also returns the record's members.
func decodeMembers(k recordKind, key string, data []byte, v any) (members, error) {
	var m members
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("decode %s %s: %w", k.name, key, err)
	}
	if m == nil {
		return nil, fmt.Errorf("decode %s %s: not a JSON object", k.name, key)
	}
	if a, b, ok := caseTwins(m); ok {
		return nil, fmt.Errorf("decode %s %s: members %q and %q differ only in case", k.name, key, a, b)
	}
	if key == "" {
		_ = json.Unmarshal(m["id"], &key) // only to name it
	}
	version := 1
	if raw, ok := m[schemaMember]; ok {
		if err := json.Unmarshal(raw, &version); err != nil || version < 1 {
			return nil, fmt.Errorf("decode %s %s: schema %s is not a version", k.name, key, raw)
		}
	}
	if version > k.version {
		return nil, &SchemaError{Record: k.name + " " + key, Schema: version, Reads: k.version}
	}
	if err := json.Unmarshal(data, v); err != nil {
		return nil, fmt.Errorf("decode %s %s: %w", k.name, key, err)
	}
	return m, nil
}

// caseTwins finds two members of m whose names differ only in case, as
// encoding/json folds case when it matches a name to a struct field, or a
// member that differs only in case from the version member, which every
// write adds. Such a record is ambiguous: a struct takes whichever of the
// twins comes last in the bytes, while a write-back keeps both and sorts
// them, so the value read and the value written back could differ. It is
// refused, never guessed.
func caseTwins(m members) (a, b string, ok bool) {
	seen := make(map[string]string, len(m)+1)
	seen[schemaMember] = schemaMember // lower-case ASCII: folded already
	for name := range m {
		if name == schemaMember {
			continue
		}
		folded := foldName(name)
		if other, dup := seen[folded]; dup {
			return min(name, other), max(name, other), true
		}
		seen[folded] = name
	}
	return "", "", false
}

// foldName folds the case of a member name as encoding/json does when it
// matches a name to a struct field.
func foldName(name string) string {
	return strings.Map(func(r rune) rune { return unicode.ToLower(unicode.ToUpper(r)) }, name)
}

// checkSchema returns a *SchemaError when data, a record of kind k under
// key, was written with a newer schema than this release reads. It decodes
// only the version: a value that is not a record is the reader's to refuse.
func checkSchema(k recordKind, key string, data []byte) error {
	var head struct {
		Schema *int `json:"schema"`
	}
	if json.Unmarshal(data, &head) != nil || head.Schema == nil || *head.Schema <= k.version {
		return nil
	}
	return &SchemaError{Record: k.name + " " + key, Schema: *head.Schema, Reads: k.version}
}

// membersOf encodes v, a struct, into its members.
func membersOf(v any) (members, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m members
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// encode encodes v as a new record of kind k, at this release's version.
func (s *Store) encode(k recordKind, v any) ([]byte, error) {
	return s.encodeOver(k, v, nil, nil)
}

// encodeOver encodes v as record of kind k, at this release's version,
// over the record it was read from: stored holds that record's members
// and read the members of v as decoded, before the change. Every member of
// stored that v has not (a newer release's) is kept, and so are the stored
// bytes of every member the change left alone, with whatever a newer
// release put inside them; only members the change set or removed are
// written anew. Members inside a member the change rewrites are this
// release's alone: a newer release that nests a member there must raise the
// version. A stored member spelled otherwise than one of v's, which
// decoding matched to it by folding case, is written in v's spelling
// (decodeMembers refuses a record with two such). With stored nil, v is a
// new record.
func (s *Store) encodeOver(k recordKind, v any, stored, read members) ([]byte, error) {
	next, err := membersOf(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", k.name, err)
	}
	out := make(members, len(stored)+len(next)+len(s.extra)+1)
	for name, raw := range s.extra {
		out[name] = raw
	}
	var known map[string]bool // v's member names, folded: made when first needed
	for name, raw := range stored {
		_, inNext := next[name]
		_, inRead := read[name]
		if !inNext && !inRead && name != schemaMember {
			// A member spelled otherwise than one of v's, which decoding
			// matched to it (folding case), is that member: v's spelling
			// replaces it, or it is cleared with it.
			if known == nil {
				known = make(map[string]bool, len(next)+len(read))
				for _, names := range []members{next, read} {
					for n := range names {
						known[foldName(n)] = true
					}
				}
			}
			if known[foldName(name)] {
				continue
			}
		}
		out[name] = raw
	}
	for name := range read {
		if _, kept := next[name]; !kept {
			delete(out, name) // cleared: an omitempty member now empty
		}
	}
	for name, raw := range next {
		if was, ok := read[name]; ok && bytes.Equal(was, raw) {
			if _, ok := stored[name]; ok {
				continue // unchanged: keep the stored bytes
			}
		}
		out[name] = raw
	}
	out[schemaMember] = json.RawMessage(strconv.Itoa(k.version))
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", k.name, err)
	}
	return b, nil
}

// DecodeComment decodes a queued comment. One written with a newer schema
// is refused with an error matching ErrSchema, of kind Unavailable: the
// message is sound, and a processor of the newer release can take it.
func DecodeComment(data []byte) (shop.Comment, error) {
	var c shop.Comment
	return c, newerRecord(decodeRecord(kindComment, "", data, &c))
}

// DecodeRating decodes a queued rating, as DecodeComment does a comment.
func DecodeRating(data []byte) (shop.Rating, error) {
	var r shop.Rating
	return r, newerRecord(decodeRecord(kindRating, "", data, &r))
}

// DecodeCanary decodes a queued canary, as DecodeComment does a comment.
func DecodeCanary(data []byte) (Canary, error) {
	var c Canary
	return c, newerRecord(decodeRecord(kindCanary, "", data, &c))
}
