package sync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

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
		resp.Restated, resp.Purged = r.restated, r.purged
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
	r.restated, r.purged = 0, nil
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
		if !c.InTeam(rec.Team) || len(rec.Team) > maxNameLen || len(rec.Collection) > maxNameLen || len(rec.ID) > maxNameLen {
			continue
		}
		clean, err := t.checkState(rec, c, r.ownOnly)
		if err != nil {
			return err
		}
		if clean == nil {
			// Another team's record, or an erased one: the device may
			// never have pulled the erasure (a bootstrap lists none), so
			// it is told to purge its copy.
			if team, err := t.erasedMarker(rec.Collection, rec.ID); err != nil {
				return err
			} else if team == rec.Team {
				r.purged = append(r.purged, api.RecordRef{Team: rec.Team, Collection: rec.Collection, ID: rec.ID})
			}
			continue
		}
		rs, err := t.record(rec.Team, rec.Collection, rec.ID)
		if err != nil {
			return err
		}
		keepUnreplaced(rs.rec, clean)
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
		rs.rec, rs.dirty, rs.batch, rs.ahead = merged, true, nil, nil
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
			le := &store.LogEntry{Author: c.User, Replica: c.Replica, ReceivedMS: t.now.UnixMilli(), States: byTeam[team]}
			if err := store.PutLogEntry(t.txn, team, pos, le); err != nil {
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
	team, coll, id, ok := b.Ref()
	if !ok {
		return false, nil
	}
	key := store.RecordKey(team, coll, id)
	if _, cached := t.records[string(key)]; cached {
		return false, nil
	}
	val, err := t.txn.Get(key)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	_, stored, err := store.DecodeRecordValue(val)
	return err == nil && bytes.Equal(stored, b), nil
}

// rebasedIn reports whether the replica already finished its restate in
// the current epoch.
func (t *txnState) rebasedIn(r crdt.ReplicaID) (bool, error) {
	val, err := t.txn.Get(store.RebasedKey(r))
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		return false, err
	}
	return bytes.Equal(val, t.e.epoch[:]), nil
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
	// The state keeps its causal context; an entry dropped here is marked
	// skipped, so the state does not claim to have replaced it (it would
	// remove the server's copy in the merge).
	out := rec.Clone()
	if ownOnly {
		// Only the restating replica's own ops are taken: the state's
		// clock keeps no claim about other replicas, so it can neither add
		// nor remove their entries.
		out.Clock = slices.DeleteFunc(out.Clock, func(s crdt.Seen) bool { return s.Replica != c.Replica })
	}
	var dropped []crdt.OpID
	for name, f := range out.Fields {
		if f == nil {
			delete(out.Fields, name)
			continue
		}
		kind := map[crdt.FieldType]crdt.Kind{crdt.Register: crdt.KindWrite, crdt.Set: crdt.KindAdd, crdt.Log: crdt.KindAppend}[f.Type]
		kept := f.Entries[:0]
		for _, en := range f.Entries {
			if ownOnly && en.ID.Replica != c.Replica {
				continue
			}
			op := crdt.Op{ID: en.ID, Team: rec.Team, Collection: rec.Collection, Record: rec.ID, Field: name, Kind: kind, Value: en.Value}
			ok := op.Validate() == nil && t.e.clock.Check(en.ID.Time, t.now) == nil
			if v := t.e.validator; ok && v != nil && v.ValidateOp(&op) != nil {
				ok = false
			}
			if !ok {
				dropped = append(dropped, en.ID)
				continue
			}
			kept = append(kept, en)
		}
		f.Entries = kept
		if len(f.Entries) == 0 && len(f.Pending) == 0 {
			delete(out.Fields, name)
		}
	}
	if len(dropped) > 0 {
		out.Skipped = append(out.Skipped, dropped...)
		slices.SortFunc(out.Skipped, crdt.OpID.Compare)
		out.Skipped = slices.Compact(out.Skipped)
		out.DeleteSeen = slices.DeleteFunc(out.DeleteSeen, func(id crdt.OpID) bool { return out.Covers(id) && !liveIn(out, id) })
	}
	return out, nil
}

// keepUnreplaced stops a restated state from removing a stored register
// value unless the state holds a newer write to the same field. A register
// value is only ever removed by a later write, which stays live or is
// itself overwritten by a later one, so an honest state's newest live entry
// is newer than everything it removed; a removal without such a write
// (blanking a field, or taking a concurrent value out of review) is not
// taken: the value is marked skipped in the state, so the merge keeps it.
func keepUnreplaced(stored, state *crdt.Record) {
	var keep []crdt.OpID
	for name, sf := range stored.Fields {
		if sf == nil || sf.Type != crdt.Register {
			continue
		}
		f := state.Fields[name]
		var newest crdt.OpID
		if f != nil && len(f.Entries) > 0 {
			newest = f.Entries[len(f.Entries)-1].ID
		}
		for _, en := range sf.Entries {
			if state.Covers(en.ID) && !f.HasEntry(en.ID) && en.ID.Compare(newest) >= 0 {
				keep = append(keep, en.ID)
			}
		}
	}
	if len(keep) > 0 {
		state.Skipped = append(state.Skipped, keep...)
		slices.SortFunc(state.Skipped, crdt.OpID.Compare)
		state.Skipped = slices.Compact(state.Skipped)
	}
}

// liveIn reports whether id is a live entry of some field of r.
func liveIn(r *crdt.Record, id crdt.OpID) bool {
	for _, f := range r.Fields {
		if f.HasEntry(id) {
			return true
		}
	}
	return false
}
