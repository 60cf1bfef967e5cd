package sync

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
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

// TestMergeAheadAfterHeldOp: a change holds back one op of a new record
// (the validator refuses its value: quarantined, reapplicable) and later
// sends the record's other fields as a run merged ahead, after another
// record's ops. The run must not be taken as merged: its state has
// applied ops after the held one, so the held op's Skip would be lost
// (crdt.Record.Skip does nothing for an op the clock covers) and a
// reapply of it would find it applied; queued the usual way, the state
// keeps it in Skipped, as the reference admission does.
func TestMergeAheadAfterHeldOp(t *testing.T) {
	a := testAdmission()
	validator := rejectFields{"f9": true}
	e := openTest(t, Options{Wall: func() time.Time { return admitNow }, MaxSkew: time.Hour, Validator: validator})
	a.bounds = e.bounds
	c := Caller{User: "u", Replica: crdt.NewReplicaID(), Teams: []string{"a"}}
	c.Teams = teamSet(c.Teams)
	ms := int64(100_000)
	next := func() crdt.OpID { ms--; return opAt(c.Replica, ms) }
	ops := []crdt.Op{wop(next(), "a", "x", "f9", 99)} // refused by the validator: held
	for f := range 4 {
		ops = append(ops, wop(next(), "a", "y", fmt.Sprint("f", f), f))
	}
	for f := range 5 {
		ops = append(ops, wop(next(), "a", "x", fmt.Sprint("f", f), f))
	}
	ch := api.Change{Seq: 1, Ops: ops}
	pre := make([]*refusal, len(ch.Ops))
	val := make([]error, len(ch.Ops))
	for j := range ch.Ops {
		if pre[j] = precheck(&c, &ch.Ops[j]); pre[j] == nil {
			val[j] = validator.ValidateOp(&ch.Ops[j])
		}
	}
	if val[0] == nil {
		t.Fatal("the validator takes the op meant to be held")
	}
	ref, cur := newFakeView(), newFakeView()
	dr, err := a.admitChangeRef(ref, &c, &ch, pre, val)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := a.admitChangeRuns(cur, &c, &ch, pre, val, mergeAhead(a.bounds, &ch, pre, val))
	if err != nil {
		t.Fatal(err)
	}
	if msg := decisionsDiffer(&dr, &dc); msg != "" {
		t.Fatal(msg)
	}
	if len(dr.held) != 1 {
		t.Fatalf("reference holds %d ops, want 1", len(dr.held))
	}
	ref.apply(&c, &dr)
	cur.apply(&c, &dc)
	key := store.RecordKey("a", "people", "x")
	rr, cr := ref.records[string(key)], cur.records[string(key)]
	rb, _ := crdt.MarshalRecord(rr)
	cb, _ := crdt.MarshalRecord(cr)
	if !bytes.Equal(rb, cb) {
		t.Errorf("record x: current admission's state differs from the reference's:\n%+v\n%+v", cr, rr)
	}
	if len(rr.Skipped) != 1 {
		t.Errorf("reference state skips %v, want the held op", rr.Skipped)
	}
	if res, err := e.Push(bg, c, []api.Change{ch}); err != nil || !reflect.DeepEqual(res[0], dr.result) {
		t.Fatalf("engine: %v %+v, reference %+v", err, res, dr.result)
	}
	if got := storedStates(t, e, "a")[string(key)]; !bytes.Equal(got, rb) {
		t.Errorf("record x: the engine stores another state than the reference's")
	}
}
