package store

import "encoding/json"

// SetExtraMembers makes s write m's members into every record it writes
// (keeping a member the record has already), as a newer release that added
// those members to its records does. Call it before s is used.
func SetExtraMembers(s *Store, m map[string]json.RawMessage) { s.extra = m }

// ReplicasSettled is replicasSettled, for its table.
var ReplicasSettled = replicasSettled
