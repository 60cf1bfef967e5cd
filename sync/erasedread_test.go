package sync

import (
	"fmt"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// TestErasedRangeRead: a change creating 40 records, 3 of which were
// erased (their keys among the others'), reads their purge markers in
// one range walk, with no point read of a marker; the erased ones are
// refused (record_erased) and the rest created. With the walk allowed to
// pass no marker, the markers it has not reached are read one by one,
// with the same results.
func TestErasedRangeRead(t *testing.T) {
	for _, steps := range []int{64, 0} {
		t.Run(fmt.Sprint("steps=", steps), func(t *testing.T) {
			old := erasedRangeSteps
			erasedRangeSteps = steps
			t.Cleanup(func() { erasedRangeSteps = old })
			kv := &countingKV{KV: testKV(t, t.TempDir()), gets: map[string]int{}}
			e := openTest(t, Options{Store: kv, Wall: func() time.Time { return admitNow }})
			setup := Caller{User: "s", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
			gone := map[string]bool{"r07": true, "r20": true, "r33": true}
			seq := uint64(0)
			for id := range gone {
				seq++
				op := wop(opAt(setup.Replica, 5_000_000-int64(seq)), "wigan", id, "f0", 1)
				if res, err := e.Push(bg, setup, []api.Change{{Seq: seq, Ops: []crdt.Op{op}}}); err != nil || res[0].Status != api.ChangeApplied {
					t.Fatalf("setup push: %v %+v", err, res)
				}
				if _, err := e.Erase(bg, Caller{User: "admin", Role: api.RoleAdmin}, api.RecordRef{Team: "wigan", Collection: "people", ID: id}, false); err != nil {
					t.Fatalf("erase: %v", err)
				}
			}
			c := Caller{User: "u", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
			var ops []crdt.Op
			ms := int64(1_000_000)
			for r := range 40 {
				for f := range 5 {
					ms--
					ops = append(ops, wop(opAt(c.Replica, ms), "wigan", fmt.Sprintf("r%02d", r), fmt.Sprintf("f%d", f), f))
				}
			}
			kv.take()
			res, err := e.Push(bg, c, []api.Change{{Seq: 1, Ops: ops}})
			if err != nil || res[0].Status != api.ChangeApplied {
				t.Fatalf("push: %v %+v", err, res)
			}
			refused := map[string]bool{}
			for _, o := range res[0].Ops {
				if o.Code != api.CodeRecordErased {
					t.Errorf("op %d: %s, want only record_erased", o.Index, o.Code)
				}
				refused[ops[o.Index].Record] = true
			}
			if len(refused) != len(gone) || len(res[0].Ops) != 5*len(gone) {
				t.Errorf("refused %v (%d ops), want the erased %v", refused, len(res[0].Ops), gone)
			}
			for id := range gone {
				if !refused[id] {
					t.Errorf("erased record %s not refused", id)
				}
			}
			g := kv.take()
			if steps > 0 && g["p/"] != 0 {
				t.Errorf("%d point reads of purge markers, want none (read by range)", g["p/"])
			}
			if steps == 0 && g["p/"] == 0 {
				t.Errorf("no point read of a purge marker, though the walk may pass none")
			}
			if n := len(serverRecords(t, e, "wigan")); n != 40-len(gone) {
				t.Errorf("%d records stored, want %d", n, 40-len(gone))
			}
		})
	}
}
