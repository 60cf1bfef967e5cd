package crdt

import (
	"fmt"
	"slices"
	"sort"

	"github.com/vmihailenco/msgpack/v5"
)

// Record is the merged state of one record: a map of fields, each a CRDT.
// A record belongs to exactly one team, fixed by its first op.
//
// The zero Record is not useful; use NewRecord. Methods that change a Record
// modify it in place; Merge and Apply are the only such methods.
type Record struct {
	Collection string            `msgpack:"c"`
	ID         string            `msgpack:"r"`
	Team       string            `msgpack:"t"`
	Fields     map[string]*Field `msgpack:"f"`
}

// NewRecord returns an empty record.
func NewRecord(team, collection, id string) *Record {
	return &Record{Collection: collection, ID: id, Team: team, Fields: map[string]*Field{}}
}

// Field returns the named field's state, or nil if no op has touched it.
func (r *Record) Field(name string) *Field { return r.Fields[name] }

// FieldNames returns the names of the fields with state, sorted.
func (r *Record) FieldNames() []string {
	names := make([]string, 0, len(r.Fields))
	for n := range r.Fields {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Apply merges one op into the record. Applying the same op twice, or ops in
// any order, gives the same state. The op must pass Validate and name this
// record and its team.
func (r *Record) Apply(op *Op) error {
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
	if r.appendInPlace(op) {
		return nil
	}
	return r.mergeField(op.Field, fieldOf(op))
}

// appendInPlace applies op without rebuilding its field when that is the
// same as merging it: an add or append (no pred) whose ID sorts after every
// live entry and that nothing has removed. It is the common case of a
// replica's own new entry, and makes it O(log M) in the field's M entries
// rather than O(M). The entry list grows in place; Fields are never shared
// between Records (Clone copies them), so no other state sees it.
func (r *Record) appendInPlace(op *Op) bool {
	f := r.Fields[op.Field]
	if f == nil || f.Type != op.Kind.FieldType() || op.Kind == KindRemove || op.Kind == KindWrite || len(op.Pred) > 0 {
		return false
	}
	if n := len(f.Entries); n > 0 && f.Entries[n-1].ID.Compare(op.ID) >= 0 {
		return false
	}
	if _, gone := slices.BinarySearchFunc(f.Removed, op.ID, OpID.Compare); gone {
		return false
	}
	f.Entries = append(f.Entries, Entry{ID: op.ID, Value: op.Value})
	return true
}

// Merge merges another state of the same record into r.
func (r *Record) Merge(o *Record) error {
	if o.Collection != r.Collection || o.ID != r.ID || o.Team != r.Team {
		return fmt.Errorf("%w: merging %s/%s/%s into %s/%s/%s", ErrWrongRecord,
			o.Team, o.Collection, o.ID, r.Team, r.Collection, r.ID)
	}
	for _, name := range o.FieldNames() {
		if err := r.mergeField(name, o.Fields[name]); err != nil {
			return err
		}
	}
	return nil
}

func (r *Record) mergeField(name string, f *Field) error {
	if f == nil {
		return fmt.Errorf("%w: field %q is nil", ErrMalformed, name)
	}
	if name == DeletedField && f.Type != Register {
		return fmt.Errorf("%w: %s is a register, not a %s", ErrKindMismatch, DeletedField, f.Type)
	}
	cur, ok := r.Fields[name]
	if !ok {
		cur = &Field{Type: f.Type}
	}
	m, err := merge(cur, f)
	if err != nil {
		return fmt.Errorf("field %q: %w", name, err)
	}
	if r.Fields == nil {
		r.Fields = map[string]*Field{}
	}
	r.Fields[name] = m
	return nil
}

// Clone returns a deep copy of r.
func (r *Record) Clone() *Record {
	c := NewRecord(r.Team, r.Collection, r.ID)
	for name, f := range r.Fields {
		c.Fields[name] = &Field{Type: f.Type, Entries: slices.Clone(f.Entries), Removed: slices.Clone(f.Removed)}
	}
	return c
}

// Deleted reports whether the record's delete register currently reads true.
// Concurrent delete and restore writes resolve by the winner, like any
// register; DeleteConflicts reports edits the deleter had not seen.
func (r *Record) Deleted() bool {
	e, ok := r.Fields[DeletedField].Winner()
	if !ok {
		return false
	}
	var deleted bool
	return msgpack.Unmarshal(e.Value, &deleted) == nil && deleted
}

// DeleteConflicts returns, for a deleted record, the names of fields holding
// live entries that the winning delete had not seen: edits made
// concurrently with the delete, typically on a tablet that was offline. They
// are kept, not dropped, until someone restores or deletes the record again
// having seen them. It returns nil for a record that is not deleted.
func (r *Record) DeleteConflicts() []string {
	if !r.Deleted() {
		return nil
	}
	seen := r.Fields[DeletedField].Removed
	var names []string
	for _, name := range r.FieldNames() {
		if name == DeletedField {
			continue
		}
		for _, e := range r.Fields[name].Entries {
			if _, ok := slices.BinarySearchFunc(seen, e.ID, OpID.Compare); !ok {
				names = append(names, name)
				break
			}
		}
	}
	return names
}

// Conflicts returns the names of register fields in conflict, sorted, and
// for a deleted record the fields edited concurrently with the delete.
func (r *Record) Conflicts() []string {
	var names []string
	for _, name := range r.FieldNames() {
		if r.Fields[name].Conflict() {
			names = append(names, name)
		}
	}
	names = append(names, r.DeleteConflicts()...)
	slices.Sort(names)
	return slices.Compact(names)
}

// The builders below return the op a replica makes for an edit, with pred
// taken from what this state has seen. They do not apply it; callers apply
// the op and send it.

func (r *Record) op(id OpID, field string, kind Kind, value msgpack.RawMessage, pred []OpID) Op {
	return Op{ID: id, Team: r.Team, Collection: r.Collection, Record: r.ID, Field: field, Kind: kind, Value: value, Pred: pred}
}

// Write returns a register write of value that overwrites every value this
// state holds for the field, resolving any conflict there.
func (r *Record) Write(id OpID, field string, value msgpack.RawMessage) Op {
	return r.op(id, field, KindWrite, value, r.Fields[field].Live())
}

// Add returns a set add of elem.
func (r *Record) Add(id OpID, field string, elem msgpack.RawMessage) Op {
	return r.op(id, field, KindAdd, elem, nil)
}

// Remove returns a set remove of every add of elem this state has seen.
// Adds of elem made concurrently elsewhere survive it (add wins).
func (r *Record) Remove(id OpID, field string, elem msgpack.RawMessage) Op {
	return r.op(id, field, KindRemove, elem, r.Fields[field].Tags(elem))
}

// Append returns a log append of value.
func (r *Record) Append(id OpID, field string, value msgpack.RawMessage) Op {
	return r.op(id, field, KindAppend, value, nil)
}

// Delete returns a write of true to the delete register whose pred names
// every live entry of every field: everything the deleter saw. Entries it
// did not see show up in DeleteConflicts.
func (r *Record) Delete(id OpID) Op {
	return r.op(id, DeletedField, KindWrite, MustValue(true), r.allLive())
}

// Restore returns a write of false to the delete register, having seen
// every live entry.
func (r *Record) Restore(id OpID) Op {
	return r.op(id, DeletedField, KindWrite, MustValue(false), r.allLive())
}

func (r *Record) allLive() []OpID {
	var ids []OpID
	for _, f := range r.Fields {
		ids = append(ids, f.Live()...)
	}
	slices.SortFunc(ids, OpID.Compare)
	return ids
}
