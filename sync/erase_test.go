package sync

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

// pullAllOps pulls from cur in pages of limit items and returns every op
// ID pulled (in order), every purged record and the final cursor.
func pullAllOps(t *testing.T, e *Engine, c Caller, cur []byte, limit int) ([]crdt.OpID, []api.RecordRef, []byte) {
	t.Helper()
	var ids []crdt.OpID
	var purged []api.RecordRef
	for range 10000 {
		resp, err := e.Pull(bg, c, cur, limit)
		if err != nil {
			t.Fatalf("pull: %v", err)
		}
		if len(resp.Snapshot) > 0 {
			t.Fatalf("pull from a log cursor bootstrapped")
		}
		for _, ch := range resp.Changes {
			for _, op := range pulledOps(t, ch) {
				ids = append(ids, op.ID)
			}
		}
		purged = append(purged, resp.Purged...)
		cur = resp.Cursor
		if !resp.More {
			return ids, purged, cur
		}
	}
	t.Fatal("pull did not settle")
	return nil, nil, nil
}

// storeMentions lists the keys whose key or latest value contains s.
func storeMentions(t *testing.T, e *Engine, s string) []string {
	t.Helper()
	var out []string
	err := e.kv.View(context.Background(), func(txn store.Tx) error {
		it := txn.Iterate(store.IterOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := bytes.Clone(it.Key())
			v, err := it.Value()
			if err != nil {
				return err
			}
			if bytes.Contains(k, []byte(s)) || bytes.Contains(v, []byte(s)) {
				out = append(out, string(k[:2]))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func TestErase(t *testing.T) {
	wall := newFakeWall()
	dir := t.TempDir()
	e := openTestAt(t, dir, Options{Wall: wall.Now, Validator: &rejectField{field: "ons4_anxiety"}})
	const team = "wigan"
	// A log-mode cursor at position 0: this watcher will pull the whole log.
	watcher := Caller{User: "watch", Replica: crdt.NewReplicaID(), Teams: []string{team}}
	first, err := e.Pull(bg, watcher, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	watchCur := first.Cursor

	ann := newDevice("ann", wall.Now, team)
	bea := newDevice("bea", wall.Now, team)
	// Change 1: only the person to erase. Change 2: both people, a contact
	// for each. Change 3: a quarantined op for the erased person's
	// assessment.
	ann.write(team, "people", "p-erase", "name", "Ada Erasable")
	ann.write(team, "people", "p-erase", "nhs_number", "9990001112")
	ann.commit()
	ann.write(team, "people", "p-erase", "phone", "0161 000 1111")
	ann.write(team, "people", "p-keep", "name", "Bob Kept")
	ann.write(team, "contacts", "c-erase", "person_id", "p-erase")
	ann.write(team, "contacts", "c-erase", "notes", "visited Ada Erasable at home")
	ann.write(team, "contacts", "c-keep", "person_id", "p-keep")
	ann.commit()
	ann.write(team, "assessments", "a-erase", "person_id", "p-erase")
	ann.write(team, "assessments", "a-erase", "ons4_anxiety", 11) // quarantined
	ann.syncAll(t, e)
	push(t, e, ann, ann.commit())
	ann.outbox = nil
	bea.syncAll(t, e)
	// A conflict on the erased person: Bea writes the name without having
	// seen Ann's concurrent write.
	ann.write(team, "people", "p-erase", "name", "Ada E.")
	ann.commit()
	bea.do(crdt.Op{ID: bea.nextID(), Team: team, Collection: "people", Record: "p-erase", Field: "name", Kind: crdt.KindWrite,
		Value: crdt.MustValue("Ada Erasable-Two"), Pred: bea.rec(team, "people", "p-erase").Fields["name"].Live()})
	bea.commit()
	ann.syncAll(t, e)
	bea.syncAll(t, e)
	conf, err := e.Conflicts(bg, ann.caller, team)
	if err != nil || len(conf) != 1 || conf[0].ID != "p-erase" {
		t.Fatalf("setup: conflicts %v %v", conf, err)
	}
	if q, _ := e.Quarantined(bg, 10); len(q) != 1 {
		t.Fatalf("setup: quarantine %+v", q)
	}
	const keptOps = 2 // p-keep's name and c-keep's person_id

	admin := Caller{User: "admin-1"}
	rep, err := e.Erase(bg, admin, api.RecordRef{Team: team, Collection: "people", ID: "p-erase"}, true)
	if err != nil {
		t.Fatal(err)
	}
	wantRecs := []api.RecordRef{{Team: team, Collection: "people", ID: "p-erase"}, {Team: team, Collection: "assessments", ID: "a-erase"}, {Team: team, Collection: "contacts", ID: "c-erase"}}
	if !slices.Equal(rep.Records[:1], wantRecs[:1]) || len(rep.Records) != 3 || !slices.Contains(rep.Records, wantRecs[1]) || !slices.Contains(rep.Records, wantRecs[2]) {
		t.Fatalf("erased %v", rep.Records)
	}
	// p-erase: 3 writes + 2 names; c-erase: 2; a-erase: 1 merged.
	if rep.Ops != 8 || rep.Quarantined != 1 || rep.EntriesDeleted != 4 || rep.EntriesRewritten != 1 || rep.AlreadyErased {
		t.Fatalf("report %+v", rep)
	}

	// Gone from reads and indexes.
	for _, ref := range wantRecs {
		if _, err := e.Record(bg, ann.caller, ref); !errors.Is(err, ErrNotFound) {
			t.Fatalf("record %v: %v", ref, err)
		}
		if _, err := e.History(bg, ann.caller, ref); !errors.Is(err, ErrNotFound) {
			t.Fatalf("history %v: %v", ref, err)
		}
	}
	if conf, err := e.Conflicts(bg, ann.caller, team); err != nil || len(conf) != 0 {
		t.Fatalf("conflicts after erase %v %v", conf, err)
	}
	changed, err := e.ChangedSince(bg, ann.caller, team, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 2 || slices.ContainsFunc(changed, func(r api.RecordRef) bool { return slices.Contains(wantRecs, r) }) {
		t.Fatalf("changed since %v", changed)
	}
	if q, _ := e.Quarantined(bg, 10); len(q) != 0 {
		t.Fatalf("quarantine after erase %+v", q)
	}
	// Nothing in the store holds the person's data; only the purge markers
	// (p/) and the erasure entry (l/) name the record IDs.
	for _, s := range []string{"Ada Erasable", "9990001112", "0161 000 1111", "visited Ada"} {
		if m := storeMentions(t, e, s); len(m) != 0 {
			t.Fatalf("store still holds %q under %v", s, m)
		}
	}
	if m := storeMentions(t, e, "c-erase"); !slices.Equal(m, []string{"l/", "p/"}) {
		t.Fatalf("keys naming c-erase: %v", m)
	}
	if m := storeMentions(t, e, "Bob Kept"); len(m) == 0 {
		t.Fatal("kept person lost")
	}

	// The whole log, pulled one item per page: every kept op exactly once,
	// no erased op, and the erasure as purges. Repeat with a larger page.
	for _, limit := range []int{1, 2, 500} {
		ids, purged, _ := pullAllOps(t, e, watcher, watchCur, limit)
		seen := map[crdt.OpID]bool{}
		for _, id := range ids {
			if seen[id] {
				t.Fatalf("limit %d: op %s pulled twice", limit, id)
			}
			seen[id] = true
		}
		if len(ids) != keptOps {
			t.Fatalf("limit %d: pulled %d ops, want %d", limit, len(ids), keptOps)
		}
		if len(purged) != 3 || !slices.Equal(purged, rep.Records) {
			t.Fatalf("limit %d: purged %v", limit, purged)
		}
	}

	// A device synced before the erasure is told to purge.
	resp, err := e.Pull(bg, bea.caller, bea.cursor, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(resp.Purged, rep.Records) || len(resp.Changes) != 0 {
		t.Fatalf("bea's pull after erase: purged %v, %d changes", resp.Purged, len(resp.Changes))
	}
	// A new device never sees the erased records.
	cat := newDevice("cat", wall.Now, team)
	cat.syncAll(t, e)
	for ref := range cat.recs {
		if slices.Contains(wantRecs, ref) {
			t.Fatalf("new device bootstrapped erased %v", ref)
		}
	}
	if len(cat.recs) != 2 {
		t.Fatalf("new device has %d records", len(cat.recs))
	}

	// A late offline edit is refused and does not re-create the record; it
	// is not kept in the quarantine either.
	bea.write(team, "people", "p-erase", "name", "Ada Late")
	bea.write(team, "people", "p-keep", "name", "Bob Still")
	res := push(t, e, bea, bea.commit())
	if res[0].Status != api.ChangeApplied || len(res[0].Ops) != 1 || res[0].Ops[0].Code != api.CodeRecordErased || res[0].Ops[0].Index != 0 {
		t.Fatalf("late push %+v", res[0])
	}
	if _, err := e.Record(bg, bea.caller, wantRecs[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("late edit re-created the record: %v", err)
	}
	if m := storeMentions(t, e, "Ada Late"); len(m) != 0 {
		t.Fatalf("refused op for an erased record stored under %v", m)
	}
	// Resolve cannot re-create it either.
	if _, err := e.Resolve(bg, Caller{User: "coord", Teams: []string{team}}, wantRecs[0], "name", crdt.MustValue("x")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("resolve on erased: %v", err)
	}

	// Again: already erased; an unknown record: not found.
	if rep, err := e.Erase(bg, admin, wantRecs[0], true); err != nil || !rep.AlreadyErased {
		t.Fatalf("erase again: %+v %v", rep, err)
	}
	if _, err := e.Erase(bg, admin, api.RecordRef{Team: team, Collection: "people", ID: "nobody"}, false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("erase unknown: %v", err)
	}
	if _, err := e.Erase(bg, admin, api.RecordRef{Team: "ashton", Collection: "people", ID: "p-keep"}, false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("erase in the wrong team: %v", err)
	}

	// The purge marker is durable.
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := openTestAt(t, dir, Options{Wall: wall.Now})
	bea.write(team, "contacts", "c-erase", "notes", "after restart")
	res = push(t, e2, bea, bea.commit())
	if len(res[0].Ops) != 1 || res[0].Ops[0].Code != api.CodeRecordErased {
		t.Fatalf("push after reopen %+v", res[0])
	}
}

// TestEraseNoCascade erases only the named record and keeps records that
// reference it; it also erases a record pushed in the same commit group.
func TestEraseNoCascade(t *testing.T) {
	e := openTest(t, Options{})
	ann := newDevice("ann", time.Now, "wigan")
	ann.write("wigan", "people", "p1", "name", "Pat")
	ann.write("wigan", "contacts", "c1", "person_id", "p1")
	push(t, e, ann, ann.commit())
	rep, err := e.Erase(bg, Caller{User: "admin"}, api.RecordRef{Team: "wigan", Collection: "people", ID: "p1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Records) != 1 || rep.Ops != 1 || rep.EntriesRewritten != 1 || rep.EntriesDeleted != 0 {
		t.Fatalf("report %+v", rep)
	}
	if _, err := e.Record(bg, ann.caller, api.RecordRef{Team: "wigan", Collection: "contacts", ID: "c1"}); err != nil {
		t.Fatalf("contact: %v", err)
	}
	h, err := e.History(bg, ann.caller, api.RecordRef{Team: "wigan", Collection: "contacts", ID: "c1"})
	if err != nil || len(h) != 1 {
		t.Fatalf("contact history %v %v", h, err)
	}
}

// TestEraseOrderedWithPushes runs erasures and pushes concurrently through
// the committer: whatever the grouping, an erased record never comes back.
func TestEraseOrderedWithPushes(t *testing.T) {
	e := openTest(t, Options{})
	ann := newDevice("ann", time.Now, "wigan")
	for i := range 20 {
		ann.write("wigan", "people", "p"+string(rune('a'+i)), "name", "n")
	}
	push(t, e, ann, ann.commit())
	done := make(chan error, 20)
	for i := range 20 {
		go func() {
			_, err := e.Erase(bg, Caller{User: "admin"}, api.RecordRef{Team: "wigan", Collection: "people", ID: "p" + string(rune('a'+i))}, false)
			done <- err
		}()
	}
	var late []api.Change
	for i := range 20 {
		ann.write("wigan", "people", "p"+string(rune('a'+i)), "name", "again")
		late = append(late, ann.commit())
	}
	res := push(t, e, ann, late...)
	for range 20 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	// Every late write either landed before its record's erasure (and was
	// erased with it) or was refused after it.
	for i, r := range res {
		if len(r.Ops) == 1 && r.Ops[0].Code != api.CodeRecordErased {
			t.Fatalf("change %d: %+v", i, r)
		}
	}
	recs := serverRecords(t, e, "wigan")
	if len(recs) != 0 {
		t.Fatalf("%d records survived", len(recs))
	}
	var history, markers int
	err := e.kv.View(context.Background(), func(txn store.Tx) error {
		it := txn.Iterate(store.IterOptions{Prefix: []byte("i/"), KeysOnly: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			history++
		}
		for i := range 20 {
			if _, err := txn.Get(store.ErasedKey("people", "p"+string(rune('a'+i)))); err == nil {
				markers++
			}
		}
		return nil
	})
	if err != nil || history != 0 || markers != 20 {
		t.Fatalf("history keys %d, purge markers %d, err %v", history, markers, err)
	}
}

// TestEraseDuringBootstrap: a device bootstrapping page by page when an
// erasure commits ends without the erased records, whether its snapshot
// had already delivered them (then it is told to purge) or not yet.
func TestEraseDuringBootstrap(t *testing.T) {
	for _, erasedID := range []string{"p0", "p9"} { // delivered before the erasure, or after
		t.Run(erasedID, func(t *testing.T) {
			e := openTest(t, Options{})
			ann := newDevice("ann", time.Now, "wigan")
			for i := range 10 {
				ann.write("wigan", "people", "p"+string(rune('0'+i)), "name", "n")
			}
			ann.commit()
			ann.syncAll(t, e)
			cat := newDevice("cat", time.Now, "wigan")
			held := map[api.RecordRef]bool{}
			var cur []byte
			for page := 0; ; page++ {
				if page == 3 {
					if _, err := e.Erase(bg, Caller{User: "admin"}, api.RecordRef{Team: "wigan", Collection: "people", ID: erasedID}, false); err != nil {
						t.Fatal(err)
					}
				}
				resp, err := e.Pull(bg, cat.caller, cur, 2)
				if err != nil {
					t.Fatal(err)
				}
				for _, raw := range resp.Snapshot {
					s, err := raw.Record()
					if err != nil {
						t.Fatal(err)
					}
					held[api.RecordRef{Team: s.Team, Collection: s.Collection, ID: s.ID}] = true
				}
				for _, p := range resp.Purged {
					delete(held, p)
				}
				cur = resp.Cursor
				if !resp.More && page > 3 {
					break
				}
			}
			if len(held) != 9 || held[api.RecordRef{Team: "wigan", Collection: "people", ID: erasedID}] {
				t.Fatalf("device holds %d records: %v", len(held), held)
			}
		})
	}
}
