package fleet

// score is the rendezvous weight of host for key: the hosts ranked for a key
// are the live members in decreasing score (ties by name). It is FNV-1a over
// key, a 0 byte and host, then the splitmix64 finalizer; every host and
// every version must compute the same value, so it never changes.
func score(key, host string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(key); i++ {
		h = (h ^ uint64(key[i])) * prime
	}
	h *= prime // the 0 byte
	for i := 0; i < len(host); i++ {
		h = (h ^ uint64(host[i])) * prime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// above reports whether host a ranks above host b for key.
func above(key, a, b string) bool {
	sa, sb := score(key, a), score(key, b)
	if sa != sb {
		return sa > sb
	}
	return a < b
}
