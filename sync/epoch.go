package sync

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"

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
		r := &request{kind: reqRestate, caller: c, states: req.Restate, rebase: req.Rebase, restateDone: req.RestateDone}
		if err := e.submit(ctx, r); err != nil {
			return nil, fmt.Errorf("restate: %w", err)
		}
		resp.Restated = r.restated
	}
	resp.Clock = e.clock.Now()
	return resp, nil
}

// restate merges a device's re-sent record states. Each state is checked
// as a push would check its ops: the caller's teams, the owning team, purge
// markers, clock skew and the validator, entry by entry (an entry that
// fails is left out, not quarantined: the server accepted or refused it
// once already, before the restore). States that add something are
// merged, their indexes updated, and the merged states written as one
// restate log entry per team, which other devices pull as snapshot
// records. Merging is idempotent, so a repeated page changes nothing.
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
		rec, err := r.states[i].Record()
		if err != nil {
			t.e.log.Warn("restate: malformed record state skipped", "replica", c.Replica, "err", err)
			continue
		}
		if !c.inTeam(rec.Team) || len(rec.Team) > maxNameLen || len(rec.Collection) > maxNameLen || len(rec.ID) > maxNameLen {
			continue
		}
		clean, err := t.checkState(rec)
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
func (t *txnState) checkState(rec *crdt.Record) (*crdt.Record, error) {
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
			op := crdt.Op{ID: en.ID, Team: rec.Team, Collection: rec.Collection, Record: rec.ID, Field: name, Kind: kind, Value: en.Value}
			if op.Validate() != nil || t.e.clock.Check(en.ID.Time, t.now) != nil {
				continue
			}
			if v := t.e.validator; v != nil && v.ValidateOp(&op) != nil {
				continue
			}
			nf.Entries = append(nf.Entries, en)
		}
		if len(nf.Entries) > 0 || len(nf.Removed) > 0 {
			out.Fields[name] = nf
		}
	}
	return out, nil
}
