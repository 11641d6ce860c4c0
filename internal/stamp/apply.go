package stamp

import (
	"encoding/json"

	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
)

// applier returns the function that applies one bucket's changes to the
// read model. Values that do not decode are logged and skipped: one bad
// record must not stop a region's reads.
func (s *Stamp) applier(bucket string) store.WatchFunc {
	switch bucket {
	case store.BucketCatalog:
		return func(key string, value []byte) {
			if value == nil {
				s.model.DeleteProduct(key)
				return
			}
			var p shop.Product
			if err := json.Unmarshal(value, &p); err != nil || p.ID != key {
				s.log.Error("skipping undecodable product", "key", key, "error", err)
				return
			}
			s.model.PutProduct(p)
		}
	case store.BucketComments:
		return func(key string, value []byte) {
			var c shop.Comment
			if value == nil {
				return // comments are never deleted by the API
			}
			if err := json.Unmarshal(value, &c); err != nil {
				s.log.Error("skipping undecodable comment", "key", key, "error", err)
				return
			}
			s.model.PutComment(c)
		}
	case store.BucketInventory:
		return func(key string, value []byte) {
			if value == nil {
				s.model.DeleteStock(key)
				return
			}
			var st shop.Stock
			if err := json.Unmarshal(value, &st); err != nil {
				s.log.Error("skipping undecodable stock", "key", key, "error", err)
				return
			}
			s.model.PutStock(key, st.Available)
		}
	default:
		return func(key string, value []byte) {
			var r shop.Rating
			if value == nil {
				return
			}
			if err := json.Unmarshal(value, &r); err != nil {
				s.log.Error("skipping undecodable rating", "key", key, "error", err)
				return
			}
			s.model.PutRating(r)
		}
	}
}
