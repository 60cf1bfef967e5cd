package sync

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

// PersonCollection is the collection whose records a cascading erasure
// follows references to.
const PersonCollection = "people"

// PersonRefFields are the register fields of the default schema that hold
// the ID of a people record: a cascading erasure of a person also erases
// every record of the team where one of them names the person (the
// person's referrals, contacts, assessments, needs, care plans, goals,
// onward referrals, drop-in attendances, consent events, and carer records
// about them or naming them as the carer).
var PersonRefFields = []string{"person_id", "cared_for_person_id", "carer_person_id"}

// ErasureReport says what an erasure removed.
type ErasureReport struct {
	// Records are the erased records, the named one first, then those a
	// cascade found.
	Records []api.RecordRef
	// Ops is how many ops were removed from log entries.
	Ops int
	// EntriesRewritten and EntriesDeleted count log entries rewritten
	// without the erased ops and log entries deleted because nothing was
	// left in them.
	EntriesRewritten int
	EntriesDeleted   int
	// Quarantined is how many quarantined ops for the records were deleted.
	Quarantined int
	// Position is the log position of the erasure entry devices pull.
	Position uint64
	// AlreadyErased reports that the named record had been erased before;
	// nothing was done.
	AlreadyErased bool
	// Scrubbed reports that every version of the erased values was
	// removed from the data files before Erase returned (see scrub.go).
	// ScrubPending: a backup was running; the scrub runs when it ends.
	// ScrubError: the scrub failed (the erasure itself is done and
	// durable); the error is logged too.
	Scrubbed     bool
	ScrubPending bool
	ScrubError   string
}

// Erase erases a record and (with cascade, for a people record) every
// record of the same team that references it through PersonRefFields. It
// runs through the committer, so it is ordered with pushes and durable
// before it returns: the records, their ops in the log, their history,
// changed-since and conflict index entries, team index and quarantined
// ops are removed; a purge marker makes later ops for them fail with
// api.CodeRecordErased; an erasure entry in the team log tells devices to
// purge their copies on their next pull.
//
// Erase is an admin operation: it does not check c.Teams (the server
// allows it to admins only); c.User is recorded as the erasure's author.
// Erasing a record that was already erased reports AlreadyErased; a record
// that does not exist in ref.Team is ErrNotFound. All of it happens in one
// transaction; an erasure too large for one (very long histories)
// fails with ErrTooLarge and changes nothing.
func (e *Engine) Erase(ctx context.Context, c Caller, ref api.RecordRef, cascade bool) (ErasureReport, error) {
	if err := e.enter(); err != nil {
		return ErasureReport{}, err
	}
	defer e.inflight.Done()
	if ref.Team == "" || ref.Collection == "" || ref.ID == "" {
		return ErasureReport{}, fmt.Errorf("erase: %w: team, collection and id are required", ErrInvalid)
	}
	r := &request{kind: reqErase, caller: c, ref: ref, cascade: cascade}
	if err := e.submit(ctx, r); err != nil {
		return ErasureReport{}, fmt.Errorf("erase %s/%s/%s: %w", ref.Team, ref.Collection, ref.ID, err)
	}
	return r.report, nil
}

// erasedMarker returns the team named by a record's purge marker, or "":
// as read for its change (readErasedRange), or read now.
func (t *txnState) erasedMarker(coll, id string) (string, error) {
	if len(t.erased) > 0 {
		if team, ok := t.erased[string(store.ErasedKey(coll, id))]; ok {
			return team, nil
		}
	}
	return store.ErasedTeam(t.txn, coll, id)
}

// erase runs in the committer.
func (t *txnState) erase(r *request) error {
	r.report = ErasureReport{}
	t.scrub = nil
	defer func() { r.scrubKeys = t.scrub }()
	ref := r.ref
	if team, err := t.erasedMarker(ref.Collection, ref.ID); err != nil {
		return err
	} else if team == ref.Team {
		r.report.AlreadyErased = true
		return nil
	}
	owner, err := t.owner(ref.Collection, ref.ID)
	if err != nil {
		return err
	}
	if owner != ref.Team {
		r.err = fmt.Errorf("%w: record %s/%s/%s", ErrNotFound, ref.Team, ref.Collection, ref.ID)
		return nil
	}
	refs := []api.RecordRef{ref}
	if r.cascade && ref.Collection == PersonCollection {
		more, err := t.referencing(ref.Team, ref.ID)
		if err != nil {
			return err
		}
		refs = append(refs, more...)
	}
	entry := store.LogEntry{Author: r.caller.User, Replica: t.e.server, ReceivedMS: t.now.UnixMilli()}
	entries := map[uint64]bool{} // log positions rewritten (false) or deleted (true)
	for _, rr := range refs {
		if err := t.eraseRecord(rr, &r.report, entries); err != nil {
			return fmt.Errorf("erase %s/%s: %w", rr.Collection, rr.ID, err)
		}
		entry.Erased = append(entry.Erased, store.ErasedRecord{Collection: rr.Collection, ID: rr.ID})
	}
	for _, deleted := range entries {
		if deleted {
			r.report.EntriesDeleted++
		} else {
			r.report.EntriesRewritten++
		}
	}
	n, err := t.eraseQuarantined(refs)
	if err != nil {
		return err
	}
	r.report.Quarantined = n
	r.report.Records = refs
	pos := t.nextPos()
	if err := store.PutLogEntry(t.txn, ref.Team, pos, &entry); err != nil {
		return err
	}
	r.report.Position = pos
	return nil
}

// referencing returns the records of team, other than people/personID
// itself, with a live value of a PersonRefFields register equal to
// personID. It reads every record of the team: a full scan is acceptable
// for a rare admin operation, and it keeps the push path free of a
// reverse-reference index. Records created earlier in the same commit
// group (not stored yet) are checked too.
func (t *txnState) referencing(team, personID string) ([]api.RecordRef, error) {
	var out []api.RecordRef
	seen := map[api.RecordRef]bool{}
	check := func(rec *crdt.Record) {
		ref := api.RecordRef{Team: rec.Team, Collection: rec.Collection, ID: rec.ID}
		if seen[ref] || (ref.Collection == PersonCollection && ref.ID == personID) {
			return
		}
		if refersTo(rec, personID) {
			seen[ref] = true
			out = append(out, ref)
		}
	}
	prefix := store.RecordPrefix(team)
	it := t.txn.Iterate(store.IterOptions{Prefix: prefix, Batch: 100})
	defer it.Close()
	for it.Seek(prefix); it.Valid(); it.Next() {
		key := it.Key()
		if rs, ok := t.records[string(key)]; ok {
			rec, err := rs.state() // the cached state may be newer than the stored one
			if err != nil {
				return nil, err
			}
			check(rec)
			continue
		}
		var rec *crdt.Record
		err := itValue(it, func(v []byte) (err error) {
			rec, err = store.DecodeRecord(v)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("scan record %q: %w", key, err)
		}
		check(rec)
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	for _, rs := range t.records {
		if !rs.dirty || rs.exists {
			continue
		}
		rec, err := rs.state()
		if err != nil {
			return nil, err
		}
		if rec.Team == team {
			check(rec)
		}
	}
	return out, nil
}

// refersTo reports whether a live value of one of rec's PersonRefFields
// registers is the string personID.
func refersTo(rec *crdt.Record, personID string) bool {
	for _, name := range PersonRefFields {
		f := rec.Fields[name]
		if f == nil || f.Type != crdt.Register {
			continue
		}
		for _, e := range f.Entries {
			var s string
			if msgpack.Unmarshal(e.Value, &s) == nil && s == personID {
				return true
			}
		}
	}
	return false
}

// eraseRecord removes one record's ops from the log entries its history
// names, its state and every index entry (store.DeleteRecord), and writes
// its purge marker.
func (t *txnState) eraseRecord(ref api.RecordRef, rep *ErasureReport, entries map[uint64]bool) error {
	// The history index names every log entry holding the record's ops.
	positions, err := store.HistoryPositions(t.txn, ref.Team, ref.Collection, ref.ID)
	if err != nil {
		return err
	}
	for _, pos := range positions {
		t.scrub = append(t.scrub, store.LogKey(ref.Team, pos))
		n, change, err := store.EraseFromLogEntry(t.txn, ref.Team, ref.Collection, ref.ID, pos)
		if err != nil {
			return fmt.Errorf("log entry %d: %w", pos, err)
		}
		rep.Ops += n
		switch change {
		case store.EntryRewritten:
			entries[pos] = false
		case store.EntryDeleted:
			entries[pos] = true
		}
	}

	t.scrub = append(t.scrub, store.RecordKey(ref.Team, ref.Collection, ref.ID))
	var old *store.RecordIndex
	sr, err := store.GetRecord(t.txn, ref.Team, ref.Collection, ref.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Created earlier in this commit group and not flushed yet.
	case err != nil:
		return fmt.Errorf("read record: %w", err)
	default:
		stored, err := crdt.UnmarshalRecord(sr.State)
		if err != nil {
			return fmt.Errorf("read record: %w", err)
		}
		old = &store.RecordIndex{UpdatedMS: sr.UpdatedMS, Terms: recordTerms(stored)}
	}
	if err := store.DeleteRecord(t.txn, ref.Team, ref.Collection, ref.ID, old); err != nil {
		return err
	}
	// Drop any state cached by earlier requests of this group so that
	// flush does not write the record back.
	delete(t.records, string(store.RecordKey(ref.Team, ref.Collection, ref.ID)))
	t.owners[string(store.TeamIndexKey(ref.Collection, ref.ID))] = ""
	t.erased = nil // read again from the transaction, which now holds this marker
	return store.MarkErased(t.txn, ref.Collection, ref.ID, ref.Team)
}

// eraseQuarantined deletes quarantined ops for the erased records (matched
// by collection and ID, whatever team the op named, since a refused op may
// name another team). The quarantine has no per-record index, so this
// scans it: acceptable for a rare admin operation, and the quarantine is
// small next to the log.
func (t *txnState) eraseQuarantined(refs []api.RecordRef) (int, error) {
	type cr struct{ coll, id string }
	want := map[cr]bool{}
	for _, r := range refs {
		want[cr{r.Collection, r.ID}] = true
	}
	var keys [][]byte
	var entries []store.QuarantineEntry
	prefix := store.QuarantinePrefix()
	it := t.txn.Iterate(store.IterOptions{Prefix: prefix, Batch: 100})
	for it.Seek(prefix); it.Valid(); it.Next() {
		var q store.QuarantineEntry
		if err := itValue(it, func(v []byte) error { return store.Decode(v, &q) }); err != nil {
			it.Close()
			return 0, fmt.Errorf("quarantine entry %q: %w", it.Key(), err)
		}
		if want[cr{q.Op.Collection, q.Op.Record}] {
			keys = append(keys, bytes.Clone(it.Key()))
			entries = append(entries, q)
		}
	}
	if err := it.Err(); err != nil {
		it.Close()
		return 0, err
	}
	it.Close()
	t.scrub = append(t.scrub, keys...)
	for i, k := range keys {
		// Only a reapplicable op has a k/ index; a refused summary may
		// carry the ID of another, held op (a device reusing IDs), whose
		// index must stay.
		qid, err := store.QuarantineID(k)
		if err != nil {
			return 0, err
		}
		if err := store.DeleteQuarantineEntry(t.txn, qid, &entries[i]); err != nil {
			return 0, err
		}
		if err := t.unchargeQuarantine(&entries[i]); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// appendPurged adds a team log's erasure entry to a pull response.
func appendPurged(out []api.RecordRef, team string, erased []store.ErasedRecord) []api.RecordRef {
	for _, x := range erased {
		out = append(out, api.RecordRef{Team: team, Collection: x.Collection, ID: x.ID})
	}
	return out
}
