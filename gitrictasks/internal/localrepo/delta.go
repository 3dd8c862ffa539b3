package localrepo

// Delta encoding in git's format (pack-format.txt, "Deltified
// representation"): the base's size and the target's size as varints,
// then instructions, each either a copy of a run of the base (offset and
// length) or an insert of up to 127 literal bytes.
//
// makeDelta indexes the base in blocks of deltaBlock bytes with a rolling
// hash, then runs the hash over the target byte by byte; where a block
// matches, the match is grown both ways and copied, and what matches
// nothing is inserted.

const (
	deltaBlock = 16
	// deltaPrime is the multiplier of the rolling hash.
	deltaPrime = 0x01000193
	// maxCopy is the longest run one copy instruction takes (three size
	// bytes).
	maxCopy = 0xffffff
)

// deltaPow is deltaPrime to the power deltaBlock-1, what the byte leaving
// the window weighs.
var deltaPow = func() uint32 {
	p := uint32(1)
	for i := 0; i < deltaBlock-1; i++ {
		p *= deltaPrime
	}
	return p
}()

func blockHash(b []byte) uint32 {
	var h uint32
	for _, c := range b[:deltaBlock] {
		h = h*deltaPrime + uint32(c)
	}
	return h
}

// makeDelta returns the delta that turns base into target, or nil when it
// would be longer than limit bytes (limit <= 0: no limit).
func makeDelta(base, target []byte, limit int) []byte {
	out := make([]byte, 0, 64)
	out = appendVarint(out, uint64(len(base)))
	out = appendVarint(out, uint64(len(target)))

	// The index: the base's block hashes, in a table of power-of-two size
	// (one slot per hash; a later block with the same hash wins, which
	// favours the end of the base as git's does not, but either is fine).
	blocks := len(base) / deltaBlock
	size := 1
	for size < blocks*2 {
		size <<= 1
	}
	var table []int32
	if blocks > 0 {
		table = make([]int32, size)
		for i := range table {
			table[i] = -1
		}
		mask := uint32(size - 1)
		for i := 0; i+deltaBlock <= len(base); i += deltaBlock {
			table[blockHash(base[i:])&mask] = int32(i)
		}
	}
	mask := uint32(size - 1)

	ins := 0 // start of the pending literal run
	t := 0
	var h uint32
	hashed := false // whether h is target[t:t+deltaBlock]'s hash
	for t+deltaBlock <= len(target) && blocks > 0 {
		if !hashed {
			h = blockHash(target[t:])
			hashed = true
		}
		p := int(table[h&mask])
		if p >= 0 && equalBlock(base[p:], target[t:]) {
			// Grow the match backwards over the pending literals, then
			// forwards.
			for t > ins && p > 0 && base[p-1] == target[t-1] {
				t--
				p--
			}
			n := deltaBlock + matchLen(base[p+deltaBlock:], target[t+deltaBlock:])
			out = appendInsert(out, target[ins:t])
			for done := 0; done < n; {
				k := min(n-done, maxCopy)
				out = appendCopy(out, p+done, k)
				done += k
			}
			t += n
			ins = t
			hashed = false
			if limit > 0 && len(out) > limit {
				return nil
			}
			continue
		}
		if t+deltaBlock < len(target) {
			h = (h-uint32(target[t])*deltaPow)*deltaPrime + uint32(target[t+deltaBlock])
		}
		t++
		if t-ins >= 1<<16 && limit > 0 && len(out)+(t-ins) > limit {
			return nil
		}
	}
	out = appendInsert(out, target[ins:])
	if limit > 0 && len(out) > limit {
		return nil
	}
	return out
}

func equalBlock(a, b []byte) bool {
	if len(a) < deltaBlock || len(b) < deltaBlock {
		return false
	}
	for i := 0; i < deltaBlock; i++ {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func matchLen(a, b []byte) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

func appendVarint(out []byte, v uint64) []byte {
	for v >= 0x80 {
		out = append(out, byte(v)|0x80)
		v >>= 7
	}
	return append(out, byte(v))
}

// appendInsert adds insert instructions for lit, 127 bytes at most each.
func appendInsert(out, lit []byte) []byte {
	for len(lit) > 0 {
		k := min(len(lit), 127)
		out = append(out, byte(k))
		out = append(out, lit[:k]...)
		lit = lit[k:]
	}
	return out
}

// appendCopy adds a copy instruction of n bytes (1..maxCopy) of the base
// from off: only the non-zero bytes of each are stored, their presence
// flagged in the opcode; a length of 0x10000 is stored as none.
func appendCopy(out []byte, off, n int) []byte {
	op := len(out)
	out = append(out, 0x80)
	for i := 0; i < 4; i++ {
		if b := byte(off >> (8 * i)); b != 0 {
			out[op] |= 1 << i
			out = append(out, b)
		}
	}
	if n != 0x10000 {
		for i := 0; i < 3; i++ {
			if b := byte(n >> (8 * i)); b != 0 {
				out[op] |= 0x10 << i
				out = append(out, b)
			}
		}
	}
	return out
}
