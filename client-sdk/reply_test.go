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
	w, err := planReply(rd, sent, resp, now)
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
	w2, err := planReply(rd, sent, resp, now)
	if err != nil || len(w2.Records) != 1 || !slices.Equal(w2.Records[0].Bytes, w.Records[0].Bytes) {
		t.Errorf("second plan differs: %+v, %v", w2, err)
	}
}

func TestPlanReplyRefusals(t *testing.T) {
	sent := []api.Change{{Seq: 7}, {Seq: 8}}
	w, err := planReply(mapReader{}, sent, &api.SyncResponse{Results: []api.ChangeResult{
		{Seq: 7, Status: api.ChangeRefused, Code: api.CodeSeqGap, Expected: 3},
	}}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(w.Refused, ErrRefused) || w.Gap != 0 {
		t.Errorf("gap below the outbox: refused %v gap %d, want ErrRefused", w.Refused, w.Gap)
	}
	w, err = planReply(mapReader{}, sent, &api.SyncResponse{Results: []api.ChangeResult{
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
	w, err = planReply(mapReader{}, sent, &api.SyncResponse{Results: []api.ChangeResult{
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
