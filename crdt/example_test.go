package crdt_test

import (
	"fmt"
	"time"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/vmihailenco/msgpack/v5"
)

func value(e crdt.Entry) string {
	var s string
	_ = msgpack.Unmarshal(e.Value, &s)
	return s
}

// Two offline tablets, as in the package documentation: Ann and Bea both
// change Mrs Jones's mobility from "stick", and a coordinator settles it.
func Example_twoOfflineTablets() {
	wall := func() time.Time { return time.Date(2026, 11, 21, 9, 30, 0, 0, time.UTC) }
	annID, _ := crdt.ParseReplicaID("a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1")
	beaID, _ := crdt.ParseReplicaID("b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2")
	annClock := crdt.NewClock(wall, 5*time.Minute)
	beaClock := crdt.NewClock(wall, 5*time.Minute)

	// Op A: the record says "stick"; both tablets have it.
	ann := crdt.NewRecord("wigan", "people", "mrs-jones")
	a := ann.Write(crdt.OpID{Time: annClock.Now(), Replica: annID}, "mobility", crdt.MustValue("stick"))
	_ = ann.Apply(&a)
	bea := ann.Clone()
	_ = beaClock.Update(a.ID.Time) // receiving A moves Bea's clock past it

	// Offline, B and C both overwrite A.
	b := ann.Write(crdt.OpID{Time: annClock.Now(), Replica: annID}, "mobility", crdt.MustValue("frame"))
	_ = ann.Apply(&b)
	c := bea.Write(crdt.OpID{Time: beaClock.Now(), Replica: beaID}, "mobility", crdt.MustValue("wheelchair"))
	_ = bea.Apply(&c)

	// Both sync: every replica holds {B, C} with A removed.
	merged := ann.Clone()
	_ = merged.Merge(bea)
	f := merged.Field("mobility")
	w, _ := f.Winner()
	fmt.Println("conflict:", f.Conflict(), "entries:", len(f.Entries), "removed A:", merged.Covers(a.ID) && !f.HasEntry(a.ID))
	fmt.Println("winner:", value(w), "(the higher ID)")

	// The coordinator writes with Pred [B, C]; every replica then holds D.
	d := merged.Write(crdt.OpID{Time: beaClock.Now(), Replica: beaID}, "mobility", crdt.MustValue("frame"))
	fmt.Println("pred names B and C:", len(d.Pred) == 2 && d.Pred[0] == b.ID && d.Pred[1] == c.ID)
	for _, r := range []*crdt.Record{ann, bea, merged} {
		_ = r.Apply(&d)
	}
	_ = ann.Merge(bea)
	w, _ = ann.Field("mobility").Winner()
	fmt.Println("after resolve:", ann.Field("mobility").Conflict(), value(w))
	// Output:
	// conflict: true entries: 2 removed A: true
	// winner: wheelchair (the higher ID)
	// pred names B and C: true
	// after resolve: false frame
}
