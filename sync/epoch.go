package sync

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

// MaxRestateRecords bounds the record states one restate request may carry.
const MaxRestateRecords = 2000

// staleEpoch reports whether a request comes from a device that last
// synced in another epoch of this server (before a restore).
func (e *Engine) staleEpoch(req *api.SyncRequest) bool {
	return len(req.Epoch) > 0 && !bytes.Equal(req.Epoch, e.epoch[:])
}

// syncStale answers a request from a device of an earlier epoch. Its
// changes are not applied (their seqs may lie beyond a high-water mark the
// restore set back, which would refuse them as seq_gap) and nothing is
// pulled: the device must first re-send its record states. A request with
// Restate pages merges them; the one with RestateDone also re-bases the
// replica's high-water seq, after which the device uses the new epoch.
func (e *Engine) syncStale(ctx context.Context, c Caller, req *api.SyncRequest) (*api.SyncResponse, error) {
	resp := &api.SyncResponse{Protocol: api.ProtocolVersion, Epoch: e.epoch[:]}
	if len(req.Restate) > 0 || req.RestateDone {
		if len(req.Restate) > MaxRestateRecords {
			return nil, fmt.Errorf("%w: %d record states in one restate request, at most %d", ErrInvalid, len(req.Restate), MaxRestateRecords)
		}
		if err := e.enter(); err != nil {
			return nil, err
		}
		defer e.inflight.Done()
		c.Teams = teamSet(c.Teams)
		r := &request{kind: reqRestate, caller: c, states: req.Restate, rebase: req.Rebase, restateDone: req.RestateDone,
			ownOnly: !e.knownEpoch(req.Epoch)}
		if err := e.submit(ctx, r); err != nil {
			return nil, fmt.Errorf("restate: %w", err)
		}
		resp.Restated = r.restated
	}
	resp.Clock = e.clock.Now()
	return resp, nil
}

// knownEpoch reports whether b names one of this store's earlier epochs.
func (e *Engine) knownEpoch(b []byte) bool {
	for _, p := range e.past {
		if bytes.Equal(b, p[:]) {
			return true
		}
	}
	return false
}

// rebaseLegacy keeps a device that predates epochs (it sends no Epoch)
// from being wedged after a restore: when its cursor was minted in another
// epoch and it pushes changes, the replica's high-water seq is raised to
// just below its first change, once per epoch, so the changes apply
// instead of failing seq_gap forever. Such a device cannot re-send what
// the restore lost (acknowledged changes it dropped, ops it pulled); that
// is logged. Devices that send Epoch restate instead (syncStale).
func (e *Engine) rebaseLegacy(ctx context.Context, c Caller, req *api.SyncRequest) error {
	if len(req.Epoch) > 0 || len(req.Changes) == 0 || len(req.Cursor) == 0 {
		return nil
	}
	cu, err := decodeCursor(req.Cursor)
	if err != nil || cu.epoch == 0 || cu.epoch == e.epochTag() || req.Changes[0].Seq == 0 {
		return nil
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.inflight.Done()
	rebase := req.Changes[0].Seq - 1
	e.log.Warn("a device without epoch support synced after a restore: its high-water seq is re-based; changes it had acknowledged since the backup and no longer holds are lost",
		"replica", c.Replica, "user", c.User, "rebase", rebase)
	r := &request{kind: reqRestate, caller: c, rebase: rebase, restateDone: true, ownOnly: true}
	if err := e.submit(ctx, r); err != nil {
		return fmt.Errorf("rebase: %w", err)
	}
	return nil
}

// restate merges a device's re-sent record states. Each state is checked
// as a push would check its ops: the caller's teams, the owning team, purge
// markers, clock skew and the validator, entry by entry (an entry that
// fails is left out, not quarantined: the server accepted or refused it
// once already, before the restore). States that add something are
// merged, their indexes updated, and the merged states written as one
// restate log entry per team, which other devices pull as snapshot
// records. Merging is idempotent, so a repeated page changes nothing.
//
// A restate lets a device hand over entries stamped with other replicas'
// op IDs (ops it pulled), which a push never allows. So that a device
// cannot use a made-up epoch to plant entries under another device's IDs,
// only a request naming one of this store's earlier epochs may do that;
// from an epoch the store does not know (ownOnly) only entries of the
// caller's own replica are taken.
func (t *txnState) restate(r *request) error {
	r.restated = 0
	c := &r.caller
	rebased, err := t.rebasedIn(c.Replica)
	if err != nil {
		return err
	}
	if rebased {
		return nil // this replica finished its restate in this epoch already
	}
	byTeam := map[string][]crdt.RecordBytes{}
	var teams []string
	for i := range r.states {
		// Fast path, the common case after a recent backup: the server's
		// stored state is byte for byte the device's (both canonical).
		if same, err := t.storedEquals(r.states[i]); err != nil {
			return err
		} else if same {
			continue
		}
		rec, err := r.states[i].Record()
		if err != nil {
			t.e.log.Warn("restate: malformed record state skipped", "replica", c.Replica, "err", err)
			continue
		}
		if !c.inTeam(rec.Team) || len(rec.Team) > maxNameLen || len(rec.Collection) > maxNameLen || len(rec.ID) > maxNameLen {
			continue
		}
		clean, err := t.checkState(rec, c, r.ownOnly)
		if err != nil {
			return err
		}
		if clean == nil {
			continue
		}
		rs, err := t.record(rec.Team, rec.Collection, rec.ID)
		if err != nil {
			return err
		}
		before, err := crdt.MarshalRecord(rs.rec)
		if err != nil {
			return err
		}
		merged := rs.rec.Clone()
		if err := merged.Merge(clean); err != nil {
			continue // a field type the record has otherwise
		}
		after, err := crdt.MarshalRecord(merged)
		if err != nil {
			return err
		}
		if bytes.Equal(before, after) {
			continue
		}
		rs.rec, rs.dirty = merged, true
		t.owners[string(store.TeamIndexKey(rec.Collection, rec.ID))] = rec.Team
		if _, ok := byTeam[rec.Team]; !ok {
			teams = append(teams, rec.Team)
		}
		byTeam[rec.Team] = append(byTeam[rec.Team], crdt.RecordBytes(after))
		r.restated++
	}
	if len(teams) > 0 {
		pos := t.nextPos()
		for _, team := range teams {
			for _, st := range byTeam[team] {
				rec, _ := st.Record()
				if err := t.set(store.HistoryKey(team, rec.Collection, rec.ID, pos), nil); err != nil {
					return err
				}
			}
			v, err := store.Encode(&store.LogEntry{Author: c.User, Replica: c.Replica, ReceivedMS: t.now.UnixMilli(), States: byTeam[team]})
			if err != nil {
				return err
			}
			if err := t.set(store.LogKey(team, pos), v); err != nil {
				return err
			}
		}
	}
	if !r.restateDone {
		return nil
	}
	hwm, err := t.highWater(c.Replica)
	if err != nil {
		return err
	}
	if r.rebase > hwm {
		t.e.log.Info("replica high-water re-based after a restore", "replica", c.Replica, "from", hwm, "to", r.rebase)
		if err := t.setHighWater(c.Replica, r.rebase); err != nil {
			return err
		}
	}
	return t.set(store.RebasedKey(c.Replica), t.e.epoch[:])
}

// storedEquals reports whether b (a canonical record state) is exactly the
// stored state of the record it names, reading only b's header. A record
// this transaction has touched is never "equal": it takes the full path.
func (t *txnState) storedEquals(b crdt.RecordBytes) (bool, error) {
	team, coll, id, ok := recordRefOf(b)
	if !ok {
		return false, nil
	}
	key := store.RecordKey(team, coll, id)
	if _, cached := t.records[string(key)]; cached {
		return false, nil
	}
	item, err := t.txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	var same bool
	err = item.Value(func(v []byte) error {
		_, stored, err := store.DecodeRecordValue(v)
		same = err == nil && bytes.Equal(stored, b)
		return nil
	})
	return same, err
}

// recordRefOf reads the collection, ID and team at the head of a canonical
// record state (crdt.AppendRecord writes them first, in that order).
func recordRefOf(b []byte) (team, coll, id string, ok bool) {
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(bytes.NewReader(b))
	if n, err := dec.DecodeMapLen(); err != nil || n != 4 {
		return "", "", "", false
	}
	var vals [3]string
	for i, want := range []string{"c", "r", "t"} {
		k, err := dec.DecodeString()
		if err != nil || k != want {
			return "", "", "", false
		}
		if vals[i], err = dec.DecodeString(); err != nil {
			return "", "", "", false
		}
	}
	return vals[2], vals[0], vals[1], true
}

// rebasedIn reports whether the replica already finished its restate in
// the current epoch.
func (t *txnState) rebasedIn(r crdt.ReplicaID) (bool, error) {
	item, err := t.txn.Get(store.RebasedKey(r))
	if err != nil {
		if errors.Is(err, badger.ErrKeyNotFound) {
			return false, nil
		}
		return false, err
	}
	var same bool
	err = item.Value(func(v []byte) error { same = bytes.Equal(v, t.e.epoch[:]); return nil })
	return same, err
}

// checkState returns rec without the entries a push would not have
// merged, or nil if the record must not be touched at all (another team
// owns it, or it was erased).
func (t *txnState) checkState(rec *crdt.Record, c *Caller, ownOnly bool) (*crdt.Record, error) {
	owner, err := t.owner(rec.Collection, rec.ID)
	if err != nil {
		return nil, err
	}
	if owner != "" && owner != rec.Team {
		return nil, nil
	}
	if owner == "" {
		if team, err := t.erasedMarker(rec.Collection, rec.ID); err != nil {
			return nil, err
		} else if team != "" {
			return nil, nil
		}
	}
	out := crdt.NewRecord(rec.Team, rec.Collection, rec.ID)
	for name, f := range rec.Fields {
		if f == nil {
			continue
		}
		kind := map[crdt.FieldType]crdt.Kind{crdt.Register: crdt.KindWrite, crdt.Set: crdt.KindAdd, crdt.Log: crdt.KindAppend}[f.Type]
		nf := &crdt.Field{Type: f.Type, Removed: f.Removed}
		for _, en := range f.Entries {
			if ownOnly && en.ID.Replica != c.Replica {
				continue
			}
			op := crdt.Op{ID: en.ID, Team: rec.Team, Collection: rec.Collection, Record: rec.ID, Field: name, Kind: kind, Value: en.Value}
			if op.Validate() != nil || t.e.clock.Check(en.ID.Time, t.now) != nil {
				continue
			}
			if v := t.e.validator; v != nil && v.ValidateOp(&op) != nil {
				continue
			}
			nf.Entries = append(nf.Entries, en)
		}
		if f.Type == crdt.Register {
			// A register value is only ever removed by a later write, which
			// stays live or is itself overwritten by a later one: an honest
			// state's newest live entry is newer than every removed ID.
			// Removals without such a write (blanking a field, or taking a
			// concurrent value out of review) are not taken.
			var newest crdt.OpID
			if n := len(nf.Entries); n > 0 {
				newest = nf.Entries[n-1].ID
			}
			kept := make([]crdt.OpID, 0, len(nf.Removed))
			for _, id := range nf.Removed {
				if id.Compare(newest) < 0 {
					kept = append(kept, id)
				}
			}
			nf.Removed = kept
		}
		if len(nf.Entries) > 0 || len(nf.Removed) > 0 {
			out.Fields[name] = nf
		}
	}
	return out, nil
}
