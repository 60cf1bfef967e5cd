package client

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// TestPackPushPieces: packPush's blocks each fit api.MaxPackedBlock and
// decode to the changes given, in order, a change too big for one block
// (packed straight in pieces from packedGuess, or after packing it whole
// when the guess is low) continued over consecutive blocks under its seq.
func TestPackPushPieces(t *testing.T) {
	rep := crdt.NewReplicaID()
	change := func(seq uint64, records, fields, value int) api.Change {
		c := api.Change{Seq: seq}
		tm := crdt.Timestamp(1 << 40)
		for r := range records {
			for f := range fields {
				tm++
				v := fmt.Sprintf("%06d%s", r, strings.Repeat("v", value))
				c.Ops = append(c.Ops, crdt.Op{ID: crdt.OpID{Time: tm, Replica: rep}, Team: "wigan", Collection: "bench_rows",
					Record: fmt.Sprintf("%032x", seq<<20|uint64(r)), Field: fmt.Sprintf("f%02d", f), Kind: crdt.KindWrite, Value: crdt.MustValue(v)})
			}
		}
		return c
	}
	// Small values first, big ones after: the guess from the first ops
	// is low and the whole change is packed before its pieces.
	skewed := change(5, 100, 30, 14)
	skewed.Ops = append(skewed.Ops, change(5, 10, 30, 2000).Ops...)
	for name, changes := range map[string][]api.Change{
		"small":    {change(1, 3, 30, 14)},
		"big":      {change(1, 100, 30, 14), change(2, 2, 30, 14), change(3, 300, 30, 14)},
		"skewed":   {skewed},
		"one huge": {change(9, 1, 10, 50_000)},
	} {
		blocks, ok := packPush(changes)
		if !ok {
			t.Fatalf("%s: not packed", name)
		}
		var got []api.Change
		for i, b := range blocks {
			if len(b) > api.MaxPackedBlock {
				t.Fatalf("%s: block %d is %d bytes", name, i, len(b))
			}
			cs, err := api.UnpackPush(b, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cs {
				if n := len(got); n > 0 && got[n-1].Seq == c.Seq {
					got[n-1].Ops = append(got[n-1].Ops, c.Ops...)
				} else {
					got = append(got, c)
				}
			}
		}
		if !reflect.DeepEqual(got, changes) {
			t.Fatalf("%s: %d blocks decode to %d changes, not the %d given", name, len(blocks), len(got), len(changes))
		}
		t.Logf("%s: %d blocks", name, len(blocks))
	}
}
