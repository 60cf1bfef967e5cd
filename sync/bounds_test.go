package sync

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

// TestRecordSizeBound: appends past the field bound, then writes past the
// record bound, are refused per op with record_too_large; the stored
// record never exceeds the bound and the rest of each change applies.
func TestRecordSizeBound(t *testing.T) {
	e := openTest(t, Options{Bounds: Bounds{MaxRecordBytes: 64 << 10, MaxFieldBytes: 32 << 10}})
	ann := newDevice("ann", time.Now, "wigan")
	note := strings.Repeat("n", 1000)
	var refused, applied int
	for i := 0; i < 50; i++ {
		ann.appendLog("wigan", "people", "p1", "case_notes", note)
		ann.write("wigan", "people", "p1", "given_name", "Edna") // small, still fits
		res := push(t, e, ann, ann.commit())
		for _, o := range res[0].Ops {
			if o.Code != api.CodeRecordTooLarge || o.Quarantined {
				t.Fatalf("op result %+v", o)
			}
			refused++
		}
		applied += 2 - len(res[0].Ops)
	}
	if refused == 0 || applied < 50 {
		t.Fatalf("%d refused, %d applied", refused, applied)
	}
	size := func() int {
		rec, err := e.Record(bg, ann.caller, api.RecordRef{Team: "wigan", Collection: "people", ID: "p1"})
		if err != nil {
			t.Fatal(err)
		}
		b, err := crdt.MarshalRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		return len(b)
	}
	if n := size(); n > 32<<10+1<<10 {
		t.Fatalf("record is %d bytes with a 32 KiB field bound", n)
	}
	// Other fields grow the record up to the record bound, not past it.
	for i := 0; i < 80; i++ {
		ann.appendLog("wigan", "people", "p1", "contacts", note)
		push(t, e, ann, ann.commit())
	}
	if n := size(); n > 64<<10 {
		t.Fatalf("record is %d bytes with a 64 KiB bound", n)
	}
	// Refused ops are summarized without their values.
	q, err := e.Quarantined(bg, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, qo := range q {
		if qo.Code != api.CodeRecordTooLarge || qo.Op.Value != nil || qo.Reapplicable {
			t.Fatalf("quarantine entry %+v", qo)
		}
	}
}

func TestInvalidRecordIDRefused(t *testing.T) {
	e := openTest(t, Options{})
	ann := newDevice("ann", time.Now, "wigan")
	ann.write("wigan", "people", "\xff\xfe", "given_name", "x")
	ann.write("wigan", "people", "a/b", "given_name", "x")
	ann.write("wigan", "people", "0190f6c2-1a2b-7c3d-8e4f-0123456789ab", "given_name", "x")
	res := push(t, e, ann, ann.commit())
	got := opCodes(res[0])
	if len(got) != 2 || got[0] != api.CodeInvalidRecordID || got[1] != api.CodeInvalidRecordID {
		t.Fatalf("op codes %v", got)
	}
}

type rejectAll struct{}

func (rejectAll) ValidateOp(op *crdt.Op) error { return errors.New("rejected for the test") }

// TestQuarantineQuotaAndExpiry: reapplicable ops fill the device's quota
// and then get quarantine_full, unstored; a flood of refused ops is one
// summary; entries expire after the TTL and give their quota back.
func TestQuarantineQuotaAndExpiry(t *testing.T) {
	wall := newFakeWall()
	e := openTest(t, Options{Wall: wall.Now, Validator: rejectAll{}, Bounds: Bounds{QuarantineDeviceEntries: 3, QuarantineTTL: time.Hour}})
	ann := newDevice("ann", wall.Now, "wigan")
	for i := 0; i < 5; i++ {
		ann.write("wigan", "people", "p"+string(rune('a'+i)), "given_name", i)
	}
	res := push(t, e, ann, ann.commit())
	var quarantined, full int
	for _, o := range res[0].Ops {
		switch {
		case o.Code == api.CodeInvalidValue && o.Quarantined:
			quarantined++
		case o.Code == api.CodeQuarantineFull && !o.Quarantined:
			full++
		default:
			t.Fatalf("op result %+v", o)
		}
	}
	if quarantined != 3 || full != 2 {
		t.Fatalf("%d quarantined, %d refused as full", quarantined, full)
	}

	// Another device's flood of forbidden ops: one summary, no values.
	bea := newDevice("bea", wall.Now, "ashton")
	for i := 0; i < 1000; i++ {
		bea.write("wigan", "people", "p1", "given_name", strings.Repeat("x", 100))
	}
	res = push(t, e, bea, bea.commit())
	if len(res[0].Ops) != 1000 {
		t.Fatalf("%d op results", len(res[0].Ops))
	}
	q, err := e.Quarantined(bg, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != 4 {
		t.Fatalf("%d entries", len(q))
	}
	if s := q[3]; s.Code != api.CodeForbiddenTeam || s.Count != 1000 || s.Bytes < 100_000 || s.Op.Value != nil || !s.Expires.Equal(s.Received.Add(time.Hour)) {
		t.Fatalf("summary %+v", s)
	}

	wall.Advance(2 * time.Hour)
	n, err := e.ExpireQuarantine(bg)
	if err != nil || n != 4 {
		t.Fatalf("expired %d, %v", n, err)
	}
	if q, _ := e.Quarantined(bg, 0); len(q) != 0 {
		t.Fatalf("%d entries after expiry", len(q))
	}
	// The quota was given back.
	for i := 0; i < 3; i++ {
		ann.write("wigan", "people", "q"+string(rune('a'+i)), "given_name", i)
	}
	res = push(t, e, ann, ann.commit())
	for _, o := range res[0].Ops {
		if !o.Quarantined {
			t.Fatalf("after expiry: %+v", o)
		}
	}
}

// TestReportedRuns: the op results kept for a duplicate push are stored
// as runs (a flood of refusals costs a few bytes) and reported again op
// by op, exactly as first reported.
func TestReportedRuns(t *testing.T) {
	e := openTest(t, Options{})
	ann := newDevice("ann", time.Now, "wigan")
	for i := 0; i < 1000; i++ {
		if i == 500 {
			ann.write("wigan", "people", "p1", "given_name", "ok")
		}
		ann.write("ashton", "people", "x"+string(rune('a'+i%26)), "given_name", i)
	}
	ch := ann.commit()
	first := push(t, e, ann, ch)
	again := push(t, e, ann, ch)
	if again[0].Status != api.ChangeDuplicate || len(again[0].Ops) != 1000 || len(first[0].Ops) != 1000 {
		t.Fatalf("first %d results, again %+v", len(first[0].Ops), again[0].Status)
	}
	for i, o := range again[0].Ops {
		if f := first[0].Ops[i]; o.Index != f.Index || o.Code != f.Code || o.Quarantined != f.Quarantined {
			t.Fatalf("result %d: %+v, first %+v", i, o, f)
		}
	}
	var stored []reportedResult
	if err := e.kv.View(context.Background(), func(txn store.Tx) error {
		item, err := txn.Get(store.OpResultsKey(ann.caller.Replica))
		if err != nil {
			return err
		}
		return store.Decode(item, &stored)
	}); err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || len(stored[0].Ops) != 2 {
		t.Fatalf("stored %+v, want two runs", stored)
	}
}
