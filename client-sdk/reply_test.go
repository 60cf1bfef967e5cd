package client

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// mapReader is local state for planReply held in a map: planReply is pure,
// so it needs no store.
type mapReader map[Ref][]byte

func (m mapReader) record(ref Ref) ([]byte, error) { return m[ref], nil }

func TestPlanReplyPure(t *testing.T) {
	me := crdt.NewReplicaID()
	other := crdt.NewReplicaID()
	ref := Ref{Team: "t1", Collection: "visits", ID: "v1"}
	fresh := Ref{Team: "t1", Collection: "visits", ID: "v2"}
	purged := Ref{Team: "t1", Collection: "visits", ID: "gone"}

	// A stored record holding my own write; the same op pulled back must
	// not produce a write.
	mine := crdt.NewRecord(ref.Team, ref.Collection, ref.ID)
	own := mine.Write(crdt.OpID{Time: crdt.MakeTimestamp(1000, 0), Replica: me}, "status", crdt.MustValue("open"))
	if err := mine.Apply(&own); err != nil {
		t.Fatal(err)
	}
	stored, err := crdt.MarshalRecord(mine)
	if err != nil {
		t.Fatal(err)
	}
	rd := mapReader{ref: stored}

	theirs := crdt.NewRecord(fresh.Team, fresh.Collection, fresh.ID)
	op := theirs.Write(crdt.OpID{Time: crdt.MakeTimestamp(2000, 0), Replica: other}, "status", crdt.MustValue("done"))

	sent := []api.Change{
		{Seq: 4, Ops: []crdt.Op{own}},
		{Seq: 5, Ops: []crdt.Op{own, own}},
		{Seq: 6, Ops: []crdt.Op{own}},
	}
	resp := &api.SyncResponse{
		Results: []api.ChangeResult{
			{Seq: 4, Status: api.ChangeApplied},
			{Seq: 5, Status: api.ChangeDuplicate, Ops: []api.OpResult{{Index: 1, Code: api.CodeInvalidValue, Quarantined: true}}},
			{Seq: 6, Status: api.ChangeRefused, Code: api.CodeSeqGap, Expected: 5},
		},
		Changes: []api.PulledChange{{Author: "me", Ops: crdt.NewOpsBytes([]crdt.Op{own})}, {Author: "u2", Ops: crdt.NewOpsBytes([]crdt.Op{op})}},
		Purged:  []Ref{purged},
		Cursor:  []byte("cur-2"),
	}
	now := time.UnixMilli(5000)
	w, err := planReply(rd, fromChanges(sent), resp, now)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(w.Acked, []uint64{4, 5}) || w.AckedOps != 3 {
		t.Errorf("acked %v (%d ops), want [4 5] (3 ops)", w.Acked, w.AckedOps)
	}
	if len(w.Rejections) != 1 || w.Rejections[0].Seq != 5 || w.Rejections[0].Index != 1 || !w.Rejections[0].At.Equal(now) || w.Rejections[0].Op.ID != own.ID {
		t.Errorf("rejections %+v", w.Rejections)
	}
	if w.Gap != 5 || w.Refused != nil {
		t.Errorf("gap %d refused %v, want gap 5 and no refusal", w.Gap, w.Refused)
	}
	if len(w.Records) != 1 || w.Records[0].Ref != fresh {
		t.Fatalf("records %+v, want only %v (own op coming back changes nothing)", w.Records, fresh)
	}
	got, err := crdt.UnmarshalRecord(w.Records[0].Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := got.Field("status").Winner(); !ok || string(e.Value) != string(crdt.MustValue("done")) {
		t.Errorf("merged record %+v", got)
	}
	if !slices.Equal(w.Purged, []Ref{purged}) || !slices.Equal(w.Changed, []Ref{fresh, purged}) {
		t.Errorf("purged %v changed %v", w.Purged, w.Changed)
	}
	if string(w.Cursor) != "cur-2" || w.Newest != op.ID.Time {
		t.Errorf("cursor %q newest %v", w.Cursor, w.Newest)
	}
	// The reader was only read: the same call again gives the same plan.
	w2, err := planReply(rd, fromChanges(sent), resp, now)
	if err != nil || len(w2.Records) != 1 || !slices.Equal(w2.Records[0].Bytes, w.Records[0].Bytes) {
		t.Errorf("second plan differs: %+v, %v", w2, err)
	}
}

func TestPlanReplyRefusals(t *testing.T) {
	sent := []api.Change{{Seq: 7}, {Seq: 8}}
	w, err := planReply(mapReader{}, fromChanges(sent), &api.SyncResponse{Results: []api.ChangeResult{
		{Seq: 7, Status: api.ChangeRefused, Code: api.CodeSeqGap, Expected: 3},
	}}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(w.Refused, ErrRefused) || w.Gap != 0 {
		t.Errorf("gap below the outbox: refused %v gap %d, want ErrRefused", w.Refused, w.Gap)
	}
	w, err = planReply(mapReader{}, fromChanges(sent), &api.SyncResponse{Results: []api.ChangeResult{
		{Seq: 8, Status: api.ChangeRefused, Code: api.CodeForbidden},
		{Seq: 99, Status: api.ChangeApplied},
	}}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if problemCode(w.Refused) != api.CodeForbidden || len(w.Acked) != 0 || len(w.Notes) != 1 {
		t.Errorf("refused %v acked %v notes %v", w.Refused, w.Acked, w.Notes)
	}
	// A change refused as never acceptable is set aside, not retried
	// forever: its ops become rejections with the reason.
	sent = []api.Change{{Seq: 9, Ops: []crdt.Op{{Field: "a"}, {Field: "b"}}}}
	w, err = planReply(mapReader{}, fromChanges(sent), &api.SyncResponse{Results: []api.ChangeResult{
		{Seq: 9, Status: api.ChangeRefused, Code: api.CodeBadRequest},
	}}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if w.Refused != nil || len(w.SetAside) != 1 || w.SetAside[0].Seq != 9 || w.SetAsideOps != 2 ||
		len(w.Rejections) != 2 || w.Rejections[1].Op.Field != "b" || w.Rejections[1].Code != api.CodeBadRequest {
		t.Errorf("permanent refusal: refused %v, set aside %+v (%d ops), rejections %+v", w.Refused, w.SetAside, w.SetAsideOps, w.Rejections)
	}
	// Bad pulled bytes fail the whole plan: nothing is half-stored.
	if _, err := planReply(mapReader{}, nil, &api.SyncResponse{Changes: []api.PulledChange{{Ops: crdt.OpsBytes{0xc1}}}}, time.Time{}); err == nil {
		t.Error("undecodable pulled ops planned")
	}
}

// TestSnapshotNewRecordsStoredAsTheyCame: a snapshot state of a record the
// replica does not hold is stored as its bytes came (no decode-merge-
// encode), and reads the same as the merge path gives; a state with the
// server's skipped ops, one of a record held already, one touched again
// by a pulled op or a second state in the same reply, takes the merge
// path.
func TestSnapshotNewRecordsStoredAsTheyCame(t *testing.T) {
	other := crdt.NewReplicaID()
	at := func(ms int64) crdt.OpID { return crdt.OpID{Time: crdt.MakeTimestamp(ms, 0), Replica: other} }
	state := func(id string, ms int64, value string) (*crdt.Record, crdt.RecordBytes) {
		rec := crdt.NewRecord("t1", "visits", id)
		for i, f := range []string{"status", "notes", "place"} {
			op := rec.Write(at(ms+int64(i)), f, crdt.MustValue(value))
			if err := rec.Apply(&op); err != nil {
				t.Fatal(err)
			}
		}
		b, err := crdt.MarshalRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		return rec, b
	}
	_, newB := state("new", 1000, "a")
	_, heldB := state("held", 1000, "b")
	heldRec, _ := state("held", 500, "old")
	stored, err := crdt.MarshalRecord(heldRec)
	if err != nil {
		t.Fatal(err)
	}
	touchedRec, touchedB := state("touched", 1000, "c")
	op := touchedRec.Write(at(3000), "status", crdt.MustValue("later"))
	skippedRec, _ := state("skipped", 1000, "f")
	skippedRec.Skip(at(4000)) // an op the server quarantined
	skippedB, err := crdt.MarshalRecord(skippedRec)
	if err != nil {
		t.Fatal(err)
	}
	_, twiceB := state("twice", 1000, "d")
	_, twiceB2 := state("twice", 2000, "e")
	ref := func(id string) Ref { return Ref{Team: "t1", Collection: "visits", ID: id} }
	rd := mapReader{ref("held"): stored}
	resp := &api.SyncResponse{
		Snapshot: []crdt.RecordBytes{newB, heldB, touchedB, twiceB, twiceB2, skippedB},
		Changes:  []api.PulledChange{{Author: "u2", Ops: crdt.NewOpsBytes([]crdt.Op{op})}},
		Cursor:   []byte("k"),
	}
	w, err := planReply(rd, nil, resp, time.UnixMilli(5000))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]byte{}
	for _, rw := range w.Records {
		got[rw.Ref.ID] = rw.Bytes
	}
	if len(got) != 5 {
		t.Fatalf("%d records written, want 5", len(got))
	}
	if string(got["new"]) != string(newB) {
		t.Errorf("a new record's state was not stored as it came")
	}
	if string(got["skipped"]) == string(skippedB) {
		t.Errorf("a state with the server's skipped ops was stored as it came")
	}
	// Every record reads as the merge path makes it.
	for id, raws := range map[string][]crdt.RecordBytes{"new": {newB}, "held": {heldB}, "touched": {touchedB}, "twice": {twiceB, twiceB2}, "skipped": {skippedB}} {
		want := crdt.NewRecord("t1", "visits", id)
		if id == "held" {
			want = heldRec.Clone()
		}
		for _, raw := range raws {
			s, err := raw.Record()
			if err != nil {
				t.Fatal(err)
			}
			s.DropSkipped()
			if err := want.Merge(s); err != nil {
				t.Fatal(err)
			}
		}
		if id == "touched" {
			if err := want.Apply(&op); err != nil {
				t.Fatal(err)
			}
		}
		wb, err := crdt.MarshalRecord(want)
		if err != nil {
			t.Fatal(err)
		}
		back, err := crdt.UnmarshalRecord(got[id])
		if err != nil {
			t.Fatal(err)
		}
		bb, _ := crdt.MarshalRecord(back)
		if string(bb) != string(wb) {
			t.Errorf("%s: stored state differs from the merge path's", id)
		}
	}
}
