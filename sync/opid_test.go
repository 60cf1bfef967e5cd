package sync

import (
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// TestOpIDReuse: an exact copy of a merged op is an idempotent no-op; an op
// reusing a merged op's ID with other content (value, pred or field) is
// refused with op_id_reused, whether the original is live or overwritten,
// and never reaches another device.
func TestOpIDReuse(t *testing.T) {
	e := openTest(t, Options{})
	ann := newDevice("ann", time.Now, "wigan")
	bea := newDevice("bea", time.Now, "wigan")
	ref := api.RecordRef{Team: "wigan", Collection: "people", ID: "p1"}
	first := ann.write("wigan", "people", "p1", "name", "Alice")
	ann.commit()
	ann.syncAll(t, e)
	bea.syncAll(t, e)

	pushOne := func(op crdt.Op) api.ChangeResult {
		t.Helper()
		ann.seq++
		return push(t, e, ann, api.Change{Seq: ann.seq, Ops: []crdt.Op{op}})[0]
	}
	other := func(f func(*crdt.Op)) crdt.Op {
		op := first
		op.Pred = append([]crdt.OpID(nil), first.Pred...)
		f(&op)
		return op
	}
	expectReused := func(what string, op crdt.Op) {
		t.Helper()
		r := pushOne(op)
		if r.Status != api.ChangeApplied || len(r.Ops) != 1 || r.Ops[0].Code != api.CodeOpIDReused {
			t.Fatalf("%s: %+v", what, r)
		}
	}
	expectDuplicate := func(what string, op crdt.Op) {
		t.Helper()
		r := pushOne(op)
		if r.Status != api.ChangeApplied || len(r.Ops) != 0 {
			t.Fatalf("%s: %+v", what, r)
		}
	}
	historyLen := func() int {
		t.Helper()
		h, err := e.History(bg, ann.caller, ref)
		if err != nil {
			t.Fatal(err)
		}
		return len(h)
	}

	// Live original.
	expectDuplicate("exact copy", first)
	expectReused("other value", other(func(o *crdt.Op) { o.Value = crdt.MustValue("Mallory") }))
	if historyLen() != 1 {
		t.Fatalf("history has %d entries after a duplicate", historyLen())
	}
	// Overwritten original: only the log can tell.
	ann.write("wigan", "people", "p1", "name", "Alice B")
	ann.commit()
	ann.syncAll(t, e)
	expectDuplicate("exact copy of an overwritten op", first)
	expectReused("other value, overwritten", other(func(o *crdt.Op) { o.Value = crdt.MustValue("Mallory") }))
	expectReused("other pred", other(func(o *crdt.Op) { o.Pred = []crdt.OpID{{Time: 1, Replica: ann.caller.Replica}} }))
	// The delete register's pred spans fields: a delete reusing the ID.
	expectReused("other field", other(func(o *crdt.Op) { o.Field, o.Value = crdt.DeletedField, crdt.MustValue(true) }))

	rec, err := e.Record(bg, ann.caller, ref)
	if err != nil {
		t.Fatal(err)
	}
	var name string
	w, _ := rec.Field("name").Winner()
	if err := decodeValue(w.Value, &name); err != nil || name != "Alice B" || rec.Deleted() || historyLen() != 2 {
		t.Fatalf("record after reuse attempts: name %q deleted %v history %d", name, rec.Deleted(), historyLen())
	}
	bea.syncAll(t, e)
	if d := diffStates(encoded(t, map[api.RecordRef]*crdt.Record{ref: rec}), encoded(t, map[api.RecordRef]*crdt.Record{ref: bea.recs[ref]})); d != "" {
		t.Fatalf("bea differs from the server: %s", d)
	}
}
