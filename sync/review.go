package sync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
	"github.com/doorstep-health/doorstep/sync/review"
)

// HistoryEntry is one merged op of a record with who pushed it and when the
// server received it.
type HistoryEntry = review.HistoryEntry

// QuarantinedOp is an op the engine did not merge.
type QuarantinedOp = review.QuarantinedOp

// view runs fn in a read transaction as an in-flight call.
func (e *Engine) view(ctx context.Context, fn func(txn store.Tx) error) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.inflight.Done()
	if err := ctx.Err(); err != nil {
		return err
	}
	return e.kv.View(ctx, fn)
}

func scope(c Caller, team string) error {
	if !c.InTeam(team) {
		return fmt.Errorf("%w: team %q", ErrForbidden, team)
	}
	return nil
}

// Record returns the merged state of one record of the caller's teams.
func (e *Engine) Record(ctx context.Context, c Caller, ref api.RecordRef) (*crdt.Record, error) {
	if err := scope(c, ref.Team); err != nil {
		return nil, err
	}
	var rec *crdt.Record
	err := e.view(ctx, func(txn store.Tx) error {
		val, err := txn.Get(store.RecordKey(ref.Team, ref.Collection, ref.ID))
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: record %s/%s/%s", ErrNotFound, ref.Team, ref.Collection, ref.ID)
		} else if err != nil {
			return err
		}
		rec, err = store.DecodeRecord(val)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	return rec, nil
}

// History returns every op merged into a record, in the order the server
// received them (oldest first), with author and receive time; overwritten
// values are kept. It reads the record's history index and the log entries
// it names.
func (e *Engine) History(ctx context.Context, c Caller, ref api.RecordRef) ([]HistoryEntry, error) {
	if err := scope(c, ref.Team); err != nil {
		return nil, err
	}
	var out []HistoryEntry
	err := e.view(ctx, func(txn store.Tx) error {
		prefix := store.HistoryPrefix(ref.Team, ref.Collection, ref.ID)
		it := txn.Iterate(store.IterOptions{Prefix: prefix, KeysOnly: true})
		defer it.Close()
		for it.Seek(prefix); it.Valid(); it.Next() {
			pos, err := store.LogPos(it.Key())
			if err != nil {
				return err
			}
			if out, err = appendHistoryAt(out, txn, ref, pos); err != nil {
				return err
			}
		}
		if err := it.Err(); err != nil {
			return err
		}
		if len(out) == 0 {
			return fmt.Errorf("%w: record %s/%s/%s", ErrNotFound, ref.Team, ref.Collection, ref.ID)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	return out, nil
}

// appendHistoryAt appends ref's ops in the log entry at pos, with the
// entry's author, time and reason.
func appendHistoryAt(out []HistoryEntry, txn store.Tx, ref api.RecordRef, pos uint64) ([]HistoryEntry, error) {
	le, err := store.GetLogEntry(txn, ref.Team, pos)
	if err != nil {
		return out, err
	}
	for _, op := range le.Ops {
		if op.Collection == ref.Collection && op.Record == ref.ID {
			out = append(out, HistoryEntry{Op: op, Author: le.Author, Received: time.UnixMilli(le.ReceivedMS).UTC(), Reason: le.Reason})
		}
	}
	return out, nil
}

// HistoryPage is History in pages: the record's ops from the changes at
// log positions after after, oldest first, stopping once it holds limit
// entries (0 means DefaultHistoryLimit, at most MaxHistoryLimit) at the
// end of a change, so a change's ops are never split. next is the
// position to pass as after for the following page, or 0 when there is
// none. A record with no history at all is ErrNotFound.
func (e *Engine) HistoryPage(ctx context.Context, c Caller, ref api.RecordRef, after uint64, limit int) (out []HistoryEntry, next uint64, err error) {
	if err := scope(c, ref.Team); err != nil {
		return nil, 0, err
	}
	switch {
	case limit <= 0:
		limit = DefaultHistoryLimit
	case limit > MaxHistoryLimit:
		limit = MaxHistoryLimit
	}
	err = e.view(ctx, func(txn store.Tx) error {
		prefix := store.HistoryPrefix(ref.Team, ref.Collection, ref.ID)
		it := txn.Iterate(store.IterOptions{Prefix: prefix, KeysOnly: true})
		defer it.Close()
		found := false
		for it.Seek(store.HistoryKey(ref.Team, ref.Collection, ref.ID, after+1)); it.Valid(); it.Next() {
			pos, err := store.LogPos(it.Key())
			if err != nil {
				return err
			}
			if len(out) >= limit {
				next = pos - 1
				return nil
			}
			found = true
			if out, err = appendHistoryAt(out, txn, ref, pos); err != nil {
				return err
			}
		}
		if err := it.Err(); err != nil {
			return err
		}
		if !found && after == 0 {
			return fmt.Errorf("%w: record %s/%s/%s", ErrNotFound, ref.Team, ref.Collection, ref.ID)
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("history: %w", err)
	}
	return out, next, nil
}

// History page sizes, in entries.
const (
	DefaultHistoryLimit = 1000
	MaxHistoryLimit     = 5000
)

// ChangedSince returns the records of team changed at or after since
// (server receive time), least recently changed first, at most limit (0
// means DefaultPullLimit). Each record appears once, at its last change.
func (e *Engine) ChangedSince(ctx context.Context, c Caller, team string, since time.Time, limit int) ([]api.RecordRef, error) {
	if err := scope(c, team); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = DefaultPullLimit
	}
	var out []api.RecordRef
	err := e.view(ctx, func(txn store.Tx) error {
		prefix := store.ChangedPrefix(team)
		it := txn.Iterate(store.IterOptions{Prefix: prefix, KeysOnly: true})
		defer it.Close()
		for it.Seek(store.ChangedKey(team, max(since.UnixMilli(), 0), "", "")); it.Valid() && len(out) < limit; it.Next() {
			_, ref, err := store.ParseChangedKey(it.Key())
			if err != nil {
				return err
			}
			out = append(out, api.RecordRef{Team: ref.Team, Collection: ref.Collection, ID: ref.ID})
		}
		return it.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("changed since: %w", err)
	}
	return out, nil
}

// Conflicts returns the team's records with a register in conflict or an
// edit concurrent with a delete, in key order.
func (e *Engine) Conflicts(ctx context.Context, c Caller, team string) ([]api.RecordRef, error) {
	if err := scope(c, team); err != nil {
		return nil, err
	}
	var out []api.RecordRef
	err := e.view(ctx, func(txn store.Tx) error {
		prefix := store.ConflictPrefix(team)
		it := txn.Iterate(store.IterOptions{Prefix: prefix, KeysOnly: true})
		defer it.Close()
		for it.Seek(prefix); it.Valid(); it.Next() {
			ref, err := store.ParseConflictKey(it.Key())
			if err != nil {
				return err
			}
			out = append(out, api.RecordRef{Team: ref.Team, Collection: ref.Collection, ID: ref.ID})
		}
		return it.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("conflicts: %w", err)
	}
	return out, nil
}

// Resolve writes value to a register as the server's own replica, with
// pred naming every live value, authored by c.User, through the same
// durable path as a push; it returns the new record state. For field
// crdt.DeletedField value must be a msgpack boolean: true deletes the
// record and false restores it, either way with pred naming every live
// entry of every field, which settles a delete conflict.
func (e *Engine) Resolve(ctx context.Context, c Caller, ref api.RecordRef, field string, value msgpack.RawMessage) (*crdt.Record, error) {
	return e.ResolveWithReason(ctx, c, ref, field, value, "")
}

// MaxReasonLen bounds a resolution's reason, in bytes.
const MaxReasonLen = review.MaxReasonLen

// ResolveWithReason is Resolve with the coordinator's reason for the
// choice, kept in the resolution's log entry and shown in its history
// (HistoryEntry.Reason). A reason longer than MaxReasonLen is ErrInvalid.
func (e *Engine) ResolveWithReason(ctx context.Context, c Caller, ref api.RecordRef, field string, value msgpack.RawMessage, reason string) (*crdt.Record, error) {
	if len(reason) > MaxReasonLen {
		return nil, fmt.Errorf("resolve: %w: reason longer than %d bytes", ErrInvalid, MaxReasonLen)
	}
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.inflight.Done()
	if err := scope(c, ref.Team); err != nil {
		return nil, err
	}
	r := &request{kind: reqResolve, caller: c, ref: ref, field: field, value: value, reason: reason}
	if err := e.submit(ctx, r); err != nil {
		return nil, fmt.Errorf("resolve %s/%s/%s %s: %w", ref.Team, ref.Collection, ref.ID, field, err)
	}
	return r.rec, nil
}

// The msgpack encodings of false and true.
const (
	msgpcodeFalse = 0xc2
	msgpcodeTrue  = 0xc3
)

// resolve runs in the committer: it reads the record inside the commit
// transaction, so pred names exactly the live values at commit time.
func (t *txnState) resolve(r *request) error {
	ref := r.ref
	owner, err := t.owner(ref.Collection, ref.ID)
	if err != nil {
		return err
	}
	if owner != ref.Team {
		r.err = fmt.Errorf("%w: record %s/%s/%s", ErrNotFound, ref.Team, ref.Collection, ref.ID)
		return nil
	}
	rs, err := t.record(ref.Team, ref.Collection, ref.ID)
	if err != nil {
		return err
	}
	if f := rs.rec.Field(r.field); f != nil && f.Type != crdt.Register {
		r.err = fmt.Errorf("%w: field %q is a %s, not a register", ErrInvalid, r.field, f.Type)
		return nil
	}
	if f := rs.rec.Field(r.field); f.Conflict() && t.e.rules != nil && t.e.rules.Clinical(ref.Collection, r.field) &&
		!t.e.rules.MaySettle(ref.Collection, r.field, r.caller.Role) {
		r.err = fmt.Errorf("%w: role %q may not settle a conflict on clinical field %s.%s", ErrForbidden, r.caller.Role, ref.Collection, r.field)
		return nil
	}
	ts, err := t.serverStamp(rs.rec)
	if err != nil {
		return err
	}
	id := crdt.OpID{Time: ts, Replica: t.e.server}
	var op crdt.Op
	if r.field == crdt.DeletedField {
		// Settling a delete conflict: delete or restore having seen every
		// live entry of every field, so no edit is left unseen.
		if len(r.value) != 1 || (r.value[0] != msgpcodeTrue && r.value[0] != msgpcodeFalse) {
			r.err = fmt.Errorf("%w: %s must be a boolean", ErrInvalid, crdt.DeletedField)
			return nil
		}
		if r.value[0] == msgpcodeTrue {
			op = rs.rec.Delete(id)
		} else {
			op = rs.rec.Restore(id)
		}
	} else {
		op = rs.rec.Write(id, r.field, r.value)
	}
	if err := op.Validate(); err != nil {
		r.err = fmt.Errorf("%w: %v", ErrInvalid, err)
		return nil
	}
	if v := t.e.validator; v != nil {
		if err := v.ValidateOp(&op); err != nil {
			r.err = fmt.Errorf("%w: %v", ErrInvalid, err)
			return nil
		}
	}
	if rf, err := t.merge(&op); err != nil {
		return err
	} else if rf != nil {
		r.err = fmt.Errorf("%w: %v", ErrInvalid, rf)
		return nil
	}
	t.flushBatches()
	seq, err := t.highWater(t.e.server)
	if err != nil {
		return err
	}
	seq++
	if err := t.writeLogReason(r.caller.User, t.e.server, seq, []crdt.Op{op}, r.reason, nil); err != nil {
		return err
	}
	if err := t.setHighWater(t.e.server, seq); err != nil {
		return err
	}
	r.rec = rs.rec.Clone()
	return nil
}

// Quarantined lists the quarantine, oldest first, at most limit entries (0
// means DefaultPullLimit).
func (e *Engine) Quarantined(ctx context.Context, limit int) ([]QuarantinedOp, error) {
	if limit <= 0 {
		limit = DefaultPullLimit
	}
	var out []QuarantinedOp
	err := e.view(ctx, func(txn store.Tx) error {
		prefix := store.QuarantinePrefix()
		it := txn.Iterate(store.IterOptions{Prefix: prefix, Batch: 100})
		defer it.Close()
		for it.Seek(prefix); it.Valid() && len(out) < limit; it.Next() {
			id, err := store.QuarantineID(it.Key())
			if err != nil {
				return err
			}
			var q store.QuarantineEntry
			if err := itValue(it, func(v []byte) error { return store.Decode(v, &q) }); err != nil {
				return err
			}
			out = append(out, quarantinedOp(id, &q, e.bounds.QuarantineTTL))
		}
		return it.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	return out, nil
}

func quarantinedOp(id uint64, q *store.QuarantineEntry, ttl time.Duration) QuarantinedOp {
	received := time.UnixMilli(q.ReceivedMS).UTC()
	return QuarantinedOp{
		ID: id, Op: q.Op, Author: q.Author, Replica: q.Replica, Seq: q.Seq,
		Code: api.Code(q.Code), Reason: q.Reason, Received: received,
		Reapplicable: q.Reapplicable, Count: int(max(q.Count, 1)), Bytes: int(q.Bytes),
		Expires: received.Add(ttl),
	}
}

// Reapply re-checks a quarantined op against the current validator and
// clock and, if it now passes, merges it (as its original author) and
// removes it from the quarantine. An op that still fails stays, with the
// new reason, and the error wraps ErrInvalid; a refused op cannot be
// re-applied.
func (e *Engine) Reapply(ctx context.Context, id uint64) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.inflight.Done()
	r := &request{kind: reqReapply, qid: id}
	if err := e.submit(ctx, r); err != nil {
		return fmt.Errorf("reapply %d: %w", id, err)
	}
	return nil
}

func (t *txnState) reapply(r *request) error {
	q, err := t.quarantineEntry(r)
	if err != nil || q == nil {
		return err
	}
	if !q.Reapplicable {
		r.err = fmt.Errorf("%w: op was refused (%s), not quarantined", ErrInvalid, q.Code)
		return nil
	}
	op := &q.Op
	rf, err := t.admission().checkOp(txnView{t}, op, nil, true, nil)
	if err != nil {
		return err
	}
	replica, seq := q.Replica, q.Seq
	if rf == nil {
		rs, err := t.record(op.Team, op.Collection, op.Record)
		if err != nil {
			return err
		}
		late, err := t.lateCopy(rs.rec, op)
		if err != nil {
			return err
		}
		if late != nil {
			// The record has merged later ops of the same device: the
			// original would reach other replicas out of its writer's
			// order, so the server merges a copy as its own new op that
			// replaces the original (see crdt.Record.Skip).
			hw, err := t.highWater(t.e.server)
			if err != nil {
				return err
			}
			op, replica, seq = late, t.e.server, hw+1
			if err := t.setHighWater(t.e.server, seq); err != nil {
				return err
			}
		}
	}
	if rf == nil {
		// The quarantine does not keep the pusher's role: a re-applied op
		// never settles a clinical conflict; it may only add its value.
		if rf, err = t.admission().clinicalCheck(txnView{t}, op, q.Replica, ""); err != nil {
			return err
		}
	}
	if rf == nil {
		if mrf, err := t.merge(op); err != nil {
			return err
		} else if mrf != nil {
			rf = &refusal{code: api.CodeInvalidOp, detail: mrf.Error(), quarantined: true}
		}
	}
	if rf != nil {
		q.Code, q.Reason = string(rf.code), rf.detail
		v, err := store.Encode(q)
		if err != nil {
			return err
		}
		r.err = fmt.Errorf("%w: %s: %s", ErrInvalid, rf.code, rf.detail)
		return store.PutQuarantineEntry(t.txn, r.qid, q, v)
	}
	t.flushBatches()
	if err := t.writeLog(q.Author, replica, seq, []crdt.Op{*op}); err != nil {
		return err
	}
	if err := store.DeleteQuarantineEntry(t.txn, r.qid, q); err != nil {
		return err
	}
	return t.unchargeQuarantine(q)
}

// lateCopy returns, for a quarantined op being reapplied after the record
// merged later ops of its device (its clock passes the op, which it holds
// as skipped), a new op of the server replica doing the same with the
// original named in pred so that it replaces the original wherever the
// original is (on the device that wrote it). An op some later pred already
// overwrote or removed (pending in its field) needs no copy: merged as it
// is, it changes nothing anywhere. It returns nil when the original can be
// merged as it is.
func (t *txnState) lateCopy(rec *crdt.Record, op *crdt.Op) (*crdt.Op, error) {
	if !rec.ClockPasses(op.ID) || rec.Covers(op.ID) || rec.Has(op.Field, op.ID) {
		return nil, nil
	}
	ts, err := t.serverStamp(rec)
	if err != nil {
		return nil, err
	}
	c := *op
	c.ID = crdt.OpID{Time: ts, Replica: t.e.server}
	switch op.Kind {
	case crdt.KindRemove:
		// A remove leaves no entry to replace.
	default:
		c.Pred = append(slices.Clone(op.Pred), op.ID)
		slices.SortFunc(c.Pred, crdt.OpID.Compare)
		c.Pred = slices.Compact(c.Pred)
	}
	return &c, nil
}

// newerThan returns a time for a new op of the server replica on rec: the
// server's clock reading, or just after the newest op the record holds if
// the clock is behind it (a wall clock set back over a restart, further
// than the clock will adopt). The server's ops must reach every replica in
// ID order per record (see package crdt), and an op must be newer than
// the values it overwrites.
// serverStamp returns the time for a new op of the server replica on rec:
// newer than rec's ops (newerThan) and than every op the server has
// stamped before, in this process or another sharing the store
// (store.KeyServerClock, read in this serialized write transaction and
// written back at flush).
func (t *txnState) serverStamp(rec *crdt.Record) (crdt.Timestamp, error) {
	if !t.srvClockRead {
		v, err := store.GetU64Key(t.txn, store.KeyServerClock)
		if err != nil {
			return 0, fmt.Errorf("read server clock: %w", err)
		}
		t.srvClock, t.srvClockRead = crdt.Timestamp(v), true
		_ = t.e.clock.Update(t.srvClock) // refused when too far ahead; the max below still holds
	}
	ts := max(newerThan(t.e.clock, rec), t.srvClock+1)
	t.srvClock, t.srvClockDirty = ts, true
	return ts, nil
}

func newerThan(c *crdt.Clock, rec *crdt.Record) crdt.Timestamp {
	_ = c.Update(rec.MaxTime()) // refused when too far ahead of the wall clock
	return max(c.Now(), rec.MaxTime()+1)
}

// quarantineEntry reads the quarantine entry r names; when there is none it
// sets r.err to ErrNotFound and returns nil, nil.
func (t *txnState) quarantineEntry(r *request) (*store.QuarantineEntry, error) {
	q, err := store.GetQuarantineEntry(t.txn, r.qid)
	if errors.Is(err, store.ErrNotFound) {
		r.err = fmt.Errorf("%w: quarantine entry %d", ErrNotFound, r.qid)
		return nil, nil
	}
	return q, err
}
