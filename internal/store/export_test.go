package store

import (
	"context"
	"encoding/json"

	"github.com/contoso/shoes/internal/shop"
)

// SetExtraMembers makes s write m's members into every record it writes
// (keeping a member the record has already), as a newer release that added
// those members to its records does. Call it before s is used.
func SetExtraMembers(s *Store, m map[string]json.RawMessage) { s.extra = m }

// ReplicasSettled is replicasSettled, for its table.
var ReplicasSettled = replicasSettled

// AssetTimeout is assetTimeout, for its table.
var AssetTimeout = assetTimeout

// ReserveEach is Reserve with each line's change written by its own
// compare-and-set loop, as before changes to a SKU were batched: the
// baseline of BenchmarkReserveOneSKU.
func (s *Store) ReserveEach(ctx context.Context, id string, l shop.Line) error {
	var found string
	_, _, err := update(ctx, s, kindStock, s.inventory, l.SKU, Version{}, reserveLine(id, l, "each", &found))
	return err
}

// ReleaseEach is ReleaseHolds of one line, sold, with its own
// compare-and-set loop: the baseline of BenchmarkReserveOneSKU.
func (s *Store) ReleaseEach(ctx context.Context, id string, l shop.Line) error {
	_, _, err := update(ctx, s, kindStock, s.inventory, l.SKU, Version{}, releaseLine(id, func(string) bool { return true }))
	return err
}

// ReleaseHolds releases order id's holds on the SKUs of lines, whoever
// made them: sold (a confirmed order's) or given back with restore (a
// rejected order's). It is Settle without an order record.
func (s *Store) ReleaseHolds(ctx context.Context, id string, lines []shop.Line, restore bool) error {
	return s.releaseHolds(ctx, id, lines, func(string, string) bool { return !restore })
}
