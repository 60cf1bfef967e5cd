package sync

import (
	"fmt"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

// txnView is the admission view over a commit transaction: reads go
// through the transaction's caches, so a change sees what the changes
// before it in the commit group did.
type txnView struct{ t *txnState }

var _ admissionView = txnView{}

func (v txnView) HighWater(r crdt.ReplicaID) (uint64, error) { return v.t.highWater(r) }

func (v txnView) Reported(r crdt.ReplicaID, seq uint64) ([]api.OpResult, error) {
	return v.t.reported(r, seq)
}

func (v txnView) Owner(coll, id string) (string, error) { return v.t.owner(coll, id) }

func (v txnView) Erased(coll, id string) (bool, error) {
	team, err := v.t.erasedMarker(coll, id)
	return team != "", err
}

func (v txnView) Record(team, coll, id string) (*crdt.Record, error) {
	rs, err := v.t.record(team, coll, id)
	if err != nil {
		return nil, err
	}
	return rs.rec, nil
}

func (v txnView) Size(team, coll, id string) (recSize, error) {
	rs, err := v.t.record(team, coll, id)
	if err != nil {
		return recSize{}, err
	}
	return rs.sz.clone(), nil
}

func (v txnView) Quarantined(id crdt.OpID) (bool, error) { return v.t.quarantined(id) }

// MergedOp finds the op merged under id in the record's log entries,
// through its history index.
func (v txnView) MergedOp(team, coll, record string, id crdt.OpID) (crdt.Op, bool, error) {
	positions, err := store.HistoryPositions(v.t.txn, team, coll, record)
	if err != nil {
		return crdt.Op{}, false, err
	}
	for _, pos := range positions {
		le, err := store.GetLogEntry(v.t.txn, team, pos)
		if err != nil {
			return crdt.Op{}, false, err
		}
		for i := range le.Ops {
			if le.Ops[i].ID == id {
				return le.Ops[i], true, nil
			}
		}
	}
	return crdt.Op{}, false, nil
}

func (v txnView) DeviceUsage(r crdt.ReplicaID) (store.QuarantineUsage, error) {
	u, err := v.t.usageOf(store.QuarantineDeviceKey(r))
	if err != nil {
		return store.QuarantineUsage{}, err
	}
	return u.u, nil
}

func (v txnView) TeamUsage(team string) (store.QuarantineUsage, error) {
	u, err := v.t.usageOf(store.QuarantineTeamKey(team))
	if err != nil {
		return store.QuarantineUsage{}, err
	}
	return u.u, nil
}

// admission returns the admission rules as this transaction applies them.
func (t *txnState) admission() *admission {
	return &admission{rules: t.e.rules, validator: t.e.validator, bounds: t.e.bounds, skew: t.e.clock.Check, now: t.now}
}

// applyChange stores what admitChange decided for a change: the queued
// ops merged into their records, the quarantine entries, the change's log
// entry and the replica's new high-water. A decision that applies nothing
// (duplicate, gap) stores nothing. enc, if not nil, is
// store.PackLogOps(d.accepted), packed before the commit.
func (t *txnState) applyChange(c *Caller, d *changeDecision, enc store.PackedLogOps) error {
	if !d.apply {
		return nil
	}
	for _, u := range d.built {
		r := u.rec
		rs, err := t.record(r.Team, r.Collection, r.ID)
		if err != nil {
			return err
		}
		if rs.rec != r || !r.IsEmpty() {
			return fmt.Errorf("admission took a run merged ahead for a state of %s/%s/%s that is not the blank one it read", r.Team, r.Collection, r.ID)
		}
		// u.run.rec nil: the state is built only if read (recState.state).
		rs.rec, rs.dirty, rs.shared = u.run.rec, true, u.run.rec != nil
		rs.ahead = u.run
	}
	for k, sz := range d.sizes {
		rs, ok := t.records[k]
		if !ok {
			return fmt.Errorf("admission sized record %q the transaction has not read", k)
		}
		rs.sz = sz
	}
	for _, b := range d.batches {
		r := b.Record()
		rs, err := t.record(r.Team, r.Collection, r.ID)
		if err != nil {
			return err
		}
		if rs.rec != r {
			return fmt.Errorf("admission queued ops on a stale state of %s/%s/%s", r.Team, r.Collection, r.ID)
		}
		rs.dirty = true
		rs.ahead = nil // the batch changes the state
	}
	var latest crdt.Timestamp
	for i := range d.accepted {
		op := &d.accepted[i]
		if i == 0 || !sameRecord(op, &d.accepted[i-1]) {
			t.setOwner(op.Collection, op.Record, op.Team)
		}
		latest = max(latest, op.ID.Time)
	}
	if len(d.accepted) > 0 {
		t.updateClock(d.accepted, latest)
	}
	for i := range d.held {
		w := &d.held[i]
		op := &w.entry.Op
		if err := t.storeQuarantine(w); err != nil {
			return err
		}
		rs, err := t.record(op.Team, op.Collection, op.Record)
		if err != nil {
			return err
		}
		rs.rec.Skip(op.ID)
		rs.dirty, rs.ahead = true, nil
		t.setOwner(op.Collection, op.Record, op.Team)
	}
	for i := range d.summaries {
		if err := t.storeQuarantine(&d.summaries[i]); err != nil {
			return err
		}
	}
	for _, b := range d.batches {
		b.Flush()
	}
	t.flushBatches()
	if err := t.writeLogReason(c.User, c.Replica, d.result.Seq, d.accepted, "", enc); err != nil {
		return err
	}
	return t.setHighWater(c.Replica, d.result.Seq)
}

// sameRecord reports whether two ops name the same record.
func sameRecord(a, b *crdt.Op) bool {
	return a.Record == b.Record && a.Collection == b.Collection && a.Team == b.Team
}

// updateClock moves the server clock past the accepted ops, each checked
// against the skew by admission: once, to the latest of them (the clock
// keeps the greatest time it was updated with). Should the wall clock have
// gone back since the check, so that the latest no longer passes, each op
// is tried as before, and those still within the skew count.
func (t *txnState) updateClock(accepted []crdt.Op, latest crdt.Timestamp) {
	if t.e.clock.Update(latest) == nil {
		return
	}
	for i := range accepted {
		_ = t.e.clock.Update(accepted[i].ID.Time)
	}
}

// setOwner caches team as the owner of collection/id, allocating the
// cache key only when the entry is new or changes (it is set once per
// accepted op).
func (t *txnState) setOwner(coll, id, team string) {
	t.keyBuf = store.AppendTeamIndexKey(t.keyBuf[:0], coll, id)
	if cur, ok := t.owners[string(t.keyBuf)]; ok && cur == team {
		return
	}
	t.owners[string(t.keyBuf)] = team
}
