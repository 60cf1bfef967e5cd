package sync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
	"github.com/doorstep-health/doorstep/store"
)

func pushNow(t *testing.T, e *Engine, d *device) {
	t.Helper()
	res, err := e.Push(context.Background(), d.caller, []api.Change{d.commit()})
	if err != nil || res[0].Status != api.ChangeApplied {
		t.Fatalf("push: %+v %v", res, err)
	}
	d.outbox = nil
}

// TestChangesPagedAttributed: changed-since entries carry author, device,
// device time and receipt time; pages follow by cursor without repeats or
// gaps (no cap), filters by collection and author apply, a record changed
// again moves to the end, and the cursor is scoped to its team.
func TestChangesPagedAttributed(t *testing.T) {
	bg := context.Background()
	wall := newFakeWall()
	e := openTest(t, Options{Wall: wall.Now})
	ann := newDevice("ann", wall.Now, "wigan")
	bob := newDevice("bob", wall.Now, "wigan")
	for i := range 30 {
		d := ann
		if i%3 == 0 {
			d = bob
		}
		coll := "people"
		if i%2 == 0 {
			coll = "contacts"
		}
		d.write("wigan", coll, fmt.Sprintf("r%02d", i), "x", i)
		pushNow(t, e, d)
		wall.Advance(time.Second)
	}
	coord := Caller{User: "coord", Teams: []string{"wigan"}}
	var all []ChangedEntry
	cur, pages := "", 0
	for {
		page, next, err := e.Changes(bg, coord, "wigan", ChangedFilter{Cursor: cur, Limit: 7})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		pages++
		if next == "" {
			break
		}
		cur = next
	}
	if len(all) != 30 || pages != 5 {
		t.Fatalf("%d entries over %d pages", len(all), pages)
	}
	for i, c := range all {
		want := fmt.Sprintf("r%02d", i)
		author := "ann"
		if i%3 == 0 {
			author = "bob"
		}
		if c.Ref.ID != want || c.Author != author || c.Received.IsZero() || c.DeviceTime.IsZero() || c.Device.IsZero() {
			t.Fatalf("entry %d: %+v", i, c)
		}
		if i > 0 && c.Received.Before(all[i-1].Received) {
			t.Fatalf("entries out of order at %d", i)
		}
	}
	people, _, err := e.Changes(bg, coord, "wigan", ChangedFilter{Collection: "people", Author: "bob", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range people {
		if c.Ref.Collection != "people" || c.Author != "bob" {
			t.Fatalf("filter: %+v", c)
		}
	}
	if len(people) != 5 { // i%3==0 and odd: 3, 9, 15, 21, 27
		t.Fatalf("bob's people: %d", len(people))
	}
	// Changed again: the record moves to the end, now by ann.
	ann.write("wigan", "contacts", "r00", "x", 100)
	pushNow(t, e, ann)
	page, _, _ := e.Changes(bg, coord, "wigan", ChangedFilter{Limit: 100})
	if last := page[len(page)-1]; last.Ref.ID != "r00" || last.Author != "ann" || len(page) != 30 {
		t.Fatalf("after a new change: last %+v of %d", last, len(page))
	}
	// Bad cursors and other teams are refused.
	if _, _, err := e.Changes(bg, coord, "wigan", ChangedFilter{Cursor: "!!"}); !errors.Is(err, ErrBadCursor) {
		t.Fatalf("bad cursor: %v", err)
	}
	if _, _, err := e.Changes(bg, coord, "ashton", ChangedFilter{}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("other team: %v", err)
	}
	if n, more, err := e.CountChangedSince(bg, coord, "wigan", time.Time{}, 10); n != 10 || !more || err != nil {
		t.Fatalf("count: %d %v %v", n, more, err)
	}
}

// TestSearchIndex: people are found by name prefix, NHS number and
// postcode through the term index; a rename moves them, a delete and an
// erasure remove them; Linked lists a person's records.
func TestSearchIndex(t *testing.T) {
	bg := context.Background()
	wall := newFakeWall()
	e := openTest(t, Options{Wall: wall.Now})
	ann := newDevice("ann", wall.Now, "wigan")
	ann.write("wigan", "people", "p1", "given_name", "Margaret")
	ann.write("wigan", "people", "p1", "family_name", "Hughes-Smith")
	ann.write("wigan", "people", "p1", "nhs_number", "9990001234")
	ann.write("wigan", "people", "p1", "postcode", "WN1 2AB")
	ann.write("wigan", "people", "p2", "given_name", "Mark")
	ann.write("wigan", "people", "p2", "family_name", "Hughes")
	ann.write("wigan", "contacts", "c1", "person_id", "p1")
	ann.write("wigan", "needs", "n1", "person_id", "p1")
	ann.write("wigan", "contacts", "c2", "person_id", "p2")
	pushNow(t, e, ann)
	other := newDevice("olu", wall.Now, "ashton")
	other.write("ashton", "people", "p9", "given_name", "Margaret")
	pushNow(t, e, other)

	coord := Caller{User: "coord", Teams: []string{"wigan"}}
	ids := func(q string) []string {
		t.Helper()
		recs, err := e.Search(bg, coord, "wigan", q, 0)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range recs {
			out = append(out, r.ID)
		}
		return out
	}
	for q, want := range map[string]string{
		"mar":            "[p1 p2]",
		"Mar hughes":     "[p1 p2]",
		"marg hug":       "[p1]",
		"smith":          "[p1]",
		"999 000 1234":   "[p1]",
		"wn12ab":         "[p1]",
		"WN1 2AB":        "[p1]",
		"999000123":      "[]",
		"zebedee":        "[]",
		"margaret jones": "[]",
	} {
		if got := fmt.Sprint(ids(q)); got != want && !(want == "[]" && got == "[]") {
			t.Errorf("search %q: %s, want %s", q, got, want)
		}
	}
	links, err := e.Linked(bg, coord, api.RecordRef{Team: "wigan", Collection: "people", ID: "p1"})
	if err != nil || fmt.Sprint(links) != "[{wigan contacts c1} {wigan needs n1}]" {
		t.Fatalf("linked: %v %v", links, err)
	}
	// Rename: the old name no longer finds her.
	ann.write("wigan", "people", "p1", "family_name", "Jones")
	pushNow(t, e, ann)
	if got := fmt.Sprint(ids("hughes")); got != "[p2]" {
		t.Errorf("after rename, hughes: %s", got)
	}
	if got := fmt.Sprint(ids("margaret jones")); got != "[p1]" {
		t.Errorf("after rename, margaret jones: %s", got)
	}
	// Delete: gone from search.
	ann.do(ann.rec("wigan", "people", "p2").Delete(ann.nextID()))
	pushNow(t, e, ann)
	if got := fmt.Sprint(ids("mark")); got != "[]" {
		t.Errorf("deleted person found: %s", got)
	}
	// Erasure: the index holds nothing of the person.
	admin := Caller{User: "admin", Teams: []string{"wigan"}}
	if _, err := e.Erase(bg, admin, api.RecordRef{Team: "wigan", Collection: "people", ID: "p1"}, false); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(ids("9990001234")); got != "[]" {
		t.Errorf("erased person found: %s", got)
	}
	if got := fmt.Sprint(ids("margaret")); got != "[]" {
		t.Errorf("erased person found by name: %s", got)
	}
	if _, err := e.Search(bg, coord, "ashton", "margaret", 0); !errors.Is(err, ErrForbidden) {
		t.Fatalf("other team's search: %v", err)
	}
}

// TestFieldConflictAndReason: the conflict detail attributes each value
// with its base, and a resolution's reason is kept in history.
func TestFieldConflictAndReason(t *testing.T) {
	bg := context.Background()
	wall := newFakeWall()
	e := openTest(t, Options{Wall: wall.Now})
	ann := newDevice("ann", wall.Now, "wigan")
	bob := newDevice("bob", wall.Now, "wigan")
	ann.write("wigan", "people", "p", "cfs", 5)
	pushNow(t, e, ann)
	bob.syncAll(t, e)
	ann.write("wigan", "people", "p", "cfs", 6)
	pushNow(t, e, ann)
	bob.write("wigan", "people", "p", "cfs", 4)
	bob.commit()
	wall.Advance(time.Hour) // bob was offline for an hour
	res, err := e.Push(bg, bob.caller, bob.outbox)
	if err != nil || res[0].Status != api.ChangeApplied {
		t.Fatalf("bob: %+v %v", res, err)
	}
	coord := Caller{User: "coord", Teams: []string{"wigan"}}
	ref := api.RecordRef{Team: "wigan", Collection: "people", ID: "p"}
	fc, err := e.FieldConflict(bg, coord, ref, "cfs")
	if err != nil || len(fc.Values) != 2 {
		t.Fatalf("conflict: %+v %v", fc, err)
	}
	for _, v := range fc.Values {
		if len(v.Base) != 1 || string(v.Base[0].Entry.Value) != string(crdt.MustValue(5)) || v.Base[0].Author != "ann" {
			t.Fatalf("base of %s's value: %+v", v.Author, v.Base)
		}
		if (v.Author == "bob") != v.Offline {
			t.Fatalf("%s offline=%v", v.Author, v.Offline)
		}
	}
	if _, err := e.ResolveWithReason(bg, coord, ref, "cfs", crdt.MustValue(6), "MDT letter"); err != nil {
		t.Fatal(err)
	}
	hist, _ := e.History(bg, coord, ref)
	if h := hist[len(hist)-1]; h.Reason != "MDT letter" || h.Author != "coord" {
		t.Fatalf("resolution in history: %+v", h)
	}
	if page, _, err := e.HistoryPage(bg, coord, ref, 0, 0); err != nil || page[len(page)-1].Reason != "MDT letter" {
		t.Fatalf("resolution in a history page: %+v %v", page, err)
	}
	if fc, _ := e.FieldConflict(bg, coord, ref, "cfs"); len(fc.Values) != 0 {
		t.Fatalf("still in conflict: %+v", fc.Values)
	}
	// A device's pull still decodes the entry with a reason (the fast path
	// that expects ops last).
	d := newDevice("dee", wall.Now, "wigan")
	d.syncAll(t, e)
	if w, _ := d.recs[ref].Field("cfs").Winner(); string(w.Value) != string(crdt.MustValue(6)) {
		t.Fatalf("device after pull: %v", d.recs[ref].Field("cfs"))
	}
	if _, err := e.ResolveWithReason(bg, coord, ref, "cfs", crdt.MustValue(6), string(make([]byte, MaxReasonLen+1))); !errors.Is(err, ErrInvalid) {
		t.Fatalf("long reason: %v", err)
	}
}

// TestSearchIndexBackfill: a store written before the term index existed
// (no s/ keys, no marker) gets its index built at the next Open.
func TestSearchIndexBackfill(t *testing.T) {
	bg := context.Background()
	dir := t.TempDir()
	wall := newFakeWall()
	e := openTestAt(t, dir, Options{Wall: wall.Now})
	ann := newDevice("ann", wall.Now, "wigan")
	ann.write("wigan", "people", "p1", "family_name", "Fairhurst")
	ann.write("wigan", "carers", "k1", "cared_for_person_id", "p1")
	pushNow(t, e, ann)
	// Make it an old store: drop the index and the marker.
	err := e.kv.Update(context.Background(), func(txn store.Tx) error {
		it := txn.Iterate(store.IterOptions{Prefix: []byte("s/"), KeysOnly: true})
		var keys [][]byte
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, bytes.Clone(it.Key()))
		}
		it.Close()
		for _, k := range append(keys, store.KeyTermIndex) {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	coord := Caller{User: "coord", Teams: []string{"wigan"}}
	if recs, _ := e.Search(bg, coord, "wigan", "fairhurst", 0); len(recs) != 0 {
		t.Fatalf("index not dropped: %d", len(recs))
	}
	e.Close()
	e = openTestAt(t, dir, Options{Wall: wall.Now})
	if recs, err := e.Search(bg, coord, "wigan", "fairhurst", 0); err != nil || len(recs) != 1 {
		t.Fatalf("after reopen: %d %v", len(recs), err)
	}
	if links, err := e.Linked(bg, coord, api.RecordRef{Team: "wigan", Collection: "people", ID: "p1"}); err != nil || len(links) != 1 || links[0].ID != "k1" {
		t.Fatalf("carer link: %v %v", links, err)
	}
}

// TestDismiss: a dismissed quarantine entry is gone, cannot be re-applied,
// and a later op naming it in pred is refused as naming an unknown op.
func TestDismiss(t *testing.T) {
	bg := context.Background()
	wall := newFakeWall()
	e := openTest(t, Options{Wall: wall.Now, Validator: schema.Default()})
	ann := newDevice("ann", wall.Now, "wigan")
	ann.write("wigan", "people", "p", "cfs", "very frail") // cfs is an int: quarantined
	res, err := e.Push(bg, ann.caller, []api.Change{ann.commit()})
	if err != nil || len(res[0].Ops) != 1 || !res[0].Ops[0].Quarantined {
		t.Fatalf("push: %+v %v", res, err)
	}
	qs, err := e.TeamQuarantine(bg, []string{"wigan"}, 0)
	if err != nil || len(qs) != 1 {
		t.Fatalf("quarantine: %+v %v", qs, err)
	}
	bad := qs[0].Op.ID
	if got, err := e.Dismiss(bg, qs[0].ID); err != nil || got.Op.ID != bad {
		t.Fatalf("dismiss: %+v %v", got, err)
	}
	if qs, _ := e.TeamQuarantine(bg, []string{"wigan"}, 0); len(qs) != 0 {
		t.Fatalf("still listed: %+v", qs)
	}
	if _, err := e.Dismiss(bg, qs[0].ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second dismiss: %v", err)
	}
	if err := e.Reapply(bg, qs[0].ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("reapply after dismiss: %v", err)
	}
	// An op that had seen the dismissed value.
	later := crdt.Op{ID: ann.nextID(), Team: "wigan", Collection: "people", Record: "p", Field: "cfs", Kind: crdt.KindWrite, Value: crdt.MustValue(5), Pred: []crdt.OpID{bad}}
	ann.seq++
	res, err = e.Push(bg, ann.caller, []api.Change{{Seq: ann.seq, Ops: []crdt.Op{later}}})
	if err != nil || len(res[0].Ops) != 1 || res[0].Ops[0].Code != api.CodeUnknownPred {
		t.Fatalf("op naming a dismissed op: %+v %v", res, err)
	}
}
