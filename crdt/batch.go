package crdt

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	gosync "sync"

	"github.com/vmihailenco/msgpack/v5"
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
	rec    *Record
	ops    []batchOp
	fields []batchField // the fields the queued ops name, in the order first named
	// index finds a field in fields by name once they are many and not
	// in name order; before that, a binary or linear search does.
	index      map[string]int32
	unsorted   bool          // fields are not in strictly increasing name order
	outOfOrder bool          // some op's ID is not above the one queued before it
	preds      bool          // some queued op names preds
	bufs       *batchBuffers // the pool's holder of ops and fields, while b has them
}

// batchOp is a queued op: Add has checked that its team, collection and
// record are the batch's, so only what merging needs is kept.
type batchOp struct {
	ID    OpID
	Kind  Kind
	fi    int32 // the op's field: its index in Batch.fields
	Value msgpack.RawMessage
	Pred  []OpID
}

// batchField is one field the queued ops name.
type batchField struct {
	name        string
	typ         FieldType
	nOps, nPred int32 // ops queued for the field, and preds they name
}

// fewFields is how many fields a batch finds by a linear search before it
// builds an index (when they are not in name order).
const fewFields = 8

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
	r := b.rec
	if err := r.checkOp(op); err != nil {
		return err
	}
	if b.bufs == nil && b.ops == nil {
		b.takeBuffers()
	}
	typ := op.Kind.FieldType()
	fi, found := b.find(op.Field)
	if found {
		if t := b.fields[fi].typ; t != typ {
			return fmt.Errorf("field %q: %w: %s and %s", op.Field, ErrKindMismatch, t, typ)
		}
	} else {
		fi = b.addField(op.Field, typ)
	}
	f := &b.fields[fi]
	f.nOps++
	f.nPred += int32(len(op.Pred))
	if len(op.Pred) > 0 {
		b.preds = true
	}
	if n := len(b.ops); n > 0 && b.ops[n-1].ID.Compare(op.ID) >= 0 {
		b.outOfOrder = true
	}
	b.ops = append(b.ops, batchOp{ID: op.ID, Kind: op.Kind, fi: fi, Value: op.Value, Pred: op.Pred})
	return nil
}

// find returns the index of the named field in b.fields.
func (b *Batch) find(name string) (int32, bool) {
	n := len(b.fields)
	switch {
	case n == 0:
		return 0, false
	case b.fields[n-1].name == name: // the commonest: the field named last
		return int32(n - 1), true
	case b.index != nil:
		i, ok := b.index[name]
		return i, ok
	case !b.unsorted:
		if name > b.fields[n-1].name {
			return 0, false
		}
		i, ok := slices.BinarySearchFunc(b.fields, name, func(f batchField, name string) int { return strings.Compare(f.name, name) })
		return int32(i), ok
	}
	for i := range b.fields {
		if b.fields[i].name == name {
			return int32(i), true
		}
	}
	return 0, false
}

// addField adds a field new to the batch and returns its index.
func (b *Batch) addField(name string, typ FieldType) int32 {
	n := len(b.fields)
	if n > 0 && !b.unsorted && name < b.fields[n-1].name {
		b.unsorted = true
	}
	b.fields = append(b.fields, batchField{name: name, typ: typ})
	switch {
	case b.index != nil:
		b.index[name] = int32(n)
	case b.unsorted && n+1 > fewFields:
		b.index = make(map[string]int32, 2*(n+1))
		for i := range b.fields {
			b.index[b.fields[i].name] = int32(i)
		}
	}
	return int32(n)
}

// Reset empties the batch, dropping the ops queued, and points it at r,
// keeping its buffers for the next record.
func (b *Batch) Reset(r *Record) {
	b.empty()
	b.rec = r
}

// Flush merges every queued op into the record and empties the batch. It
// cannot fail: Add has checked every op. A record with no fields may get
// a new Fields map, sized for the fields the ops create.
func (b *Batch) Flush() {
	if len(b.ops) > 0 {
		b.rec.applyBatch(b)
	}
	b.empty()
	b.putBuffers()
}

// batchBuffers are a flushed batch's queues, for the next batch to fill:
// most batches are one record's ops of one change, made, flushed and
// dropped, and would otherwise grow their queues from nothing each time.
type batchBuffers struct {
	ops    []batchOp
	fields []batchField
}

// mergeScratch is applyOps's room for the fields' new entries and preds,
// which the record never keeps (applyDelta copies them).
type mergeScratch struct {
	deltas []fieldDelta
	adds   []Entry
	rems   []OpID
}

var scratchPool = gosync.Pool{New: func() any { return new(mergeScratch) }}

var batchPool = gosync.Pool{New: func() any {
	return &batchBuffers{ops: make([]batchOp, 0, 4*fewFields), fields: make([]batchField, 0, 4*fewFields)}
}}

// grow returns s resliced to n zero elements, reallocated if too short.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// maxPooledOps bounds the queues kept for reuse.
const maxPooledOps = 4096

// takeBuffers gives b empty queues from the pool.
func (b *Batch) takeBuffers() {
	bb := batchPool.Get().(*batchBuffers)
	b.ops, b.fields = bb.ops[:0], bb.fields[:0]
	bb.ops, bb.fields = nil, nil
	b.bufs = bb
}

// putBuffers returns b's emptied queues to the pool.
func (b *Batch) putBuffers() {
	bb := b.bufs
	if bb == nil || cap(b.ops) > maxPooledOps || cap(b.fields) > maxPooledOps {
		return
	}
	bb.ops, bb.fields = b.ops[:0], b.fields[:0]
	b.ops, b.fields, b.bufs = nil, nil, nil
	batchPool.Put(bb)
}

// empty drops the queued ops, keeping the buffers.
func (b *Batch) empty() {
	clear(b.ops)
	b.ops = b.ops[:0]
	clear(b.fields)
	b.fields = b.fields[:0]
	b.index = nil
	b.unsorted, b.outOfOrder, b.preds = false, false, false
}

// fieldDelta is what a batch's new ops do to one field.
type fieldDelta struct {
	name  string
	typ   FieldType
	fresh bool    // some op for it is new, not a copy
	adds  []Entry // new entries
	rems  []OpID  // IDs named in preds
}

// applyBatch merges the batch's checked ops into r.
func (r *Record) applyBatch(b *Batch) {
	ops := b.ops
	if len(ops) == 1 {
		o := &ops[0]
		op := Op{ID: o.ID, Field: b.fields[o.fi].name, Kind: o.Kind, Value: o.Value, Pred: o.Pred}
		r.applyOne(&op)
		return
	}
	if !b.outOfOrder && !b.preds && r.blank() {
		r.applyNew(b)
		return
	}
	r.applyOps(ops, b.fields, !b.outOfOrder)
}

// blank reports whether r holds nothing at all: no field, clock, skipped
// or delete-seen ID.
func (r *Record) blank() bool {
	return len(r.Fields) == 0 && len(r.Clock) == 0 && len(r.Skipped) == 0 && len(r.DeleteSeen) == 0
}

// applyNew is applyOps for a blank record and ops in strictly increasing
// ID order that name no preds, the shape of a record's first change: no
// op is a copy, nothing is removed or pending, and each field's entries
// are its ops in order, so the fields are built directly, in one
// allocation for the fields and one for their entries. It leaves exactly
// the state applyOps does (TestBatchNewRecordPath).
func (r *Record) applyNew(b *Batch) {
	fs := make([]Field, len(b.fields))
	nAdds := 0
	for i := range b.fields {
		nAdds += int(b.fields[i].nOps)
	}
	es := make([]Entry, nAdds)
	off := 0
	for i := range b.fields {
		fs[i].Type = b.fields[i].typ
		n := int(b.fields[i].nOps)
		fs[i].Entries = es[off : off : off+n] // capacity limited: an append to one field copies
		off += n
	}
	var dotBuf [4]Seen
	dots := dotBuf[:0]
	for i := range b.ops {
		o := &b.ops[i]
		if o.Kind != KindRemove {
			f := &fs[o.fi]
			f.Entries = append(f.Entries, Entry{ID: o.ID, Value: o.Value})
		}
		dots = addDot(dots, o.ID)
	}
	if len(r.Fields) == 0 {
		r.Fields = make(map[string]*Field, len(fs))
	}
	for i := range fs {
		if len(fs[i].Entries) == 0 {
			fs[i].Entries = nil // a field only removes named: as applyDelta leaves it
		}
		r.Fields[b.fields[i].name] = &fs[i]
	}
	r.advance(dots)
}

// applyOps merges checked ops into r (see Batch); fields are the fields
// the ops name (batchOp.fi). Ops whose ID the clock already covers are
// copies of applied ops: they change nothing but the value of an entry
// whose ID a faulty replica reused. Each new op moves its replica's clock
// entry up to it; its preds remove the live entries they name from its
// field, and those not yet applied become pending there; its entry goes
// live unless a pred named it first.
func (r *Record) applyOps(ops []batchOp, queued []batchField, sorted bool) {
	if !sorted { // sorted: IDs strictly increasing, no two ops alike

		slices.SortStableFunc(ops, func(a, b batchOp) int {
			if c := a.ID.Compare(b.ID); c != 0 {
				return c
			}
			if a.fi != b.fi {
				return strings.Compare(queued[a.fi].name, queued[b.fi].name)
			}
			return bytes.Compare(b.Value, a.Value) // greatest value first
		})
	}
	if r.Fields == nil {
		r.Fields = map[string]*Field{}
	}
	// Room for every field's new entries and preds, carved per field
	// from scratch the pool keeps.
	nPred := 0
	for i := range queued {
		nPred += int(queued[i].nPred)
	}
	sc := scratchPool.Get().(*mergeScratch)
	fields := grow(sc.deltas, len(queued))
	es := grow(sc.adds, len(ops))
	ps := grow(sc.rems, nPred)
	defer func() {
		clear(fields)
		clear(es)
		if cap(es) <= maxPooledOps && cap(ps) <= maxPooledOps && cap(fields) <= maxPooledOps {
			sc.deltas, sc.adds, sc.rems = fields[:0], es[:0], ps[:0]
			scratchPool.Put(sc)
		}
	}()
	eo, po := 0, 0
	for i := range queued {
		f := &queued[i]
		fields[i] = fieldDelta{name: f.name, typ: f.typ, adds: es[eo : eo : eo+int(f.nOps)], rems: ps[po : po : po+int(f.nPred)]}
		eo, po = eo+int(f.nOps), po+int(f.nPred)
	}
	var dotBuf [4]Seen
	dots := dotBuf[:0]
	var named []OpID // preds of writes to DeletedField
	for i := range ops {
		op := &ops[i]
		if i > 0 && ops[i-1].ID == op.ID && ops[i-1].fi == op.fi {
			continue // the same op twice in the batch: the greatest value is first
		}
		d := &fields[op.fi]
		if r.Covers(op.ID) {
			r.refreshValue(d.name, op.Kind, op.ID, op.Value)
			continue
		}
		d.fresh = true
		if op.Kind != KindRemove {
			d.adds = append(d.adds, Entry{ID: op.ID, Value: op.Value})
		}
		d.rems = append(d.rems, op.Pred...)
		if d.name == DeletedField {
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
	for i := range fields {
		d := &fields[i]
		if !d.fresh {
			continue // named only by copies: as it is
		}
		removed = r.applyDelta(d, d.name, removed)
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
func hasDot(ops []batchOp, id OpID) bool {
	_, ok := slices.BinarySearchFunc(ops, id, func(o batchOp, id OpID) int { return o.ID.Compare(id) })
	return ok
}

// applyOne is applyOps for one op, without the batch's bookkeeping.
func (r *Record) applyOne(op *Op) {
	if r.Fields == nil {
		r.Fields = map[string]*Field{}
	}
	if r.Covers(op.ID) {
		r.refreshValue(op.Field, op.Kind, op.ID, op.Value)
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
	removed := r.applyDelta(&d, op.Field, nil)
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
func (r *Record) refreshValue(field string, kind Kind, id OpID, value msgpack.RawMessage) {
	if kind == KindRemove {
		return
	}
	f := r.Fields[field]
	if i, ok := f.find(id); ok && bytes.Compare(value, f.Entries[i].Value) > 0 {
		f.Entries[i].Value = value
	}
}

// applyDelta merges one field's new entries and preds into r, after the
// clock has moved past the batch, and returns removed with the live
// entries it dropped appended.
//
// The field's name comes apart from d, so that storing it as a map key
// does not send d's entries to the heap with it.
func (r *Record) applyDelta(d *fieldDelta, name string, removed []OpID) []OpID {
	f := r.Fields[name]
	if f == nil {
		f = &Field{Type: d.typ}
		r.Fields[name] = f
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
