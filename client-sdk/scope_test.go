package client

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// residueMap is local state for the residue rules held in memory.
type residueMap struct {
	mapReader
	groups []outboxGroup
	rejs   []storedRejection
	stored []byte
}

func (m *residueMap) outbox() ([]outboxGroup, error)         { return m.groups, nil }
func (m *residueMap) rejections() ([]storedRejection, error) { return m.rejs, nil }
func (m *residueMap) scope() ([]byte, error)                 { return m.stored, nil }
func (m *residueMap) recordRefs() ([]Ref, error) {
	var out []Ref
	for ref := range m.mapReader {
		out = append(out, ref)
	}
	slices.SortFunc(out, func(a, b Ref) int { return cmpRef(a, b) })
	return out, nil
}

func cmpRef(a, b Ref) int {
	for _, c := range [][2]string{{a.Team, b.Team}, {a.Collection, b.Collection}, {a.ID, b.ID}} {
		if c[0] != c[1] {
			if c[0] < c[1] {
				return -1
			}
			return 1
		}
	}
	return 0
}

func opOn(ref Ref, n int64, field string, v any) crdt.Op {
	return crdt.Op{ID: crdt.OpID{Time: crdt.MakeTimestamp(n, 0), Replica: crdt.ReplicaID{1}}, Team: ref.Team,
		Collection: ref.Collection, Record: ref.ID, Field: field, Kind: crdt.KindWrite, Value: crdt.MustValue(v)}
}

func TestPlanScopeDropsOutOfScope(t *testing.T) {
	wigan := Ref{Team: "wigan", Collection: "people", ID: "p1"}
	ashton := Ref{Team: "ashton", Collection: "people", ID: "p2"}
	rd := &residueMap{mapReader: mapReader{wigan: {1}, ashton: {1}}, rejs: []storedRejection{
		{Key: []byte("q1"), Rejection: Rejection{Op: opOn(wigan, 1, "cfs", 42), Code: api.CodeInvalidValue}},
		{Key: []byte("q2"), Rejection: Rejection{Op: opOn(wigan, 2, "phone", "x"), Code: api.CodeForbiddenTeam}},
		{Key: []byte("q3"), Rejection: Rejection{Op: opOn(ashton, 3, "cfs", 42), Code: api.CodeInvalidValue}},
	}}
	resp := &api.SyncResponse{Scope: &api.Scope{Teams: []string{"ashton"}}}
	w, err := planReply(rd, nil, resp, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(w.OutOfScope, []Ref{wigan}) || !slices.Contains(w.Changed, wigan) {
		t.Fatalf("out of scope %v, changed %v", w.OutOfScope, w.Changed)
	}
	if len(w.DropRejections) != 1 || string(w.DropRejections[0]) != "q1" {
		t.Fatalf("dropped rejections %q (the forbidden_team handover and in-scope ones stay)", w.DropRejections)
	}
	var sc api.Scope
	if err := msgpack.Unmarshal(w.Scope, &sc); err != nil || !slices.Equal(sc.Teams, []string{"ashton"}) {
		t.Fatalf("stored scope %v %v", sc, err)
	}
	// The same scope again: nothing to scan.
	rd.stored = w.Scope
	if w, err = planReply(rd, nil, resp, time.Now()); err != nil || w.OutOfScope != nil || w.DropRejections != nil || w.Scope != nil {
		t.Fatalf("same scope again: %+v %v", w, err)
	}
	// No scope (an older server): nothing.
	rd.stored = nil
	if w, err = planReply(rd, nil, &api.SyncResponse{}, time.Now()); err != nil || w.OutOfScope != nil {
		t.Fatalf("no scope: %+v %v", w, err)
	}
}

func TestPlanErasureResidue(t *testing.T) {
	gone := Ref{Team: "wigan", Collection: "people", ID: "gone"}
	kept := Ref{Team: "wigan", Collection: "people", ID: "kept"}
	rd := &residueMap{mapReader: mapReader{}, groups: []outboxGroup{
		{Key: []byte("c1"), Sealed: true, Change: api.Change{Seq: 1, Ops: []crdt.Op{opOn(gone, 1, "email", "e@x")}}},      // acked below
		{Key: []byte("c2"), Sealed: true, Change: api.Change{Seq: 2, Ops: []crdt.Op{opOn(gone, 2, "email", "f@x")}}},      // emptied, kept
		{Key: []byte("o1"), Change: api.Change{Ops: []crdt.Op{opOn(gone, 3, "phone", "1"), opOn(kept, 4, "phone", "2")}}}, // rewritten
		{Key: []byte("o2"), Change: api.Change{Ops: []crdt.Op{opOn(gone, 5, "phone", "3")}}},                              // deleted
		{Key: []byte("o3"), Change: api.Change{Ops: []crdt.Op{opOn(kept, 6, "phone", "4")}}},                              // untouched
	}, rejs: []storedRejection{
		{Key: []byte("q1"), Rejection: Rejection{Op: opOn(gone, 7, "cfs", 42), Code: api.CodeInvalidValue}},
		{Key: []byte("q2"), Rejection: Rejection{Op: opOn(kept, 8, "cfs", 42), Code: api.CodeInvalidValue}},
	}}
	sent := []api.Change{rd.groups[0].Change}
	resp := &api.SyncResponse{
		Results: []api.ChangeResult{{Seq: 1, Status: api.ChangeApplied, Ops: []api.OpResult{{Index: 0, Code: api.CodeRecordErased}}}},
		Purged:  []api.RecordRef{gone},
	}
	w, err := planReply(rd, fromChanges(sent), resp, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Rejections) != 0 || len(w.Unstored) != 1 || w.Unstored[0].Op.Value != nil || w.Unstored[0].Code != api.CodeRecordErased {
		t.Fatalf("rejections %+v, unstored %+v", w.Rejections, w.Unstored)
	}
	if len(w.DropRejections) != 1 || string(w.DropRejections[0]) != "q1" {
		t.Fatalf("dropped rejections %q", w.DropRejections)
	}
	got := map[string][]crdt.Op{}
	for _, kw := range w.Outbox {
		if kw.Value == nil {
			got[string(kw.Key)] = nil
			continue
		}
		c, err := decodeChange(kw.Value)
		if err != nil {
			t.Fatal(err)
		}
		got[string(kw.Key)] = c.Ops
	}
	if len(got) != 3 || len(got["c2"]) != 0 || len(got["o1"]) != 1 || got["o1"][0].Record != "kept" {
		t.Fatalf("outbox writes %+v", got)
	}
	if _, ok := got["o2"]; !ok || got["o2"] != nil {
		t.Fatalf("o2 not deleted: %+v", got)
	}
	if w.DroppedOps != 3 {
		t.Fatalf("dropped ops %d, want 3 (c2, o1's first, o2)", w.DroppedOps)
	}
}

func TestPlanRestated(t *testing.T) {
	ref := Ref{Team: "wigan", Collection: "people", ID: "p1"}
	server := crdt.NewRecord(ref.Team, ref.Collection, ref.ID)
	a := opOn(ref, 10, "cfs", 5)
	a.ID.Replica = crdt.ReplicaID{2}
	b := opOn(ref, 11, "cfs", 6)
	b.ID.Replica = crdt.ReplicaID{3}
	for _, op := range []crdt.Op{a, b} {
		if err := server.Apply(&op); err != nil {
			t.Fatal(err)
		}
	}
	raw, _ := crdt.MarshalRecord(server)
	// Locally the device overwrote a with its refused write; it also has a
	// later unacknowledged edit of another field.
	refused := opOn(ref, 12, "cfs", 7)
	refused.Pred = []crdt.OpID{a.ID}
	local := server.Clone()
	if err := local.Apply(&refused); err != nil {
		t.Fatal(err)
	}
	pending := opOn(ref, 13, "phone", "0161")
	if err := local.Apply(&pending); err != nil {
		t.Fatal(err)
	}
	lb, _ := crdt.MarshalRecord(local)
	rd := &residueMap{mapReader: mapReader{ref: lb}, groups: []outboxGroup{
		{Key: []byte("c1"), Sealed: true, Change: api.Change{Seq: 1, Ops: []crdt.Op{refused}}},
		{Key: []byte("o1"), Change: api.Change{Ops: []crdt.Op{pending}}},
	}}
	resp := &api.SyncResponse{
		Results: []api.ChangeResult{{Seq: 1, Status: api.ChangeApplied, Ops: []api.OpResult{{Index: 0, Code: api.CodeConflictInReview, Quarantined: true}}}},
		Replace: []crdt.RecordBytes{raw},
	}
	w, err := planReply(rd, fromChanges([]api.Change{rd.groups[0].Change}), resp, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Records) != 1 {
		t.Fatalf("records %+v", w.Records)
	}
	got, err := crdt.UnmarshalRecord(w.Records[0].Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if vals := got.Field("cfs").Live(); len(vals) != 2 || vals[0] != a.ID || vals[1] != b.ID {
		t.Fatalf("cfs after restate: %v", got.Field("cfs").Entries)
	}
	if e, ok := got.Field("phone").Winner(); !ok || e.ID != pending.ID {
		t.Fatal("the pending edit was not re-applied")
	}
}

// BenchmarkScopeReply measures storing an empty sync reply on a replica
// holding 5,000 records: with the scope unchanged (the usual case: no
// scan) and with a scope that changes every time (a full scan of the
// record keys and rejections, nothing dropped).
func BenchmarkScopeReply(b *testing.B) {
	ctx := context.Background()
	r, err := Open(ctx, Options{Dir: b.TempDir(), EncryptionKey: testKey, NoValidation: true})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	var ops []crdt.Op
	for i := range 5000 {
		ref := Ref{Team: "wigan", Collection: "people", ID: fmt.Sprintf("p%05d", i)}
		ops = append(ops, opOn(ref, int64(1000+i), "given_name", "X"))
	}
	if err := r.ApplyRemote(ctx, ops); err != nil {
		b.Fatal(err)
	}
	for _, changing := range []bool{false, true} {
		b.Run(fmt.Sprintf("scope_changes=%v", changing), func(b *testing.B) {
			for i := range b.N {
				teams := []string{"wigan"}
				if changing && i%2 == 1 {
					teams = append(teams, "other")
				}
				if _, err := r.storeReply(nil, &api.SyncResponse{Cursor: []byte("k"), Scope: &api.Scope{Teams: teams}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	if recs, _ := r.List(ctx, "wigan", ""); len(recs) != 5000 {
		b.Fatalf("%d records left", len(recs))
	}
}
