package server

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// TestUnpackPushJoinsContinuedChanges: consecutive blocks of one seq are
// one change whose ops come back whole and in order; other changes stay
// as they were sent; a request with both c and 7q is refused.
func TestUnpackPushJoinsContinuedChanges(t *testing.T) {
	rep := crdt.ReplicaID{4, 15: 4}
	ts := crdt.MakeTimestamp(1795253400000, 0)
	ops := func(n int) []crdt.Op {
		out := make([]crdt.Op, n)
		for i := range out {
			ts++
			rec := crdt.NewRecord("wigan", "people", fmt.Sprintf("p%d", i%3))
			out[i] = rec.Write(crdt.OpID{Time: ts, Replica: rep}, "given_name", crdt.MustValue(fmt.Sprint(i)))
		}
		return out
	}
	one, two, three := ops(10), ops(4), ops(2)
	pack := func(seq uint64, o []crdt.Op) []byte {
		b, err := api.PackPush([]api.Change{{Seq: seq, Ops: o}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	req := &api.SyncRequest{Packed: [][]byte{pack(1, one[:3]), pack(1, one[3:7]), pack(1, one[7:]), pack(2, two), pack(3, three)}}
	if err := unpackPush(req, crdt.DefaultLimits); err != nil {
		t.Fatal(err)
	}
	want := []api.Change{{Seq: 1, Ops: one}, {Seq: 2, Ops: two}, {Seq: 3, Ops: three}}
	if len(req.Changes) != 3 || req.Packed != nil {
		t.Fatalf("%d changes, packed %v", len(req.Changes), req.Packed != nil)
	}
	for i := range want {
		if req.Changes[i].Seq != want[i].Seq || !reflect.DeepEqual(req.Changes[i].Ops, want[i].Ops) {
			t.Errorf("change %d: seq %d, %d ops; want seq %d, %d ops", i, req.Changes[i].Seq, len(req.Changes[i].Ops), want[i].Seq, len(want[i].Ops))
		}
	}
	both := &api.SyncRequest{Changes: want[:1], Packed: [][]byte{pack(2, two)}}
	if err := unpackPush(both, crdt.DefaultLimits); codeOf(err) != api.CodeMalformedBody {
		t.Fatalf("c and 7q: %v", err)
	}
}
