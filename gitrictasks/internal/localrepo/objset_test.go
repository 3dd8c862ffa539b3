package localrepo

import (
	"crypto/sha1"
	"encoding/binary"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// TestObjIndex lists objects to send and objects held, across the table's
// growth, and finds each as what it was listed as, and nothing else.
func TestObjIndex(t *testing.T) {
	t.Parallel()
	hashOf := func(i int) plumbing.Hash {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(i))
		return plumbing.Hash(sha1.Sum(b[:]))
	}
	tests := []struct {
		name    string
		n       int
		heldPct int // out of 100, the share listed as held
	}{
		{"empty", 0, 0},
		{"one sent", 1, 0},
		{"one held", 1, 100},
		{"a chunk exactly", listChunk, 0},
		{"grown, sent only", 50_000, 0},
		{"grown, mixed", 50_000, 30},
		{"grown, held only", 5_000, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var x objIndex
			want := map[plumbing.Hash]int32{}
			sent := int32(0)
			for i := 0; i < tt.n; i++ {
				h := hashOf(i)
				if _, ok := x.find(h); ok {
					t.Fatalf("%s found before it was listed", h)
				}
				if i%100 < tt.heldPct {
					x.hold(h)
					want[h] = hostHas
				} else {
					if got := x.send(h, uint16(i%3)); got != sent {
						t.Fatalf("send #%d returned %d", sent, got)
					}
					want[h] = sent
					sent++
				}
			}
			if x.objs.n != int(sent) || x.objs.n+x.held.n != tt.n {
				t.Fatalf("%d sent and %d held, want %d and %d", x.objs.n, x.held.n, sent, tt.n-int(sent))
			}
			for h, w := range want {
				got, ok := x.find(h)
				if !ok || got != w {
					t.Fatalf("find(%s) = %d, %v; want %d", h, got, ok, w)
				}
				if w >= 0 && x.objs.at(w).hash != h {
					t.Fatalf("object %d is %s, want %s", w, x.objs.at(w).hash, h)
				}
			}
			for i := tt.n; i < tt.n+1000; i++ {
				if _, ok := x.find(hashOf(i)); ok {
					t.Fatalf("find of an unlisted hash succeeded")
				}
			}
			if len(x.slots) > 0 && x.used*4 > len(x.slots)*3 {
				t.Errorf("table of %d slots holds %d: over three quarters", len(x.slots), x.used)
			}
		})
	}
}
