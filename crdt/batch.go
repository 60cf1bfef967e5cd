package crdt

import (
	"bytes"
	"fmt"
	"slices"
)

// Batch collects ops for one record and merges them into it at once: each
// field touched is merged once, however many ops name it. Applying N ops to
// one field costs O(N log N) (sort the batch) plus one O(N + M) merge with
// the field's M existing entries, where applying them one by one with
// Record.Apply rebuilds the field for every op, O(N·M) and so quadratic in
// the length of a log appended to in one change.
//
// The result is exactly that of applying the same ops one by one in the
// order added: Add refuses what Apply would (malformed op, another record,
// a kind that does not fit the field as the record and the ops added
// before leave it), and merge is commutative, associative and idempotent,
// so the order within the batch does not matter. The record does not show
// the ops added until Flush; a Batch is not safe for concurrent use.
type Batch struct {
	rec    *Record
	fields map[string]*batchField
	order  []string // fields in first-add order
	n      int
}

type batchField struct {
	typ     FieldType
	entries []Entry
	removed []OpID
}

// NewBatch returns an empty batch of ops for r.
func NewBatch(r *Record) *Batch {
	return &Batch{rec: r}
}

// Record returns the record the batch merges into.
func (b *Batch) Record() *Record { return b.rec }

// Len returns the number of ops added since the last Flush.
func (b *Batch) Len() int { return b.n }

// Add checks op as Record.Apply does and queues it; the record changes at
// Flush. An op Add refuses is not queued, and the error wraps what Apply's
// would (ErrMalformed, ErrWrongRecord, ErrKindMismatch).
func (b *Batch) Add(op *Op) error {
	r := b.rec
	if err := op.Validate(); err != nil {
		return err
	}
	if op.Collection != r.Collection || op.Record != r.ID || op.Team != r.Team {
		return fmt.Errorf("%w: op %s for %s/%s/%s applied to %s/%s/%s", ErrWrongRecord,
			op.ID, op.Team, op.Collection, op.Record, r.Team, r.Collection, r.ID)
	}
	if op.Field == DeletedField && op.Kind != KindWrite {
		return fmt.Errorf("%w: %s must be written, not %s", ErrKindMismatch, DeletedField, op.Kind)
	}
	typ := op.Kind.FieldType()
	bf := b.fields[op.Field]
	if bf == nil {
		if cur := r.Fields[op.Field]; cur != nil && cur.Type != typ {
			return fmt.Errorf("field %q: %w: %s and %s", op.Field, ErrKindMismatch, cur.Type, typ)
		}
		if b.fields == nil {
			b.fields = map[string]*batchField{}
		}
		bf = &batchField{typ: typ}
		b.fields[op.Field] = bf
		b.order = append(b.order, op.Field)
	} else if bf.typ != typ {
		return fmt.Errorf("field %q: %w: %s and %s", op.Field, ErrKindMismatch, bf.typ, typ)
	}
	if op.Kind != KindRemove {
		bf.entries = append(bf.entries, Entry{ID: op.ID, Value: op.Value})
	}
	bf.removed = append(bf.removed, op.Pred...)
	b.n++
	return nil
}

// Flush merges every queued op into the record and empties the batch. It
// cannot fail: Add has checked every op.
func (b *Batch) Flush() {
	for _, name := range b.order {
		bf := b.fields[name]
		delta := &Field{Type: bf.typ, Entries: sortEntries(bf.entries), Removed: sortIDs(bf.removed)}
		if err := b.rec.mergeField(name, delta); err != nil {
			// Add checked the type against the record and the batch, and
			// only Merge (never a Batch) changes a field's type.
			panic(fmt.Sprintf("crdt: batch flush: %v", err))
		}
	}
	clear(b.fields)
	b.order, b.n = b.order[:0], 0
}

// sortEntries sorts entries by ID and keeps one entry per ID, the one with
// the bytewise greatest value, as merge does for an ID seen twice.
func sortEntries(es []Entry) []Entry {
	slices.SortFunc(es, func(a, b Entry) int {
		if c := a.ID.Compare(b.ID); c != 0 {
			return c
		}
		return bytes.Compare(b.Value, a.Value) // greatest value first
	})
	return slices.CompactFunc(es, func(a, b Entry) bool { return a.ID == b.ID })
}

// sortIDs sorts ids and drops duplicates.
func sortIDs(ids []OpID) []OpID {
	if len(ids) == 0 {
		return nil
	}
	slices.SortFunc(ids, OpID.Compare)
	return slices.Compact(ids)
}
