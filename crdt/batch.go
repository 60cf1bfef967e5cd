package crdt

import (
	"bytes"
	"slices"
)

// Batch collects ops for one record and merges them into it at once: each
// field touched is merged once, however many ops name it. Applying N ops to
// one field costs O(N log N) (sort the batch) plus one O(N + M) pass over
// the field's M existing entries, where a rebuild of the field per op
// would be O(N·M) and so quadratic in the length of a log appended to in
// one change.
//
// The result is exactly that of applying the same ops one by one in ID
// order: Add refuses what Apply would (malformed op, another record, a
// kind that does not fit the field as the record and the ops added before
// leave it). The record does not show the ops added until Flush; a Batch
// is not safe for concurrent use.
type Batch struct {
	rec   *Record
	ops   []Op
	types map[string]FieldType // types of fields the queued ops create
}

// NewBatch returns an empty batch of ops for r.
func NewBatch(r *Record) *Batch {
	return &Batch{rec: r}
}

// Record returns the record the batch merges into.
func (b *Batch) Record() *Record { return b.rec }

// Len returns the number of ops added since the last Flush.
func (b *Batch) Len() int { return len(b.ops) }

// Add checks op as Record.Apply does and queues it; the record changes at
// Flush. An op Add refuses is not queued, and the error wraps what Apply's
// would (ErrMalformed, ErrWrongRecord, ErrKindMismatch).
func (b *Batch) Add(op *Op) error {
	if err := b.rec.checkOp(op, b.types); err != nil {
		return err
	}
	if b.rec.Fields[op.Field] == nil {
		if b.types == nil {
			b.types = map[string]FieldType{}
		}
		b.types[op.Field] = op.Kind.FieldType()
	}
	b.ops = append(b.ops, *op)
	return nil
}

// Flush merges every queued op into the record and empties the batch. It
// cannot fail: Add has checked every op.
func (b *Batch) Flush() {
	b.rec.applyOps(b.ops)
	clear(b.ops)
	b.ops = b.ops[:0]
	clear(b.types)
}

// fieldDelta is what a batch's new ops do to one field.
type fieldDelta struct {
	name string
	typ  FieldType
	adds []Entry // new entries
	rems []OpID  // IDs named in preds
}

// applyOps merges checked ops into r (see Batch). Ops whose ID the clock
// already covers are copies of applied ops: they change nothing but the
// value of an entry whose ID a faulty replica reused. Each new op moves its
// replica's clock entry up to it; its preds remove the live entries they
// name from its field, and those not yet applied become pending there; its
// entry goes live unless a pred named it first.
func (r *Record) applyOps(ops []Op) {
	if len(ops) == 0 {
		return
	}
	if len(ops) == 1 {
		r.applyOne(&ops[0])
		return
	}
	if len(ops) > 1 {
		slices.SortStableFunc(ops, func(a, b Op) int {
			if c := a.ID.Compare(b.ID); c != 0 {
				return c
			}
			if a.Field != b.Field {
				if a.Field < b.Field {
					return -1
				}
				return 1
			}
			return bytes.Compare(b.Value, a.Value) // greatest value first
		})
	}
	if r.Fields == nil {
		r.Fields = map[string]*Field{}
	}
	var deltas []*fieldDelta // few fields per batch: a linear lookup
	var dots []Seen
	var named []OpID // preds of writes to DeletedField
	var last *fieldDelta
	for i := range ops {
		op := &ops[i]
		if i > 0 && ops[i-1].ID == op.ID && ops[i-1].Field == op.Field {
			continue // the same op twice in the batch: the greatest value is first
		}
		if r.Covers(op.ID) {
			r.refreshValue(op)
			continue
		}
		d := last
		if d == nil || d.name != op.Field {
			d = nil
			for _, x := range deltas {
				if x.name == op.Field {
					d = x
					break
				}
			}
			if d == nil {
				d = &fieldDelta{name: op.Field, typ: op.Kind.FieldType()}
				deltas = append(deltas, d)
			}
			last = d
		}
		if op.Kind != KindRemove {
			d.adds = append(d.adds, Entry{ID: op.ID, Value: op.Value})
		}
		d.rems = append(d.rems, op.Pred...)
		if op.Field == DeletedField {
			named = append(named, op.Pred...)
		}
		dots = addDot(dots, op.ID)
	}
	if len(dots) == 0 {
		return
	}
	var old *Record // the context before the batch, for DeleteSeen
	if len(r.DeleteSeen) > 0 {
		old = &Record{Clock: slices.Clone(r.Clock), Skipped: slices.Clone(r.Skipped)}
	}
	r.advance(dots)
	if len(r.Skipped) > 0 {
		// Skipped ops that arrive now are applied.
		r.Skipped = slices.DeleteFunc(r.Skipped, func(id OpID) bool { return hasDot(ops, id) })
		if len(r.Skipped) == 0 {
			r.Skipped = nil
		}
	}
	var removed []OpID // live entries this batch overwrote or removed
	for _, d := range deltas {
		removed = r.applyDelta(d, removed)
	}
	// Pending IDs the new clock covers have arrived elsewhere or never
	// will (their replica has moved past them): they are settled.
	for _, f := range r.Fields {
		if len(f.Pending) > 0 {
			f.Pending = slices.DeleteFunc(f.Pending, r.Covers)
		}
	}
	if len(r.DeleteSeen) > 0 || len(named) > 0 {
		r.updateDeleteSeen(old, sortIDs(removed), sortIDs(named))
	}
}

// hasDot reports whether sorted ops hold op id.
func hasDot(ops []Op, id OpID) bool {
	_, ok := slices.BinarySearchFunc(ops, id, func(o Op, id OpID) int { return o.ID.Compare(id) })
	return ok
}

// applyOne is applyOps for one op, without the batch's bookkeeping.
func (r *Record) applyOne(op *Op) {
	if r.Fields == nil {
		r.Fields = map[string]*Field{}
	}
	if r.Covers(op.ID) {
		r.refreshValue(op)
		return
	}
	var one [1]Entry
	d := fieldDelta{name: op.Field, typ: op.Kind.FieldType(), rems: op.Pred}
	if op.Kind != KindRemove {
		one[0] = Entry{ID: op.ID, Value: op.Value}
		d.adds = one[:]
	}
	for i := 1; i < len(d.rems); i++ {
		if d.rems[i-1].Compare(d.rems[i]) >= 0 {
			d.rems = slices.Clone(d.rems) // never reorder the caller's pred
			break
		}
	}
	var old *Record
	if len(r.DeleteSeen) > 0 {
		old = &Record{Clock: slices.Clone(r.Clock), Skipped: slices.Clone(r.Skipped)}
	}
	dot := [1]Seen{{Replica: op.ID.Replica, Time: op.ID.Time}}
	r.advance(dot[:])
	if len(r.Skipped) > 0 {
		r.Skipped = slices.DeleteFunc(r.Skipped, func(id OpID) bool { return id == op.ID })
		if len(r.Skipped) == 0 {
			r.Skipped = nil
		}
	}
	removed := r.applyDelta(&d, nil)
	for _, f := range r.Fields {
		if len(f.Pending) > 0 {
			f.Pending = slices.DeleteFunc(f.Pending, r.Covers)
		}
	}
	var named []OpID
	if op.Field == DeletedField {
		named = sortIDs(slices.Clone(op.Pred))
	}
	if len(r.DeleteSeen) > 0 || len(named) > 0 {
		r.updateDeleteSeen(old, sortIDs(removed), named)
	}
}

// addDot raises dots to include id's time for its replica.
func addDot(dots []Seen, id OpID) []Seen {
	for i := range dots {
		if dots[i].Replica == id.Replica {
			dots[i].Time = max(dots[i].Time, id.Time)
			return dots
		}
	}
	return append(dots, Seen{Replica: id.Replica, Time: id.Time})
}

// refreshValue applies a copy of an applied op: if its entry is live with
// a bytewise smaller value (a faulty replica reused the ID), the greater
// value is kept, as merge keeps it.
func (r *Record) refreshValue(op *Op) {
	if op.Kind == KindRemove {
		return
	}
	f := r.Fields[op.Field]
	if i, ok := f.find(op.ID); ok && bytes.Compare(op.Value, f.Entries[i].Value) > 0 {
		f.Entries[i].Value = op.Value
	}
}

// applyDelta merges one field's new entries and preds into r, after the
// clock has moved past the batch, and returns removed with the live
// entries it dropped appended.
func (r *Record) applyDelta(d *fieldDelta, removed []OpID) []OpID {
	f := r.Fields[d.name]
	if f == nil {
		f = &Field{Type: d.typ}
		r.Fields[d.name] = f
	}
	rems := sortIDs(d.rems)
	adds := sortEntries(d.adds)
	// A new entry a pred named (in this batch, or pending from before)
	// never goes live.
	if len(rems) > 0 || len(f.Pending) > 0 {
		adds = slices.DeleteFunc(adds, func(e Entry) bool { return containsID(rems, e.ID) || f.pending(e.ID) })
	}
	n := len(f.Entries)
	if len(rems) == 0 && len(adds) == 0 {
		return removed
	}
	if len(rems) == 0 && (n == 0 || len(adds) > 0 && f.Entries[n-1].ID.Compare(adds[0].ID) < 0) {
		// Only new entries after every live one: append in place. Fields
		// are never shared between Records (Clone and Merge copy), so no
		// other state sees it.
		f.Entries = append(f.Entries, adds...)
		return removed
	}
	if len(adds) <= 1 && (len(adds) == 0 || n == 0 || f.Entries[n-1].ID.Compare(adds[0].ID) < 0) {
		// Drop the named entries in place and append the new one after
		// them (the common register write: it names the values it saw and
		// is newer than all of them).
		out := f.Entries[:0]
		for _, e := range f.Entries {
			if containsID(rems, e.ID) {
				if len(r.DeleteSeen) > 0 {
					removed = append(removed, e.ID)
				}
				continue
			}
			out = append(out, e)
		}
		clear(f.Entries[len(out):])
		f.Entries = append(out, adds...)
		r.addPending(f, rems)
		return removed
	}
	out := make([]Entry, 0, n+len(adds))
	i, j := 0, 0
	for i < n || j < len(adds) {
		if j == len(adds) || i < n && f.Entries[i].ID.Compare(adds[j].ID) < 0 {
			e := f.Entries[i]
			i++
			if containsID(rems, e.ID) {
				if len(r.DeleteSeen) > 0 {
					removed = append(removed, e.ID)
				}
				continue
			}
			out = append(out, e)
			continue
		}
		out = append(out, adds[j])
		j++
	}
	f.Entries = out
	r.addPending(f, rems)
	return removed
}

// addPending adds to f the preds in rems that name ops not yet applied.
func (r *Record) addPending(f *Field, rems []OpID) {
	added := false
	for _, p := range rems {
		if !r.Covers(p) && !f.pending(p) {
			f.Pending = append(f.Pending, p)
			added = true
		}
	}
	if added && len(f.Pending) > 1 {
		f.Pending = sortIDs(f.Pending)
	}
}

// updateDeleteSeen keeps DeleteSeen to the IDs a delete or restore named
// that are live or not yet applied: it adds named and drops the IDs this
// batch removed, and those it newly applied without their going live.
func (r *Record) updateDeleteSeen(old *Record, removed, named []OpID) {
	out := r.DeleteSeen[:0:0]
	for _, s := range r.DeleteSeen {
		switch {
		case containsID(removed, s):
		case !old.Covers(s) && r.Covers(s) && !r.liveAnywhere(s):
		default:
			out = append(out, s)
		}
	}
	var add []OpID
	for _, p := range named {
		if containsID(out, p) {
			continue
		}
		if !r.Covers(p) || r.liveAnywhere(p) {
			add = append(add, p)
		}
	}
	out = unionIDs(out, add)
	if len(out) == 0 {
		out = nil
	}
	r.DeleteSeen = out
}
