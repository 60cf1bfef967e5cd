package crdt

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

var (
	ann   = ReplicaID{0xa1}
	bea   = ReplicaID{0xb2}
	coord = ReplicaID{0xc3}
)

// at returns the ID of an op made by replica r at millisecond ms.
func at(ms int64, r ReplicaID) OpID { return OpID{Time: MakeTimestamp(ms, 0), Replica: r} }

func mustApply(t *testing.T, r *Record, ops ...Op) {
	t.Helper()
	for i := range ops {
		if err := r.Apply(&ops[i]); err != nil {
			t.Fatalf("apply %s: %v", ops[i].ID, err)
		}
	}
}

func mustMerge(t *testing.T, rs ...*Record) *Record {
	t.Helper()
	out := rs[0].Clone()
	for _, r := range rs[1:] {
		if err := out.Merge(r); err != nil {
			t.Fatalf("merge: %v", err)
		}
	}
	return out
}

func decodeString(t *testing.T, b msgpack.RawMessage) string {
	t.Helper()
	var s string
	if err := msgpack.Unmarshal(b, &s); err != nil {
		t.Fatalf("value %x: %v", b, err)
	}
	return s
}

// offlinePair returns Ann's and Bea's states after both saw op A
// ("stick"), then wrote concurrently: Ann "frame" as b, Bea "wheelchair" as c.
func offlinePair(t *testing.T, a, b, c OpID) (annRec, beaRec *Record) {
	t.Helper()
	base := NewRecord("wigan", "people", "p1")
	mustApply(t, base, base.Write(a, "mobility", MustValue("stick")))
	annRec, beaRec = base.Clone(), base.Clone()
	mustApply(t, annRec, annRec.Write(b, "mobility", MustValue("frame")))
	mustApply(t, beaRec, beaRec.Write(c, "mobility", MustValue("wheelchair")))
	return annRec, beaRec
}

func TestRegisterConcurrentWrites(t *testing.T) {
	tests := []struct {
		name       string
		annID      OpID
		beaID      OpID
		wantWinner string
	}{
		{"bea later", at(2000, ann), at(3000, bea), "wheelchair"},
		{"ann later", at(3000, ann), at(2000, bea), "frame"},
		{"same millisecond, replica breaks the tie", at(2000, ann), at(2000, bea), "wheelchair"},
		{"same millisecond, higher logical counter", OpID{MakeTimestamp(2000, 1), ann}, at(2000, bea), "frame"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := at(1000, coord)
			annRec, beaRec := offlinePair(t, a, tc.annID, tc.beaID)
			for _, m := range []*Record{mustMerge(t, annRec, beaRec), mustMerge(t, beaRec, annRec)} {
				f := m.Field("mobility")
				if !f.Conflict() {
					t.Fatalf("no conflict after concurrent writes: %+v", f)
				}
				if got := f.Live(); !slices.Equal(got, sortedIDs(tc.annID, tc.beaID)) {
					t.Fatalf("live %v, want both writes", got)
				}
				w, ok := f.Winner()
				if !ok || decodeString(t, w.Value) != tc.wantWinner {
					t.Fatalf("winner %v %q, want %q", ok, w.Value, tc.wantWinner)
				}
				if !m.Covers(a) || f.HasEntry(a) {
					t.Fatalf("A is not applied and overwritten: covered %v, live %v", m.Covers(a), f.HasEntry(a))
				}
				if got := m.Conflicts(); !slices.Equal(got, []string{"mobility"}) {
					t.Fatalf("record conflicts %v", got)
				}
			}
		})
	}
}

func sortedIDs(ids ...OpID) []OpID {
	slices.SortFunc(ids, OpID.Compare)
	return ids
}

func TestRegisterResolve(t *testing.T) {
	a, b, c := at(1000, coord), at(2000, ann), at(2000, bea)
	annRec, beaRec := offlinePair(t, a, b, c)
	merged := mustMerge(t, annRec, beaRec)

	// A write that saw only one of the values leaves the other standing.
	partial := merged.Clone()
	op := partial.Write(at(4000, ann), "mobility", MustValue("frame"))
	op.Pred = []OpID{b}
	mustApply(t, partial, op)
	if f := partial.Field("mobility"); !f.Conflict() || !slices.Equal(f.Live(), []OpID{c, op.ID}) {
		t.Fatalf("partial resolve: live %v, want [%s %s]", f.Live(), c, op.ID)
	}

	// The coordinator's write names both (pred = Live) and resolves it,
	// wherever it arrives: at her replica or at Bea's, which never saw b.
	d := merged.Write(at(5000, coord), "mobility", MustValue("frame"))
	if !slices.Equal(d.Pred, []OpID{b, c}) {
		t.Fatalf("resolving pred %v, want [%s %s]", d.Pred, b, c)
	}
	for _, st := range []*Record{merged.Clone(), beaRec.Clone(), annRec.Clone()} {
		mustApply(t, st, d)
		st = mustMerge(t, st, annRec, beaRec)
		f := st.Field("mobility")
		if f.Conflict() || !slices.Equal(f.Live(), []OpID{d.ID}) {
			t.Fatalf("after resolving write: live %v conflict %v", f.Live(), f.Conflict())
		}
		if len(st.Conflicts()) != 0 {
			t.Fatalf("record conflicts %v after resolve", st.Conflicts())
		}
	}
}

func TestSetAddWins(t *testing.T) {
	money := MustValue("money")
	base := NewRecord("wigan", "people", "p1")
	a1 := base.Add(at(1000, ann), "needs", money)
	mustApply(t, base, a1, base.Add(at(1001, ann), "needs", MustValue("mood")))

	tests := []struct {
		name string
		// ops made from the shared base by Ann and Bea, offline
		ann, bea   func(r *Record) Op
		wantMoney  bool
		wantTagsOf []OpID
	}{
		{
			name:      "remove races a concurrent re-add: add wins",
			ann:       func(r *Record) Op { return r.Remove(at(2000, ann), "needs", money) },
			bea:       func(r *Record) Op { return r.Add(at(2000, bea), "needs", money) },
			wantMoney: true, wantTagsOf: []OpID{at(2000, bea)},
		},
		{
			name:      "two removes of the same adds",
			ann:       func(r *Record) Op { return r.Remove(at(2000, ann), "needs", money) },
			bea:       func(r *Record) Op { return r.Remove(at(2000, bea), "needs", money) },
			wantMoney: false,
		},
		{
			name:      "remove of an element never added is a no-op",
			ann:       func(r *Record) Op { return r.Remove(at(2000, ann), "needs", MustValue("bereavement")) },
			bea:       func(r *Record) Op { return r.Add(at(2000, bea), "needs", MustValue("aids")) },
			wantMoney: true, wantTagsOf: []OpID{a1.ID},
		},
		{
			name:      "both add the same element: one member, two tags",
			ann:       func(r *Record) Op { return r.Add(at(2000, ann), "needs", money) },
			bea:       func(r *Record) Op { return r.Add(at(2001, bea), "needs", money) },
			wantMoney: true, wantTagsOf: []OpID{a1.ID, at(2000, ann), at(2001, bea)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			annRec, beaRec := base.Clone(), base.Clone()
			mustApply(t, annRec, tc.ann(annRec))
			mustApply(t, beaRec, tc.bea(beaRec))
			for _, m := range []*Record{mustMerge(t, annRec, beaRec), mustMerge(t, beaRec, annRec)} {
				f := m.Field("needs")
				has := slices.ContainsFunc(f.Members(), func(v msgpack.RawMessage) bool { return bytes.Equal(v, money) })
				if has != tc.wantMoney {
					t.Fatalf("money in set = %v, want %v (members %q)", has, tc.wantMoney, f.Members())
				}
				if got := f.Tags(money); !slices.Equal(got, tc.wantTagsOf) {
					t.Fatalf("tags %v, want %v", got, tc.wantTagsOf)
				}
				if !slices.ContainsFunc(f.Members(), func(v msgpack.RawMessage) bool { return decodeString(t, v) == "mood" }) {
					t.Fatalf("untouched element lost: %q", f.Members())
				}
				if f.Conflict() {
					t.Fatalf("a set is never in conflict")
				}
			}
		})
	}

	// Members are distinct and sorted however many tags an element has.
	r := base.Clone()
	mustApply(t, r, r.Add(at(3000, bea), "needs", money))
	if got := r.Field("needs").Members(); len(got) != 2 || bytes.Compare(got[0], got[1]) >= 0 {
		t.Fatalf("members %q, want two sorted distinct", got)
	}
}

func TestLogOrder(t *testing.T) {
	r1, r2 := NewRecord("wigan", "contacts", "c1"), NewRecord("wigan", "contacts", "c1")
	// Arrival order differs across writers (each writer's own ops arrive
	// in their order, as the package doc requires); the log is in ID order.
	ops := []Op{
		r1.Append(at(2000, ann), "notes", MustValue("second")),
		r1.Append(at(3000, ann), "notes", MustValue("third")),
		r1.Append(at(1000, bea), "notes", MustValue("first")),
	}
	mustApply(t, r1, ops...)
	mustApply(t, r2, ops[0], ops[2], ops[1], ops[0])
	for _, r := range []*Record{r1, r2} {
		var got []string
		for _, e := range r.Field("notes").Entries {
			got = append(got, decodeString(t, e.Value))
		}
		if !slices.Equal(got, []string{"first", "second", "third"}) {
			t.Fatalf("log %v, want ID order", got)
		}
		if r.Field("notes").Conflict() || len(r.Conflicts()) != 0 {
			t.Fatalf("a log is never in conflict")
		}
	}
}

func TestDeleteVersusConcurrentEdit(t *testing.T) {
	base := NewRecord("wigan", "people", "p1")
	mustApply(t, base,
		base.Write(at(1000, ann), "phone", MustValue("01942 000000")),
		base.Add(at(1001, ann), "needs", MustValue("money")),
		base.Append(at(1002, ann), "notes", MustValue("first visit")),
	)
	annRec, beaRec := base.Clone(), base.Clone()
	del := annRec.Delete(at(2000, ann))
	mustApply(t, annRec, del)
	if !annRec.Deleted() || annRec.DeleteConflicts() != nil {
		t.Fatalf("delete of a seen record: deleted %v conflicts %v", annRec.Deleted(), annRec.DeleteConflicts())
	}
	if len(del.Pred) != 3 {
		t.Fatalf("delete pred %v, want the 3 live entries", del.Pred)
	}
	// Bea, offline, edits the phone and appends a note.
	edit := beaRec.Write(at(2500, bea), "phone", MustValue("07700 900000"))
	note := beaRec.Append(at(2600, bea), "notes", MustValue("moved house"))
	mustApply(t, beaRec, edit, note)

	for _, m := range []*Record{mustMerge(t, annRec, beaRec), mustMerge(t, beaRec, annRec)} {
		if !m.Deleted() {
			t.Fatalf("record not deleted after merge")
		}
		if got := m.DeleteConflicts(); !slices.Equal(got, []string{"notes", "phone"}) {
			t.Fatalf("delete conflicts %v, want [notes phone]", got)
		}
		if got := m.Conflicts(); !slices.Equal(got, []string{"notes", "phone"}) {
			t.Fatalf("conflicts %v, want [notes phone]", got)
		}
		if w, _ := m.Field("phone").Winner(); w.ID != edit.ID {
			t.Fatalf("Bea's edit lost: phone winner %s", w.ID)
		}

		// A restore having seen everything brings the record back with
		// Bea's edit and clears the conflict.
		restored := m.Clone()
		mustApply(t, restored, restored.Restore(at(3000, coord)))
		if restored.Deleted() || restored.DeleteConflicts() != nil || len(restored.Conflicts()) != 0 {
			t.Fatalf("restore: deleted %v conflicts %v", restored.Deleted(), restored.Conflicts())
		}
		if w, _ := restored.Field("phone").Winner(); w.ID != edit.ID {
			t.Fatalf("restore lost Bea's edit")
		}
		// Deleting again, having seen the edit, is a clean delete.
		mustApply(t, restored, restored.Delete(at(4000, coord)))
		if !restored.Deleted() || restored.DeleteConflicts() != nil {
			t.Fatalf("second delete: deleted %v conflicts %v", restored.Deleted(), restored.DeleteConflicts())
		}
	}

	// A delete racing a restore is a register conflict; the winner decides.
	r := annRec.Clone()
	restore := r.Restore(at(5000, bea))
	redelete := r.Delete(at(5000, coord))
	mustApply(t, r, restore, redelete)
	if !r.Field(DeletedField).Conflict() || !r.Deleted() {
		t.Fatalf("delete/restore race: conflict %v deleted %v", r.Field(DeletedField).Conflict(), r.Deleted())
	}
	if got := r.Conflicts(); !slices.Contains(got, DeletedField) {
		t.Fatalf("conflicts %v lack %s", got, DeletedField)
	}
}

func TestNullValueSurvivesTheWire(t *testing.T) {
	r := NewRecord("wigan", "people", "p1")
	op := r.Write(at(1000, ann), "phone", MustValue(nil))
	b, err := MarshalOp(&op)
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalOp(b)
	if err != nil {
		t.Fatalf("a write of nil does not decode: %v", err)
	}
	if !bytes.Equal(got.Value, []byte{0xc0}) {
		t.Fatalf("value %x, want c0", got.Value)
	}
	mustApply(t, r, *got)
	rb, err := MarshalRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalRecord(rb)
	if err != nil {
		t.Fatalf("a state holding nil does not decode: %v", err)
	}
	if w, ok := back.Field("phone").Winner(); !ok || !bytes.Equal(w.Value, []byte{0xc0}) {
		t.Fatalf("winner %x %v", w.Value, ok)
	}
}

func TestApplyErrors(t *testing.T) {
	r := NewRecord("wigan", "people", "p1")
	mustApply(t, r,
		r.Write(at(1000, ann), "phone", MustValue("x")),
		r.Add(at(1001, ann), "needs", MustValue("money")),
		r.Append(at(1002, ann), "notes", MustValue("n")),
	)
	other := func(mod func(*Op)) Op {
		op := r.Write(at(2000, ann), "phone", MustValue("y"))
		mod(&op)
		return op
	}
	tests := []struct {
		name string
		op   Op
		want error
	}{
		{"set add on a register", r.Add(at(2000, ann), "phone", MustValue("y")), ErrKindMismatch},
		{"append on a set", r.Append(at(2000, ann), "needs", MustValue("y")), ErrKindMismatch},
		{"write on a log", r.Write(at(2000, ann), "notes", MustValue("y")), ErrKindMismatch},
		{"remove on a register", r.Remove(at(2000, ann), "phone", MustValue("x")), ErrKindMismatch},
		{"set add on the delete register", r.Add(at(2000, ann), DeletedField, MustValue(true)), ErrKindMismatch},
		{"append to the delete register", r.Append(at(2000, ann), DeletedField, MustValue(true)), ErrKindMismatch},
		{"other record", other(func(o *Op) { o.Record = "p2" }), ErrWrongRecord},
		{"other collection", other(func(o *Op) { o.Collection = "carers" }), ErrWrongRecord},
		{"other team", other(func(o *Op) { o.Team = "ashton" }), ErrWrongRecord},
		{"invalid op", other(func(o *Op) { o.Value = nil }), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := MarshalRecord(r)
			err := r.Apply(&tc.op)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Apply: %v, want %v", err, tc.want)
			}
			if after, _ := MarshalRecord(r); !bytes.Equal(before, after) {
				t.Fatalf("a refused op changed the record")
			}
		})
	}

	t.Run("merge of another record", func(t *testing.T) {
		for _, o := range []*Record{
			NewRecord("wigan", "people", "p2"),
			NewRecord("ashton", "people", "p1"),
			NewRecord("wigan", "carers", "p1"),
		} {
			if err := r.Clone().Merge(o); !errors.Is(err, ErrWrongRecord) {
				t.Fatalf("Merge %s/%s/%s: %v, want ErrWrongRecord", o.Team, o.Collection, o.ID, err)
			}
		}
	})
	t.Run("merge of a field of another type", func(t *testing.T) {
		o := NewRecord("wigan", "people", "p1")
		mustApply(t, o, o.Add(at(3000, bea), "phone", MustValue("y")))
		if err := r.Clone().Merge(o); !errors.Is(err, ErrKindMismatch) {
			t.Fatalf("Merge: %v, want ErrKindMismatch", err)
		}
	})
	t.Run("merge of a set-typed delete register", func(t *testing.T) {
		o := NewRecord("wigan", "people", "p1")
		o.Fields[DeletedField] = &Field{Type: Set, Entries: []Entry{{ID: at(3000, bea), Value: MustValue(true)}}}
		if err := NewRecord("wigan", "people", "p1").Merge(o); !errors.Is(err, ErrKindMismatch) {
			t.Fatalf("Merge: %v, want ErrKindMismatch", err)
		}
	})
	t.Run("merge of a nil field", func(t *testing.T) {
		o := NewRecord("wigan", "people", "p1")
		o.Fields["phone"] = nil
		if err := r.Clone().Merge(o); !errors.Is(err, ErrMalformed) {
			t.Fatalf("Merge: %v, want ErrMalformed", err)
		}
	})
}

func TestValidate(t *testing.T) {
	good := func() Op {
		return Op{ID: at(2000, ann), Team: "wigan", Collection: "people", Record: "p1", Field: "phone",
			Kind: KindWrite, Value: MustValue("x"), Pred: []OpID{at(1000, bea)}}
	}
	if op := good(); op.Validate() != nil {
		t.Fatalf("good op refused: %v", op.Validate())
	}
	tests := []struct {
		name string
		mod  func(*Op)
	}{
		{"zero id", func(o *Op) { o.ID = OpID{} }},
		{"zero replica", func(o *Op) { o.ID.Replica = ReplicaID{} }},
		{"no team", func(o *Op) { o.Team = "" }},
		{"no collection", func(o *Op) { o.Collection = "" }},
		{"no record", func(o *Op) { o.Record = "" }},
		{"no field", func(o *Op) { o.Field = "" }},
		{"zero kind", func(o *Op) { o.Kind = 0 }},
		{"unknown kind", func(o *Op) { o.Kind = 9 }},
		{"write without value", func(o *Op) { o.Value = nil }},
		{"add without value", func(o *Op) { o.Kind, o.Value, o.Pred = KindAdd, nil, nil }},
		{"append without value", func(o *Op) { o.Kind, o.Value, o.Pred = KindAppend, nil, nil }},
		{"pred equal to id", func(o *Op) { o.Pred = []OpID{o.ID} }},
		{"pred newer than id", func(o *Op) { o.Pred = []OpID{at(3000, bea)} }},
		{"pred same time, higher replica", func(o *Op) { o.Pred = []OpID{at(2000, bea)} }},
		{"pred with zero replica", func(o *Op) { o.Pred = []OpID{{Time: 5}} }},
		{"value not msgpack", func(o *Op) { o.Value = msgpack.RawMessage{0xc1} }},
		{"value truncated", func(o *Op) { o.Value = msgpack.RawMessage{0xa5, 'a'} }},
		{"value with trailing bytes", func(o *Op) { o.Value = msgpack.RawMessage{0x01, 0x02} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			op := good()
			tc.mod(&op)
			if err := op.Validate(); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Validate: %v, want ErrMalformed", err)
			}
		})
	}
	// A remove may name no tags and carry no value.
	op := good()
	op.Kind, op.Value, op.Pred = KindRemove, nil, nil
	if err := op.Validate(); err != nil {
		t.Fatalf("empty remove refused: %v", err)
	}
}

func TestFieldReadersOnNil(t *testing.T) {
	var f *Field
	if _, ok := f.Winner(); ok || f.Conflict() || f.Live() != nil || f.Members() != nil || f.Tags(MustValue(1)) != nil {
		t.Fatalf("nil field readers are not empty")
	}
	r := NewRecord("wigan", "people", "p1")
	if r.Deleted() || r.DeleteConflicts() != nil || r.Conflicts() != nil || r.Field("x") != nil {
		t.Fatalf("empty record reads as changed")
	}
}

// TestReusedIDConverges: a faulty replica that sends two different ops
// under one ID must not make replicas diverge.
func TestReusedIDConverges(t *testing.T) {
	base := NewRecord("wigan", "people", "p1")
	x := base.Write(at(1000, ann), "phone", MustValue("01942 000000"))
	y := base.Write(at(1000, ann), "phone", MustValue("07700 900000"))
	r1, r2 := base.Clone(), base.Clone()
	mustApply(t, r1, x, y)
	mustApply(t, r2, y, x)
	b1, _ := MarshalRecord(r1)
	b2, _ := MarshalRecord(r2)
	if !bytes.Equal(b1, b2) {
		t.Fatalf("replicas diverged:\n%x\n%x", b1, b2)
	}
	if m := mustMerge(t, r1, r2); len(m.Field("phone").Entries) != 1 {
		t.Fatalf("one ID gave %d entries", len(m.Field("phone").Entries))
	}
}

func TestRecordValidate(t *testing.T) {
	e1 := Entry{ID: at(1000, ann), Value: MustValue("a")}
	e2 := Entry{ID: at(2000, bea), Value: MustValue("b")}
	tests := []struct {
		name  string
		build func(r *Record)
	}{
		{"no team", func(r *Record) { r.Team = "" }},
		{"no collection", func(r *Record) { r.Collection = "" }},
		{"no id", func(r *Record) { r.ID = "" }},
		{"nil field", func(r *Record) { r.Fields["x"] = nil }},
		{"unknown type", func(r *Record) { r.Fields["x"] = &Field{Type: 9} }},
		{"entries unsorted", func(r *Record) { r.Fields["x"] = &Field{Type: Register, Entries: []Entry{e2, e1}} }},
		{"entry twice", func(r *Record) { r.Fields["x"] = &Field{Type: Register, Entries: []Entry{e1, e1}} }},
		{"entry without value", func(r *Record) { r.Fields["x"] = &Field{Type: Register, Entries: []Entry{{ID: e1.ID}}} }},
		{"entry of no replica", func(r *Record) {
			r.Fields["x"] = &Field{Type: Register, Entries: []Entry{{ID: OpID{Time: 5}, Value: e1.Value}}}
		}},
		{"entry also pending", func(r *Record) {
			r.Fields["x"] = &Field{Type: Register, Entries: []Entry{e1}, Pending: []OpID{e1.ID}}
		}},
		{"pending unsorted", func(r *Record) {
			r.Fields["x"] = &Field{Type: Set, Pending: []OpID{at(4000, coord), at(3000, coord)}}
		}},
		{"pending of no replica", func(r *Record) { r.Fields["x"] = &Field{Type: Set, Pending: []OpID{{Time: 1}}} }},
		{"pending but applied", func(r *Record) { r.Fields["x"] = &Field{Type: Set, Pending: []OpID{at(500, ann)}} }},
		{"entry not in the clock", func(r *Record) {
			r.Fields["x"] = &Field{Type: Log, Entries: []Entry{{ID: at(5000, ann), Value: e1.Value}}}
		}},
		{"clock unsorted", func(r *Record) { r.Clock[0], r.Clock[1] = r.Clock[1], r.Clock[0] }},
		{"clock of no replica", func(r *Record) { r.Clock = append([]Seen{{Time: 5}}, r.Clock...) }},
		{"delete-seen neither live nor pending", func(r *Record) { r.DeleteSeen = []OpID{at(500, ann)} }},
		{"delete-seen unsorted", func(r *Record) { r.DeleteSeen = []OpID{e2.ID, e1.ID} }},
		{"delete register as a set", func(r *Record) { r.Fields[DeletedField] = &Field{Type: Set, Entries: []Entry{e1}} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRecord("wigan", "people", "p1")
			r.Clock = []Seen{{Replica: ann, Time: e1.ID.Time}, {Replica: bea, Time: e2.ID.Time}}
			r.Fields["ok"] = &Field{Type: Register, Entries: []Entry{e1, e2}}
			tc.build(r)
			if err := r.Validate(); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Validate: %v, want ErrMalformed", err)
			}
			if tc.name == "entry without value" {
				return // encoded as nil, which decodes as the value nil
			}
			b, _ := MarshalRecord(r)
			if _, err := UnmarshalRecord(b); !errors.Is(err, ErrMalformed) {
				t.Fatalf("UnmarshalRecord: %v, want ErrMalformed", err)
			}
		})
	}
	ok := NewRecord("wigan", "people", "p1")
	ok.Clock = []Seen{{Replica: ann, Time: e1.ID.Time}, {Replica: bea, Time: e2.ID.Time}}
	ok.Fields["x"] = &Field{Type: Register, Entries: []Entry{e1, e2}, Pending: []OpID{at(500, coord)}}
	ok.DeleteSeen = []OpID{at(600, coord), e1.ID}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid record refused: %v", err)
	}
}
