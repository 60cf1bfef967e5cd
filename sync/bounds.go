package sync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

// Bounds keep every record syncable and the quarantine small. A zero field
// takes its value from DefaultBounds. docs/SECURITY.md lists them.
type Bounds struct {
	// MaxRecordBytes bounds one record's encoded state. A pushed op that
	// would grow a record past it is refused (api.CodeRecordTooLarge), so
	// that a bootstrap page, which always carries at least one whole
	// record, stays far below what a device decodes (64 MiB in the SDK).
	MaxRecordBytes int
	// MaxFieldBytes bounds one field's encoded state inside a record (a
	// log of case notes, a set): an op past it is refused the same way.
	MaxFieldBytes int
	// QuarantineDeviceEntries and QuarantineDeviceBytes bound the
	// quarantine entries, and the bytes of their stored values, charged to
	// one pushing device: reapplicable ops stored whole and summaries of
	// refused ones.
	QuarantineDeviceEntries int
	QuarantineDeviceBytes   int
	// QuarantineTeamEntries and QuarantineTeamBytes bound the reapplicable
	// (schema or clock) ops quarantined for one team, whoever pushed them.
	// Refused ops are not charged to the team they name: a device must not
	// be able to fill another team's quota.
	QuarantineTeamEntries int
	QuarantineTeamBytes   int
	// QuarantineTTL is how long a quarantine entry is kept; admins see
	// each entry's expiry. The committer drops expired entries every
	// QuarantineSweep.
	QuarantineTTL   time.Duration
	QuarantineSweep time.Duration
}

// DefaultBounds are the bounds an Engine uses unless told otherwise.
var DefaultBounds = Bounds{
	MaxRecordBytes:          4 << 20,
	MaxFieldBytes:           2 << 20,
	QuarantineDeviceEntries: 2000,
	QuarantineDeviceBytes:   4 << 20,
	QuarantineTeamEntries:   20000,
	QuarantineTeamBytes:     64 << 20,
	QuarantineTTL:           30 * 24 * time.Hour,
	QuarantineSweep:         time.Minute,
}

func (b Bounds) orDefault() Bounds {
	d := DefaultBounds
	pick := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	pick(&b.MaxRecordBytes, d.MaxRecordBytes)
	pick(&b.MaxFieldBytes, d.MaxFieldBytes)
	pick(&b.QuarantineDeviceEntries, d.QuarantineDeviceEntries)
	pick(&b.QuarantineDeviceBytes, d.QuarantineDeviceBytes)
	pick(&b.QuarantineTeamEntries, d.QuarantineTeamEntries)
	pick(&b.QuarantineTeamBytes, d.QuarantineTeamBytes)
	if b.QuarantineTTL <= 0 {
		b.QuarantineTTL = d.QuarantineTTL
	}
	if b.QuarantineSweep <= 0 {
		b.QuarantineSweep = d.QuarantineSweep
	}
	return b
}

// errRecordTooLarge is the refusal of an op that would grow its record or
// field past the bounds.
var errRecordTooLarge = errors.New("record too large")

// Encoded-size estimates, upper bounds of what one op adds to a record's
// crdt.MarshalRecord form: an entry is a 2-key map with a 24-byte bin ID
// and the value; a removed ID is a 24-byte bin; a new field is its name
// and a small map.
const (
	entryBytes   = 1 + 2 + 2 + crdt.OpIDSize + 2
	removedBytes = 2 + crdt.OpIDSize
	fieldBytes   = 16
)

func opCost(op *crdt.Op) int {
	return len(op.Value) + entryBytes + removedBytes*len(op.Pred)
}

// encodedFieldSize estimates a field state's encoded size from above.
func encodedFieldSize(name string, f *crdt.Field) int {
	if f == nil {
		return 0
	}
	n := len(name) + fieldBytes + removedBytes*len(f.Pending)
	for _, e := range f.Entries {
		n += len(e.Value) + entryBytes
	}
	return n
}

// checkSize refuses an op that would grow a record (rec, its size
// estimate sz) or its field past the bounds, and adds the op's cost to sz
// when it fits. Sizes only grow within one transaction (overwritten
// values are not subtracted until the record is stored and read again),
// so the check errs towards refusing. A field's estimate starts from the
// record's state the first time the field is touched; a new field's
// overhead counts from then, whether or not the op fits.
func checkSize(b Bounds, sz *recSize, rec *crdt.Record, op *crdt.Op) error {
	if sz.fields == nil {
		sz.fields = map[string]int{}
	}
	fs, ok := sz.fields[op.Field]
	if !ok {
		fs = encodedFieldSize(op.Field, rec.Fields[op.Field])
		if fs == 0 {
			fs = len(op.Field) + fieldBytes
			sz.total += fs
		}
		sz.fields[op.Field] = fs
	}
	cost := opCost(op)
	switch {
	case sz.total+cost > b.MaxRecordBytes:
		return fmt.Errorf("%w: %s/%s would grow past %d bytes", errRecordTooLarge, op.Collection, op.Record, b.MaxRecordBytes)
	case fs+cost > b.MaxFieldBytes:
		return fmt.Errorf("%w: field %q of %s/%s would grow past %d bytes", errRecordTooLarge, op.Field, op.Collection, op.Record, b.MaxFieldBytes)
	}
	sz.total += cost
	sz.fields[op.Field] = fs + cost
	return nil
}

// usage is a quarantine quota counter read (and maybe changed) in this
// transaction.
type usage struct {
	key   []byte
	u     store.QuarantineUsage
	dirty bool
}

func (t *txnState) usageOf(key []byte) (*usage, error) {
	if u, ok := t.usage[string(key)]; ok {
		return u, nil
	}
	u := &usage{key: key}
	val, err := t.txn.Get(key)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("read quarantine usage: %w", err)
	default:
		if u.u, err = store.DecodeQuarantineUsage(val); err != nil {
			return nil, err
		}
	}
	if t.usage == nil {
		t.usage = map[string]*usage{}
	}
	t.usage[string(key)] = u
	return u, nil
}

// usageFits reports whether one more entry of size fits u within the
// quota.
func usageFits(u store.QuarantineUsage, size, maxEntries, maxBytes int) bool {
	return u.Entries+1 <= uint64(maxEntries) && u.Bytes+uint64(size) <= uint64(maxBytes)
}

func usageAdd(u *store.QuarantineUsage, size uint64) {
	u.Entries++
	u.Bytes += size
}

func (u *usage) add(size uint64) {
	usageAdd(&u.u, size)
	u.dirty = true
}

func (u *usage) sub(size uint64) {
	u.u.Entries -= min(u.u.Entries, 1)
	u.u.Bytes -= min(u.u.Bytes, size)
	u.dirty = true
}

// storeQuarantine stores an entry admission fitted in the quotas
// (admission.fitQuarantine) under the next quarantine ID, charges it, and
// indexes a reapplicable op by ID so later ops may name it in pred.
func (t *txnState) storeQuarantine(w *quarantineWrite) error {
	q := &w.entry
	dev, err := t.usageOf(store.QuarantineDeviceKey(q.Replica))
	if err != nil {
		return err
	}
	var team *usage
	if q.Reapplicable {
		if team, err = t.usageOf(store.QuarantineTeamKey(q.Op.Team)); err != nil {
			return err
		}
	}
	t.qid++
	if err := store.PutQuarantineEntry(t.txn, t.qid, q, w.value); err != nil {
		return err
	}
	dev.add(q.Charged)
	if team != nil {
		team.add(q.Charged)
	}
	return nil
}

// unchargeQuarantine gives back what a deleted entry was charged.
func (t *txnState) unchargeQuarantine(q *store.QuarantineEntry) error {
	if q.Charged == 0 {
		return nil
	}
	dev, err := t.usageOf(store.QuarantineDeviceKey(q.Replica))
	if err != nil {
		return err
	}
	dev.sub(q.Charged)
	if q.Reapplicable {
		team, err := t.usageOf(store.QuarantineTeamKey(q.Op.Team))
		if err != nil {
			return err
		}
		team.sub(q.Charged)
	}
	return nil
}

// flushUsage writes the quota counters changed in this transaction.
func (t *txnState) flushUsage() error {
	for _, u := range t.usage {
		if !u.dirty {
			continue
		}
		var err error
		if u.u == (store.QuarantineUsage{}) {
			err = t.txn.Delete(u.key)
		} else {
			err = t.set(u.key, u.u.Encode())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// refusedSummaries gathers a change's refused ops into one summary per
// code: refused ops are kept as what was refused and why, never as their
// values, so a flood of them costs a few small entries, not its bytes.
type refusedSummaries struct {
	order []api.Code
	by    map[api.Code]*store.QuarantineEntry
}

func (s *refusedSummaries) add(op *crdt.Op, code api.Code, detail string) {
	if s.by == nil {
		s.by = map[api.Code]*store.QuarantineEntry{}
	}
	q, ok := s.by[code]
	if !ok {
		q = &store.QuarantineEntry{
			Op:   crdt.Op{ID: op.ID, Team: op.Team, Collection: op.Collection, Record: op.Record, Field: op.Field, Kind: op.Kind},
			Code: string(code), Reason: truncate(detail, 256),
		}
		s.by[code] = q
		s.order = append(s.order, code)
	}
	q.Count++
	q.Bytes += uint64(len(op.Value))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// maxExpirePerCommit bounds the entries one sweep deletes, so a sweep is
// one small transaction; the next sweep continues.
const maxExpirePerCommit = 5000

// ExpireQuarantine deletes the quarantine entries older than
// Bounds.QuarantineTTL (the committer also does this every
// QuarantineSweep) and returns how many it deleted.
func (e *Engine) ExpireQuarantine(ctx context.Context) (int, error) {
	if err := e.enter(); err != nil {
		return 0, err
	}
	defer e.inflight.Done()
	r := &request{kind: reqExpire}
	if err := e.submit(ctx, r); err != nil {
		return 0, fmt.Errorf("expire quarantine: %w", err)
	}
	return r.expired, nil
}

// expire runs in the committer. Quarantine IDs grow with receive time, so
// the oldest entries come first and the scan stops at the first one still
// live.
func (t *txnState) expire(r *request) error {
	cutoff := t.now.Add(-t.e.bounds.QuarantineTTL).UnixMilli()
	type dead struct {
		key []byte
		q   store.QuarantineEntry
	}
	var gone []dead
	prefix := store.QuarantinePrefix()
	it := t.txn.Iterate(store.IterOptions{Prefix: prefix, Batch: 100})
	for it.Seek(prefix); it.Valid() && len(gone) < maxExpirePerCommit; it.Next() {
		var q store.QuarantineEntry
		if err := itValue(it, func(v []byte) error { return store.Decode(v, &q) }); err != nil {
			it.Close()
			return fmt.Errorf("quarantine entry %q: %w", it.Key(), err)
		}
		if q.ReceivedMS > cutoff {
			break
		}
		gone = append(gone, dead{bytes.Clone(it.Key()), q})
	}
	if err := it.Err(); err != nil {
		it.Close()
		return err
	}
	it.Close()
	for i := range gone {
		d := &gone[i]
		qid, err := store.QuarantineID(d.key)
		if err != nil {
			return err
		}
		if err := store.DeleteQuarantineEntry(t.txn, qid, &d.q); err != nil {
			return err
		}
		if err := t.unchargeQuarantine(&d.q); err != nil {
			return err
		}
	}
	r.expired = len(gone)
	return nil
}
