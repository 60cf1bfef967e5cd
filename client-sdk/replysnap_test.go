package client

import (
	"fmt"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// ownRecords returns n records of 30 fields written by rep and their
// states, as the device stores them and a bootstrap sends them back.
func ownRecords(tb testing.TB, n int) (mapReader, []crdt.RecordBytes) {
	tb.Helper()
	rep := crdt.NewReplicaID()
	rd := mapReader{}
	var snap []crdt.RecordBytes
	tm := crdt.Timestamp(1 << 40)
	for i := range n {
		ref := Ref{Team: "wigan", Collection: "bench_rows", ID: fmt.Sprintf("%032x", i)}
		var ops []crdt.Op
		for f := range 30 {
			tm++
			ops = append(ops, crdt.Op{ID: crdt.OpID{Time: tm, Replica: rep}, Team: ref.Team, Collection: ref.Collection, Record: ref.ID,
				Field: fmt.Sprintf("f%02d", f), Kind: crdt.KindWrite, Value: crdt.MustValue(fmt.Sprintf("%06dvvvvvvvvvvvvvv", i))})
		}
		rec := crdt.NewRecord(ref.Team, ref.Collection, ref.ID)
		for k := range ops {
			if err := rec.Apply(&ops[k]); err != nil {
				tb.Fatal(err)
			}
		}
		b, err := crdt.MarshalRecord(rec)
		if err != nil {
			tb.Fatal(err)
		}
		rd[ref] = b
		snap = append(snap, crdt.RecordBytes(b))
	}
	return rd, snap
}

// TestSnapshotOfOwnRecords: a bootstrap page holding states the replica
// stores byte for byte changes nothing, and one that differs (another
// replica's write on top) is merged and stored as before.
func TestSnapshotOfOwnRecords(t *testing.T) {
	rd, snap := ownRecords(t, 20)
	now := time.Now()
	w, err := planReply(rd, nil, &api.SyncResponse{Snapshot: snap}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Records) != 0 || len(w.Changed) != 0 {
		t.Fatalf("own states sent back: %d records to store, %d changed; want nothing", len(w.Records), len(w.Changed))
	}
	// One of them changed on the server meanwhile.
	rec, err := crdt.UnmarshalRecord(snap[3])
	if err != nil {
		t.Fatal(err)
	}
	op := rec.Write(crdt.OpID{Time: rec.MaxTime() + 1, Replica: crdt.NewReplicaID()}, "f07", crdt.MustValue("theirs"))
	if err := rec.Apply(&op); err != nil {
		t.Fatal(err)
	}
	b, err := crdt.MarshalRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	snap[3] = b
	w, err = planReply(rd, nil, &api.SyncResponse{Snapshot: snap}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Records) != 1 || string(w.Records[0].Bytes) != string(b) || w.Newest != op.ID.Time {
		t.Fatalf("changed state: %d records to store, newest %v", len(w.Records), w.Newest)
	}
}

// BenchmarkSnapshotOfOwnRecords: planReply of a bootstrap page of 500 of
// the device's own records, as a device that pushed before its first pull
// gets them back.
func BenchmarkSnapshotOfOwnRecords(b *testing.B) {
	rd, snap := ownRecords(b, 500)
	resp := &api.SyncResponse{Snapshot: snap}
	now := time.Now()
	for b.Loop() {
		if _, err := planReply(rd, nil, resp, now); err != nil {
			b.Fatal(err)
		}
	}
}
