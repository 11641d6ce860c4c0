package auth

// CachedTokens is how many verified tokens v remembers.
func CachedTokens(v *Verifier) int {
	if v.cache == nil {
		return 0
	}
	return v.cache.len()
}
