package api

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/doorstep-health/doorstep/crdt"
)

// randomPush builds changes of many shapes for TestPackPushMatchesReference:
// empty changes, runs of one record's ops broken and resumed, hex and other
// record IDs, several teams and collections, up to 300 field names (string
// indexes past one varint byte) in shuffled orders, up to 200 replicas,
// values of 0 to 300 bytes, up to 20 preds, times that go back.
func randomPush(rng *rand.Rand) []Change {
	nFields := 1 + rng.IntN(300)
	nReps := 1 + rng.IntN(200)
	if rng.IntN(2) == 0 {
		nReps = 1 + rng.IntN(3)
	}
	reps := make([]crdt.ReplicaID, nReps)
	for i := range reps {
		reps[i] = crdt.ReplicaID{byte(i), 7: byte(rng.IntN(256)), 15: byte(i >> 8)}
	}
	teams := []string{"wigan", "bolton", strings.Repeat("t", 130)}
	colls := []string{"visits", "notes", "bench_rows"}
	recID := func() string {
		switch rng.IntN(4) {
		case 0:
			return fmt.Sprintf("r%d", rng.IntN(20))
		case 1:
			return fmt.Sprintf("%032X", rng.IntN(20)) // upper case: not hex32
		default:
			return fmt.Sprintf("%032x", rng.IntN(40))
		}
	}
	t := crdt.MakeTimestamp(1795253400000, 0)
	changes := make([]Change, rng.IntN(9))
	for c := range changes {
		changes[c].Seq = rng.Uint64() >> rng.IntN(64)
		if rng.IntN(6) == 0 {
			continue // an empty change
		}
		nOps := rng.IntN(400)
		team, coll, rec := teams[0], colls[0], recID()
		order := rng.Perm(nFields)
		pos := 0
		for range nOps {
			if rng.IntN(25) == 0 {
				team, coll, rec, pos = teams[rng.IntN(len(teams))], colls[rng.IntN(len(colls))], recID(), 0
				if rng.IntN(3) == 0 {
					order = rng.Perm(nFields)
				}
			}
			field := fmt.Sprintf("f%d", order[pos%len(order)])
			if rng.IntN(10) == 0 {
				field = fmt.Sprintf("f%d", rng.IntN(nFields))
			}
			pos++
			switch rng.IntN(20) {
			case 0:
				t -= crdt.Timestamp(rng.IntN(1 << 30)) // back in time
			case 1:
				t += crdt.Timestamp(rng.Uint64() >> 20)
			default:
				t += crdt.Timestamp(1 + rng.IntN(3))
			}
			op := crdt.Op{
				ID:   crdt.OpID{Time: t, Replica: reps[rng.IntN(len(reps))]},
				Team: team, Collection: coll, Record: rec, Field: field,
				Kind: crdt.Kind(rng.IntN(8)),
			}
			switch n := rng.IntN(10); {
			case n < 6:
				op.Value = bytes.Repeat([]byte{byte(n)}, 1+rng.IntN(25))
			case n < 8:
				op.Value = make([]byte, 100+rng.IntN(200))
			case n < 9:
				op.Value = []byte{} // present but empty: no value
			}
			np := 0
			if rng.IntN(3) == 0 {
				np = rng.IntN(4)
			} else if rng.IntN(20) == 0 {
				np = 14 + rng.IntN(7)
			}
			for range np {
				back := crdt.Timestamp(rng.IntN(1 << 20))
				if back > t {
					back = t
				}
				op.Pred = append(op.Pred, crdt.OpID{Time: t - back, Replica: reps[rng.IntN(len(reps))]})
			}
			changes[c].Ops = append(changes[c].Ops, op)
		}
	}
	return changes
}

// TestPackPushMatchesReference: PackPush gives, byte for byte, what the
// packer before issue 17's third pass gave (refPackPush), for random
// changes of every shape, and fails where it failed (a pred newer than
// its op).
func TestPackPushMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 3))
	for i := range 400 {
		in := randomPush(rng)
		if i%50 == 7 {
			// A pred newer than its op somewhere.
			for c := range in {
				if n := len(in[c].Ops); n > 0 {
					op := &in[c].Ops[rng.IntN(n)]
					op.Pred = append(op.Pred, crdt.OpID{Time: op.ID.Time + 1})
					break
				}
			}
		}
		want, werr := refPackPush(in)
		got, gerr := PackPush(in)
		if (werr == nil) != (gerr == nil) || werr != nil && werr.Error() != gerr.Error() {
			t.Fatalf("case %d: reference error %v, PackPush error %v", i, werr, gerr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("case %d: PackPush gives %d bytes differing from the reference's %d", i, len(got), len(want))
		}
	}
}
