package shop

import (
	"reflect"
	"slices"
	"testing"
)

func TestSeedCatalogValid(t *testing.T) {
	products := SeedCatalog()
	if len(products) != 50 {
		t.Fatalf("len(SeedCatalog()) = %d, want 50", len(products))
	}
	for i := range products {
		p := &products[i]
		if err := p.Validate(); err != nil {
			t.Errorf("product %q: Validate() = %v", p.ID, err)
		}
		if !p.UpdatedAt.Equal(SeedTime) {
			t.Errorf("product %q: UpdatedAt = %v, want %v", p.ID, p.UpdatedAt, SeedTime)
		}
	}
}

func TestSeedCatalogIDsUniqueAndSorted(t *testing.T) {
	products := SeedCatalog()
	seen := make(map[string]bool, len(products))
	for i, p := range products {
		if seen[p.ID] {
			t.Errorf("duplicate id %q", p.ID)
		}
		seen[p.ID] = true
		if i > 0 && products[i-1].ID >= p.ID {
			t.Errorf("ids not strictly sorted: %q before %q", products[i-1].ID, p.ID)
		}
	}
}

func TestSeedCatalogCoversEveryCategory(t *testing.T) {
	used := make(map[string]int)
	for _, p := range SeedCatalog() {
		used[p.Category]++
	}
	for _, c := range Categories {
		if used[c] == 0 {
			t.Errorf("category %q has no seeded product", c)
		}
	}
}

func TestSeedCatalogLaunchCount(t *testing.T) {
	var launches []string
	for _, p := range SeedCatalog() {
		if p.Launch {
			launches = append(launches, p.ID)
		}
	}
	if len(launches) != 4 {
		t.Errorf("launch products = %v (%d), want exactly 4", launches, len(launches))
	}
}

func TestSeedCatalogDeterministicAndFresh(t *testing.T) {
	first, second := SeedCatalog(), SeedCatalog()
	if !reflect.DeepEqual(first, second) {
		t.Fatal("two calls to SeedCatalog returned different catalogs")
	}
	want := SeedCatalog()

	first[0].Sizes[0] = "99"
	first[0].Sizes = append(first[0].Sizes, "12")
	first[1].Model = "changed"
	first[2].Price.AmountCents = 1
	first[3].Launch = !first[3].Launch
	first = slices.Delete(first, 4, 5)
	_ = first

	if !reflect.DeepEqual(second, want) {
		t.Error("mutating one SeedCatalog result changed another")
	}
	if third := SeedCatalog(); !reflect.DeepEqual(third, want) {
		t.Error("mutating a SeedCatalog result changed later results")
	}
}
