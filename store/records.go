package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/doorstep-health/doorstep/crdt"
)

// Record upkeep: a record's state and every index that names it are
// written here, in one place, so the engine never writes an index key
// itself. PutRecord brings the indexes from a record's stored state to
// its new one; DeleteRecord removes the state and its index entries
// (erasure). Both run inside the caller's write transaction.
//
// The indexes of a record (see the key layout): x/ (team index: which
// team owns the collection and ID), u/ (changed-since, keyed by the last
// change time), c/ (the record has a field in conflict) and s/ (search
// terms, chosen by the engine: store keeps the entries, the engine says
// which terms a state carries).

// RecordIndex is what a record's index entries say about one of its
// states: when it last changed, whether a field is in conflict, and its
// search terms (sorted, distinct; see TermKey).
type RecordIndex struct {
	UpdatedMS int64
	Conflict  bool
	Terms     []string
}

// StoredRecord is a record as read from its r/ key.
type StoredRecord struct {
	UpdatedMS int64
	// State is the crdt.MarshalRecord encoding.
	State []byte
}

// GetRecord reads a record's r/ value; ErrNotFound if it is not stored.
func GetRecord(tx Tx, team, coll, id string) (StoredRecord, error) {
	v, err := tx.Get(RecordKey(team, coll, id))
	if err != nil {
		return StoredRecord{}, err
	}
	ms, b, err := DecodeRecordValue(v)
	if err != nil {
		return StoredRecord{}, fmt.Errorf("record %s/%s/%s: %w", team, coll, id, err)
	}
	return StoredRecord{UpdatedMS: ms, State: b}, nil
}

// DecodeRecord decodes an r/ value into the record it holds.
func DecodeRecord(v []byte) (*crdt.Record, error) {
	_, b, err := DecodeRecordValue(v)
	if err != nil {
		return nil, err
	}
	return crdt.UnmarshalRecord(b)
}

// PutRecord writes a record's state (crdt.MarshalRecord bytes) under its
// r/ key and brings each of its indexes from old, what they said of the
// stored state (nil: the record was not stored), to now: the team index
// for a new record, the changed-since entry moved to now.UpdatedMS, the
// conflict entry set or cleared, the search terms added and dropped.
func PutRecord(tx Tx, team, coll, id string, state []byte, old *RecordIndex, now RecordIndex) error {
	return PutRecordValue(tx, team, coll, id, EncodeRecordValue(now.UpdatedMS, state), old, now)
}

// RecordValueHeaderLen is the length of what EncodeRecordValue writes
// before a record's state.
const RecordValueHeaderLen = 9

// PutRecordValueHeader writes EncodeRecordValue's header for updatedMS
// over the first RecordValueHeaderLen bytes of v, which hold a record's
// state after them: v is then EncodeRecordValue(updatedMS,
// v[RecordValueHeaderLen:]). A caller that encodes a state after room for
// the header stores it without a copy (PutRecordValue).
func PutRecordValueHeader(v []byte, updatedMS int64) {
	v[0] = recordValueVersion
	binary.BigEndian.PutUint64(v[1:RecordValueHeaderLen], uint64(updatedMS))
}

// PutRecordValue is PutRecord for a caller that has the r/ value whole:
// value must be EncodeRecordValue(now.UpdatedMS, state), or a state with
// its header written by PutRecordValueHeader(value, now.UpdatedMS).
func PutRecordValue(tx Tx, team, coll, id string, value []byte, old *RecordIndex, now RecordIndex) error {
	if err := tx.Set(RecordKey(team, coll, id), value); err != nil {
		return err
	}
	var was RecordIndex
	if old == nil {
		if err := tx.Set(TeamIndexKey(coll, id), []byte(team)); err != nil {
			return err
		}
	} else {
		was = *old
	}
	if old != nil && was.UpdatedMS != now.UpdatedMS {
		if err := tx.Delete(ChangedKey(team, was.UpdatedMS, coll, id)); err != nil {
			return err
		}
	}
	if old == nil || was.UpdatedMS != now.UpdatedMS {
		if err := tx.Set(ChangedKey(team, now.UpdatedMS, coll, id), nil); err != nil {
			return err
		}
	}
	for _, term := range was.Terms {
		if _, found := slices.BinarySearch(now.Terms, term); !found {
			if err := tx.Delete(TermKey(team, term, coll, id)); err != nil {
				return err
			}
		}
	}
	for _, term := range now.Terms {
		if _, found := slices.BinarySearch(was.Terms, term); !found {
			if err := tx.Set(TermKey(team, term, coll, id), nil); err != nil {
				return err
			}
		}
	}
	switch {
	case now.Conflict && !was.Conflict:
		return tx.Set(ConflictKey(team, coll, id), nil)
	case !now.Conflict && was.Conflict:
		return tx.Delete(ConflictKey(team, coll, id))
	}
	return nil
}

// DeleteRecord removes a record's state and every index entry naming it:
// r/ and the u/ and s/ entries old describes (nil: the state is not
// stored, only its other indexes may be), c/ and x/. The history (i/),
// the log and the purge marker are the caller's (see EraseFromLogEntry,
// MarkErased).
func DeleteRecord(tx Tx, team, coll, id string, old *RecordIndex) error {
	if old != nil {
		for _, term := range old.Terms {
			if err := tx.Delete(TermKey(team, term, coll, id)); err != nil {
				return err
			}
		}
		if err := tx.Delete(ChangedKey(team, old.UpdatedMS, coll, id)); err != nil {
			return err
		}
		if err := tx.Delete(RecordKey(team, coll, id)); err != nil {
			return err
		}
	}
	if err := tx.Delete(ConflictKey(team, coll, id)); err != nil {
		return err
	}
	return tx.Delete(TeamIndexKey(coll, id))
}

// PutTerms adds search term entries for a record (building the index of
// records stored before it existed; setting an entry twice is harmless).
func PutTerms(tx Tx, team, coll, id string, terms []string) error {
	for _, term := range terms {
		if err := tx.Set(TermKey(team, term, coll, id), nil); err != nil {
			return err
		}
	}
	return nil
}

// RecordOwner returns the team owning collection/id by the team index, or
// "" when no team does. A record's state is stored only under the team
// its x/ key names: PutRecord writes the x/ key with a new record's r/ key
// and DeleteRecord deletes both, so when RecordOwner returns "" no team
// stores collection/id (the engine then skips reading a state that is not
// there).
func RecordOwner(tx Tx, coll, id string) (string, error) {
	b, err := tx.Get(TeamIndexKey(coll, id))
	switch {
	case errors.Is(err, ErrNotFound):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("read team index: %w", err)
	}
	return string(b), nil
}

// ErasedTeam returns the team named by collection/id's purge marker, or
// "" when it was never erased.
func ErasedTeam(tx Tx, coll, id string) (string, error) {
	b, err := tx.Get(ErasedKey(coll, id))
	switch {
	case errors.Is(err, ErrNotFound):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("read purge marker: %w", err)
	}
	return string(b), nil
}

// MarkErased writes collection/id's purge marker, naming team.
func MarkErased(tx Tx, coll, id, team string) error {
	return tx.Set(ErasedKey(coll, id), []byte(team))
}

// PutLogEntry writes the team's log entry at pos and indexes pos in the
// history (i/) of every record its ops or states touch. An erasure entry
// (no ops, no states) touches none.
func PutLogEntry(tx Tx, team string, pos uint64, le *LogEntry) error {
	return PutLogEntryOps(tx, team, pos, le, nil)
}

// PutLogEntryOps is PutLogEntry for a caller that has the entry's ops
// packed already: packed must be PackLogOps(le.Ops) (nil: pack them
// here). A push packs a change's ops before the committer takes it, so
// the committer only copies them.
func PutLogEntryOps(tx Tx, team string, pos uint64, le *LogEntry, packed PackedLogOps) error {
	v, err := encodeLogEntryPacked(le, packed)
	if err != nil {
		return err
	}
	type ref struct{ coll, id string }
	var touched []ref
	// A record's ops come together: one entry per run, counted first to
	// size the set of records seen once.
	runs := 0
	for i := range le.Ops {
		if i == 0 || le.Ops[i].Record != le.Ops[i-1].Record || le.Ops[i].Collection != le.Ops[i-1].Collection {
			runs++
		}
	}
	seen := make(map[ref]bool, runs+len(le.States))
	if runs > 0 {
		touched = make([]ref, 0, runs)
	}
	for i := range le.Ops {
		r := ref{le.Ops[i].Collection, le.Ops[i].Record}
		if i > 0 && r == (ref{le.Ops[i-1].Collection, le.Ops[i-1].Record}) {
			continue
		}
		if !seen[r] {
			seen[r] = true
			touched = append(touched, r)
		}
	}
	for _, st := range le.States {
		_, coll, id, ok := st.Ref()
		if !ok {
			rec, err := st.Record()
			if err != nil {
				return fmt.Errorf("log entry %d: %w", pos, err)
			}
			coll, id = rec.Collection, rec.ID
		}
		if r := (ref{coll, id}); !seen[r] {
			seen[r] = true
			touched = append(touched, r)
		}
	}
	for _, r := range touched {
		if err := tx.Set(HistoryKey(team, r.coll, r.id, pos), nil); err != nil {
			return err
		}
	}
	return tx.Set(LogKey(team, pos), v)
}

// GetLogEntry reads and decodes the team's log entry at pos; ErrNotFound
// if there is none (never written, or deleted by an erasure).
func GetLogEntry(tx Tx, team string, pos uint64) (*LogEntry, error) {
	v, err := tx.Get(LogKey(team, pos))
	if err != nil {
		return nil, fmt.Errorf("log entry %d: %w", pos, err)
	}
	var le LogEntry
	if err := Decode(v, &le); err != nil {
		return nil, fmt.Errorf("log entry %d: %w", pos, err)
	}
	return &le, nil
}

// HistoryPositions returns the log positions in collection/id's history
// (its i/ entries), in order.
func HistoryPositions(tx Tx, team, coll, id string) ([]uint64, error) {
	var out []uint64
	prefix := HistoryPrefix(team, coll, id)
	it := tx.Iterate(IterOptions{Prefix: prefix, KeysOnly: true})
	defer it.Close()
	for it.Seek(prefix); it.Valid(); it.Next() {
		pos, err := LogPos(it.Key())
		if err != nil {
			return nil, err
		}
		out = append(out, pos)
	}
	return out, it.Err()
}

// LogEntryChange says what EraseFromLogEntry did to an entry.
type LogEntryChange uint8

// What EraseFromLogEntry did.
const (
	EntryUnchanged LogEntryChange = iota // absent, or nothing of the record in it
	EntryRewritten                       // written back without the record's ops and states
	EntryDeleted                         // nothing left in it: deleted
)

// EraseFromLogEntry removes collection/id's ops and states from the team's
// log entry at pos, rewriting it or deleting it when nothing is left, and
// drops pos from the record's history. It returns how many ops it removed
// and what it did to the entry. Positions are never reused: a pull cursor
// seeks past a deleted position, neither skipping nor repeating.
func EraseFromLogEntry(tx Tx, team, coll, id string, pos uint64) (ops int, change LogEntryChange, err error) {
	if err := tx.Delete(HistoryKey(team, coll, id, pos)); err != nil {
		return 0, EntryUnchanged, err
	}
	key := LogKey(team, pos)
	val, err := tx.Get(key)
	if errors.Is(err, ErrNotFound) {
		return 0, EntryUnchanged, nil // already deleted by an earlier record of this erasure
	} else if err != nil {
		return 0, EntryUnchanged, err
	}
	var le LogEntry
	if err := Decode(val, &le); err != nil {
		return 0, EntryUnchanged, err
	}
	kept := le.Ops[:0]
	for _, op := range le.Ops {
		if op.Collection == coll && op.Record == id {
			ops++
			continue
		}
		kept = append(kept, op)
	}
	keptStates := le.States[:0]
	for _, st := range le.States {
		if rec, err := st.Record(); err == nil && rec.Collection == coll && rec.ID == id {
			continue
		}
		keptStates = append(keptStates, st)
	}
	if len(kept) == len(le.Ops) && len(keptStates) == len(le.States) {
		return ops, EntryUnchanged, nil
	}
	le.States = keptStates
	if len(kept) == 0 && len(le.Erased) == 0 && len(le.States) == 0 {
		return ops, EntryDeleted, tx.Delete(key)
	}
	le.Ops = kept
	v, err := encodeLogEntry(&le)
	if err != nil {
		return ops, EntryUnchanged, err
	}
	return ops, EntryRewritten, tx.Set(key, v)
}
