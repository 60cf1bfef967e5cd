package sync

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
	"github.com/doorstep-health/doorstep/sync/review"
)

// Review queries for the coordinator console and the JSON review routes:
// an attributed changed-since list paged by cursor, one field's conflict
// with each value's author and base, a team's quarantine, and a whole
// collection (for outcomes).

// OfflineAfter is how long after its device time an op must reach the
// server to count as written offline.
const OfflineAfter = 2 * time.Minute

// ChangedFilter selects a page of ChangedSince entries.
type ChangedFilter = review.ChangedFilter

// ChangedEntry is one record of a changed-since page at its last change.
type ChangedEntry = review.ChangedEntry

// maxChangedScan bounds the index entries one filtered page examines; a
// page that stops there (with fewer entries than asked, maybe none) still
// returns a cursor to go on from.
const maxChangedScan = 1000

// Changes returns the team's records changed at or after f.Since (server
// receive time), least recently changed first, each once at its last
// change, with attribution, and the cursor of the next page ("" when
// there are no more). A record changed again while a caller pages moves
// to the end and shows up again there.
func (e *Engine) Changes(ctx context.Context, c Caller, team string, f ChangedFilter) ([]ChangedEntry, string, error) {
	if err := scope(c, team); err != nil {
		return nil, "", err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, MaxPullLimit)
	start := store.ChangedKey(team, max(f.Since.UnixMilli(), 0), "", "")
	var after []byte
	if f.Cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(f.Cursor)
		if err != nil {
			return nil, "", ErrBadCursor
		}
		if after, err = store.ChangedCursorKey(team, raw); err != nil {
			return nil, "", ErrBadCursor
		}
		start = after
	}
	prefix := store.ChangedPrefix(team)
	var (
		out  []ChangedEntry
		next string
	)
	err := e.view(ctx, func(txn store.Tx) error {
		it := txn.Iterate(store.IterOptions{Prefix: prefix, KeysOnly: true})
		defer it.Close()
		scanned := 0
		var last []byte
		for it.Seek(start); it.Valid(); it.Next() {
			k := it.Key()
			if after != nil && bytes.Equal(k, after) {
				continue
			}
			if len(out) == limit || scanned == max(maxChangedScan, limit) {
				next = base64.RawURLEncoding.EncodeToString(last[len(prefix):])
				return nil
			}
			scanned++
			last = append(last[:0], it.Key()...)
			_, ref, err := store.ParseChangedKey(k)
			if err != nil {
				return err
			}
			if f.Collection != "" && ref.Collection != f.Collection {
				continue
			}
			ce, ok, err := lastChange(txn, api.RecordRef{Team: ref.Team, Collection: ref.Collection, ID: ref.ID}, f.Author)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			out = append(out, ce)
		}
		return it.Err()
	})
	if err != nil {
		return nil, "", fmt.Errorf("changes: %w", err)
	}
	return out, next, nil
}

// lastChange reads the newest log entry touching ref (through the history
// index, newest first) and attributes the record's last change. With
// author set, an entry by someone else is skipped before its ops are
// decoded (ok false).
func lastChange(txn store.Tx, ref api.RecordRef, author string) (ChangedEntry, bool, error) {
	prefix := store.HistoryPrefix(ref.Team, ref.Collection, ref.ID)
	it := txn.Iterate(store.IterOptions{Prefix: prefix, Reverse: true, KeysOnly: true})
	defer it.Close()
	it.Rewind() // reversed: the newest position
	if !it.Valid() {
		return ChangedEntry{}, false, it.Err()
	}
	pos, err := store.LogPos(it.Key())
	if err != nil {
		return ChangedEntry{}, false, err
	}
	val, err := txn.Get(store.LogKey(ref.Team, pos))
	if errors.Is(err, store.ErrNotFound) {
		return ChangedEntry{}, false, nil // trimmed by retention
	} else if err != nil {
		return ChangedEntry{}, false, fmt.Errorf("log entry %d: %w", pos, err)
	}
	ce := ChangedEntry{Ref: ref}
	var ops []crdt.Op
	var h store.PulledEntry
	err = store.DecodePulledEntry(val, &h)
	if err == nil {
		ce.Author, ce.Device, ce.Received, ce.Reason = h.Author, h.Replica, time.UnixMilli(h.ReceivedMS).UTC(), h.Reason
		if (author == "" || h.Author == author) && len(h.Ops) > 0 {
			err = store.Decode(h.Ops, &ops)
		}
	}
	if err != nil {
		return ChangedEntry{}, false, err
	}
	if author != "" && ce.Author != author {
		return ChangedEntry{}, false, nil
	}
	var newest crdt.Timestamp
	for i := range ops {
		op := &ops[i]
		if op.Collection == ref.Collection && op.Record == ref.ID && op.ID.Time > newest {
			newest = op.ID.Time
		}
	}
	ce.DeviceTime = newest.Time()
	return ce, true, nil
}

// ConflictValue is one concurrent value of a field in conflict, with who
// wrote it and what they had seen.
type ConflictValue = review.ConflictValue

// BaseValue is a value a concurrent write overwrote.
type BaseValue = review.BaseValue

// FieldConflict is one register field of a record with its concurrent
// values.
type FieldConflict = review.FieldConflict

// FieldConflict returns the concurrent values of a register field of one of
// the caller's records, attributed from the record's history.
func (e *Engine) FieldConflict(ctx context.Context, c Caller, ref api.RecordRef, field string) (*FieldConflict, error) {
	rec, err := e.Record(ctx, c, ref)
	if err != nil {
		return nil, err
	}
	hist, err := e.History(ctx, c, ref)
	if err != nil {
		return nil, err
	}
	return conflictFrom(rec, hist, field), nil
}

func conflictFrom(rec *crdt.Record, hist []HistoryEntry, field string) *FieldConflict {
	byID := make(map[crdt.OpID]*HistoryEntry, len(hist))
	for i := range hist {
		byID[hist[i].Op.ID] = &hist[i]
	}
	fc := &FieldConflict{Record: rec, Field: field}
	f := rec.Field(field)
	if !f.Conflict() {
		return fc
	}
	for _, en := range f.Entries {
		cv := ConflictValue{Entry: en}
		if h := byID[en.ID]; h != nil {
			cv.Author, cv.Received = h.Author, h.Received
			cv.Offline = h.Received.Sub(en.ID.Time.Time()) > OfflineAfter
			for _, p := range h.Op.Pred {
				if b := byID[p]; b != nil && b.Op.Field == field {
					cv.Base = append(cv.Base, BaseValue{Entry: crdt.Entry{ID: p, Value: b.Op.Value}, Author: b.Author})
				}
			}
		}
		fc.Values = append(fc.Values, cv)
	}
	return fc
}

// TeamQuarantine lists the quarantined ops of the given teams (an admin's
// teams), oldest first, at most limit (0 means DefaultPullLimit), from the
// first QuarantineScanLimit entries of the quarantine (QuarantinedIn).
func (e *Engine) TeamQuarantine(ctx context.Context, teams []string, limit int) ([]QuarantinedOp, error) {
	if teams == nil {
		teams = []string{}
	}
	ops, _, _, err := e.QuarantinedIn(ctx, teams, 0, limit)
	return ops, err
}

// CollectionRecords returns every record of one collection of a team
// (deleted ones included), in key order, at most limit (0 means
// 100,000): the input of the outcomes export.
func (e *Engine) CollectionRecords(ctx context.Context, c Caller, team, collection string, limit int) ([]*crdt.Record, error) {
	if err := scope(c, team); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 100_000
	}
	var out []*crdt.Record
	err := e.view(ctx, func(txn store.Tx) error {
		prefix := store.RecordCollectionPrefix(team, collection)
		it := txn.Iterate(store.IterOptions{Prefix: prefix, Batch: 100})
		defer it.Close()
		for it.Seek(prefix); it.Valid() && len(out) < limit; it.Next() {
			if err := itValue(it, func(v []byte) error {
				rec, err := store.DecodeRecord(v)
				if err == nil {
					out = append(out, rec)
				}
				return err
			}); err != nil {
				return err
			}
		}
		return it.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("collection %s/%s: %w", team, collection, err)
	}
	return out, nil
}

// CountChangedSince counts the team's records changed at or after since
// (server receive time), reading only the changed-since index
// (so a home page stays cheap): at most upTo; more reports whether there were more.
func (e *Engine) CountChangedSince(ctx context.Context, c Caller, team string, since time.Time, upTo int) (n int, more bool, err error) {
	if err := scope(c, team); err != nil {
		return 0, false, err
	}
	err = e.view(ctx, func(txn store.Tx) error {
		prefix := store.ChangedPrefix(team)
		it := txn.Iterate(store.IterOptions{Prefix: prefix, KeysOnly: true})
		defer it.Close()
		for it.Seek(store.ChangedKey(team, max(since.UnixMilli(), 0), "", "")); it.Valid(); it.Next() {
			if n == upTo {
				more = true
				return nil
			}
			n++
		}
		return it.Err()
	})
	if err != nil {
		return 0, false, fmt.Errorf("count changed: %w", err)
	}
	return n, more, nil
}

// TeamVersion returns the team's last log position: it changes with every
// change accepted for the team (pushes, resolutions, re-applies,
// erasures), so a view computed from the team's records may be cached
// until it moves.
func (e *Engine) TeamVersion(ctx context.Context, c Caller, team string) (uint64, error) {
	if err := scope(c, team); err != nil {
		return 0, err
	}
	var pos uint64
	err := e.view(ctx, func(txn store.Tx) error {
		prefix := store.LogPrefix(team)
		it := txn.Iterate(store.IterOptions{Prefix: prefix, Reverse: true, KeysOnly: true})
		defer it.Close()
		it.Rewind() // reversed: the last position
		if it.Valid() {
			var err error
			pos, err = store.LogPos(it.Key())
			return err
		}
		return it.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("team version: %w", err)
	}
	return pos, nil
}

// TouchedSince lists the records of one collection of the team that the
// log entries after position after touched or erased, so that a view
// cached at after (a TeamVersion) can be brought up to date from them (an
// erased record is no longer found). rebuild is true, and refs nil, when
// those entries number more than max (0 means 10,000): the view should
// then be rebuilt from scratch.
func (e *Engine) TouchedSince(ctx context.Context, c Caller, team string, after uint64, collection string, max int) (refs []api.RecordRef, rebuild bool, err error) {
	if err := scope(c, team); err != nil {
		return nil, false, err
	}
	if max <= 0 {
		max = 10_000
	}
	seen := map[string]bool{}
	err = e.view(ctx, func(txn store.Tx) error {
		prefix := store.LogPrefix(team)
		it := txn.Iterate(store.IterOptions{Prefix: prefix, KeysOnly: true})
		defer it.Close()
		n := 0
		for it.Seek(store.LogKey(team, after+1)); it.Valid(); it.Next() {
			if n++; n > max {
				rebuild = true
				return nil
			}
			err := itValue(it, func(v []byte) error {
				var h store.PulledEntry
				if err := store.DecodePulledEntry(v, &h); err != nil {
					return err
				}
				for _, x := range h.Erased {
					if x.Collection == collection && !seen[x.ID] {
						seen[x.ID] = true
						refs = append(refs, api.RecordRef{Team: team, Collection: collection, ID: x.ID})
					}
				}
				var ops []crdt.Op
				if len(h.Ops) == 0 {
					return nil
				}
				if err := store.Decode(h.Ops, &ops); err != nil {
					return err
				}
				for i := range ops {
					if op := &ops[i]; op.Collection == collection && !seen[op.Record] {
						seen[op.Record] = true
						refs = append(refs, api.RecordRef{Team: team, Collection: collection, ID: op.Record})
					}
				}
				return nil
			})
			if err != nil || rebuild {
				return err
			}
		}
		return it.Err()
	})
	if err != nil {
		return nil, false, fmt.Errorf("touched since: %w", err)
	}
	if rebuild {
		return nil, true, nil
	}
	return refs, false, nil
}

// Dismiss removes an entry from the quarantine for good, as an admin's
// decision that the op is not wanted: it is never merged, and a later op
// naming it in pred is refused as naming an unknown op (and kept in the
// quarantine itself). It returns the dismissed entry; an unknown ID wraps
// ErrNotFound. The caller records the decision in the audit trail.
func (e *Engine) Dismiss(ctx context.Context, id uint64) (QuarantinedOp, error) {
	if err := e.enter(); err != nil {
		return QuarantinedOp{}, err
	}
	defer e.inflight.Done()
	r := &request{kind: reqDismiss, qid: id}
	if err := e.submit(ctx, r); err != nil {
		return QuarantinedOp{}, fmt.Errorf("dismiss %d: %w", id, err)
	}
	return r.dismissed, nil
}

func (t *txnState) dismiss(r *request) error {
	q, err := t.quarantineEntry(r)
	if err != nil || q == nil {
		return err
	}
	r.dismissed = quarantinedOp(r.qid, q, t.e.bounds.QuarantineTTL)
	if err := store.DeleteQuarantineEntry(t.txn, r.qid, q); err != nil {
		return err
	}
	return t.unchargeQuarantine(q)
}
