package crdt

import (
	"bytes"
	"fmt"
	"slices"
	"sort"

	"github.com/vmihailenco/msgpack/v5"
)

// Record is the merged state of one record: a map of fields, each a CRDT,
// and the record's causal context. A record belongs to exactly one team,
// fixed by its first op.
//
// The zero Record is not useful; use NewRecord. Methods that change a Record
// modify it in place; Merge, Apply and Batch.Flush are the only such
// methods.
type Record struct {
	Collection string            `msgpack:"c"`
	ID         string            `msgpack:"r"`
	Team       string            `msgpack:"t"`
	Fields     map[string]*Field `msgpack:"f"`
	// Clock is the causal context: for every replica that wrote to the
	// record, the highest op time applied, sorted by replica. Ops of one
	// replica reach a record in the order of their IDs (see the package
	// doc), so the state has applied every op of that replica up to it.
	Clock []Seen `msgpack:"v"`
	// DeleteSeen lists the live (or not yet applied) IDs that some write
	// to DeletedField named in its pred: what a delete or restore saw. A
	// deleted record's live entries missing from it are DeleteConflicts.
	DeleteSeen []OpID `msgpack:"d,omitempty"`
	// Skipped lists ops the state knows it has not applied although its
	// clock may have passed them: ops a server held back (quarantined)
	// while applying later ops of the same replica. The clock covers
	// every op of its replica up to its time except these. Sorted.
	Skipped []OpID `msgpack:"s,omitempty"`
}

// Seen is one replica's entry in a record's clock.
type Seen struct {
	Replica ReplicaID
	Time    Timestamp
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

// seen returns the clock's time for replica rep.
func seenIn(clock []Seen, rep ReplicaID) (Timestamp, bool) {
	if len(clock) <= 8 { // a record's few writers: compare, do not search
		for i := range clock {
			if clock[i].Replica == rep {
				return clock[i].Time, true
			}
		}
		return 0, false
	}
	i, ok := slices.BinarySearchFunc(clock, rep, func(s Seen, r ReplicaID) int { return bytes.Compare(s.Replica[:], r[:]) })
	if !ok {
		return 0, false
	}
	return clock[i].Time, true
}

func coveredBy(clock []Seen, id OpID) bool {
	t, ok := seenIn(clock, id.Replica)
	return ok && id.Time <= t
}

// Covers reports whether the state has applied op id: its replica's clock
// entry is at or past it, and it is not Skipped. An applied op is live or
// was overwritten or removed.
func (r *Record) Covers(id OpID) bool {
	return coveredBy(r.Clock, id) && (len(r.Skipped) == 0 || !containsID(r.Skipped, id))
}

// ClockPasses reports whether the clock has passed op id, applied or not:
// the state has applied an op of id's replica at or after it. An op the
// clock passes but does not cover (a Skipped one) arrives out of its
// writer's order if applied now.
func (r *Record) ClockPasses(id OpID) bool { return coveredBy(r.Clock, id) }

// Skip records that op id is held back: it is not applied, and the state
// keeps saying so (Covers is false for it) even once it applies later ops
// of the same replica, so that it can still be applied later and merges
// keep it where another state has it. A sync server calls it for an op it
// quarantines. It does nothing for an op already applied.
func (r *Record) Skip(id OpID) {
	if r.Covers(id) || containsID(r.Skipped, id) {
		return
	}
	i, _ := slices.BinarySearchFunc(r.Skipped, id, OpID.Compare)
	r.Skipped = slices.Insert(r.Skipped, i, id)
}

// DropSkipped forgets which ops the state holds back: the clock then covers
// them, as if they had been applied and replaced, so a merge removes them
// from any state that holds them. A device does this with states a server
// sends (the server's quarantine is the server's business: a device is
// told per op, and a reapplied op comes back as the server's copy), which
// also keeps the states of devices that saw the same ops byte-equal.
func (r *Record) DropSkipped() {
	if len(r.Skipped) == 0 {
		return
	}
	r.Skipped = nil
	for _, f := range r.Fields {
		if f != nil && len(f.Pending) > 0 {
			f.Pending = slices.DeleteFunc(f.Pending, r.Covers)
		}
	}
	r.DeleteSeen = r.keepDeleteSeen(r.DeleteSeen)
}

// IsEmpty reports whether the state holds nothing: no field, clock or
// skipped op.
func (r *Record) IsEmpty() bool {
	return len(r.Fields) == 0 && len(r.Clock) == 0 && len(r.Skipped) == 0
}

// Has reports whether the state knows op id on the named field: live,
// applied (and since overwritten or removed), or named in a pred before it
// arrived. The sync engine asks it whether an op is already merged and
// whether a pred exists.
func (r *Record) Has(field string, id OpID) bool {
	return r.Covers(id) || r.Fields[field].HasEntry(id) || r.Fields[field].pending(id)
}

// MaxTime returns the highest op time in the record's clock: every op
// applied to the record is at or before it.
func (r *Record) MaxTime() Timestamp {
	var t Timestamp
	for _, s := range r.Clock {
		t = max(t, s.Time)
	}
	return t
}

// advance raises the clock to include the given times (one per replica).
func (r *Record) advance(dots []Seen) {
	for _, d := range dots {
		i, ok := slices.BinarySearchFunc(r.Clock, d.Replica, func(s Seen, r ReplicaID) int { return bytes.Compare(s.Replica[:], r[:]) })
		if ok {
			r.Clock[i].Time = max(r.Clock[i].Time, d.Time)
			continue
		}
		r.Clock = slices.Insert(r.Clock, i, d)
	}
}

// Apply merges one op into the record. Applying the same op twice gives
// the same state, and ops in any order that keeps each replica's ops in
// the order of their IDs give the same state. The op must pass Validate
// and name this record and its team. It is Batch with one op.
func (r *Record) Apply(op *Op) error {
	if err := r.checkOp(op); err != nil {
		return err
	}
	r.applyOne(op)
	return nil
}

// checkOp checks op as Apply does (a Batch checks it against the ops it
// holds as well).
func (r *Record) checkOp(op *Op) error {
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
	if len(r.Fields) > 0 {
		typ := op.Kind.FieldType()
		if cur := r.Fields[op.Field]; cur != nil && cur.Type != typ {
			return fmt.Errorf("field %q: %w: %s and %s", op.Field, ErrKindMismatch, cur.Type, typ)
		}
	}
	return nil
}

// Merge merges another state of the same record into r. Both must be
// valid states (see Validate); o is not modified and shares nothing with r
// afterwards but entry values, which are never modified.
func (r *Record) Merge(o *Record) error {
	if o.Collection != r.Collection || o.ID != r.ID || o.Team != r.Team {
		return fmt.Errorf("%w: merging %s/%s/%s into %s/%s/%s", ErrWrongRecord,
			o.Team, o.Collection, o.ID, r.Team, r.Collection, r.ID)
	}
	for name, f := range o.Fields {
		if f == nil {
			return fmt.Errorf("%w: field %q is nil", ErrMalformed, name)
		}
		if name == DeletedField && f.Type != Register {
			return fmt.Errorf("%w: %s is a register, not a %s", ErrKindMismatch, DeletedField, f.Type)
		}
		if cur := r.Fields[name]; cur != nil && cur.Type != f.Type {
			return fmt.Errorf("field %q: %w: %s and %s", name, ErrKindMismatch, cur.Type, f.Type)
		}
	}
	if r.Fields == nil {
		r.Fields = map[string]*Field{}
	}
	// Entries first, against both contexts as they were.
	for name, fb := range o.Fields {
		fa := r.Fields[name]
		if fa == nil {
			fa = &Field{Type: fb.Type}
			r.Fields[name] = fa
		}
		fa.Entries = mergeEntries(fa, fb, r.Covers, o.Covers)
	}
	// An op stays skipped while neither side has applied it.
	if len(r.Skipped) > 0 || len(o.Skipped) > 0 {
		var sk []OpID
		for _, id := range unionIDs(r.Skipped, o.Skipped) {
			if !r.Covers(id) && !o.Covers(id) {
				sk = append(sk, id)
			}
		}
		r.Skipped = sk
	}
	// A field only r holds keeps its entries: o applied none of its ops
	// (an applied op leaves its field behind).
	clock := mergeClocks(r.Clock, o.Clock)
	r.Clock = clock
	for name, fa := range r.Fields {
		if fb := o.Fields[name]; fb != nil && len(fb.Pending) > 0 {
			fa.Pending = unionIDs(fa.Pending, fb.Pending)
		}
		fa.Pending = slices.DeleteFunc(fa.Pending, r.Covers)
	}
	if len(r.DeleteSeen) > 0 || len(o.DeleteSeen) > 0 {
		r.DeleteSeen = r.keepDeleteSeen(unionIDs(r.DeleteSeen, o.DeleteSeen))
	}
	return nil
}

// mergeEntries returns the live entries of the merge of fa (under clock
// ca) and fb (under cb): an entry both hold stays (the bytewise greater
// value, should a faulty replica have reused an ID); an entry one holds
// stays unless the other has applied it (and so overwritten or removed
// it) or names it as pending.
func mergeEntries(fa, fb *Field, ca, cb func(OpID) bool) []Entry {
	a, b := fa.Entries, fb.Entries
	if len(b) == 0 && len(fa.Entries) == 0 {
		return nil
	}
	out := make([]Entry, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		var c int
		switch {
		case j == len(b):
			c = -1
		case i == len(a):
			c = 1
		default:
			c = a[i].ID.Compare(b[j].ID)
		}
		switch {
		case c < 0:
			if e := a[i]; !cb(e.ID) && !fb.pending(e.ID) {
				out = append(out, e)
			}
			i++
		case c > 0:
			if e := b[j]; !ca(e.ID) && !fa.pending(e.ID) {
				out = append(out, e)
			}
			j++
		default:
			e := a[i]
			if bytes.Compare(b[j].Value, e.Value) > 0 {
				e = b[j]
			}
			out = append(out, e)
			i, j = i+1, j+1
		}
	}
	return out
}

func mergeClocks(a, b []Seen) []Seen {
	out := make([]Seen, 0, max(len(a), len(b)))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		var c int
		switch {
		case j == len(b):
			c = -1
		case i == len(a):
			c = 1
		default:
			c = bytes.Compare(a[i].Replica[:], b[j].Replica[:])
		}
		switch {
		case c < 0:
			out, i = append(out, a[i]), i+1
		case c > 0:
			out, j = append(out, b[j]), j+1
		default:
			out = append(out, Seen{Replica: a[i].Replica, Time: max(a[i].Time, b[j].Time)})
			i, j = i+1, j+1
		}
	}
	return out
}

// keepDeleteSeen returns the IDs of ids (sorted) that belong in
// DeleteSeen: those live in some field or not yet applied. An applied ID
// that is not live can never be live again, so whether a delete saw it no
// longer matters.
func (r *Record) keepDeleteSeen(ids []OpID) []OpID {
	if len(ids) == 0 {
		return nil
	}
	out := ids[:0]
	for _, id := range ids {
		if !r.Covers(id) || r.liveAnywhere(id) {
			out = append(out, id)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func (r *Record) liveAnywhere(id OpID) bool {
	for _, f := range r.Fields {
		if f.HasEntry(id) {
			return true
		}
	}
	return false
}

// Clone returns a deep copy of r.
func (r *Record) Clone() *Record {
	c := NewRecord(r.Team, r.Collection, r.ID)
	for name, f := range r.Fields {
		c.Fields[name] = f.clone()
	}
	c.Clock = slices.Clone(r.Clock)
	c.DeleteSeen = slices.Clone(r.DeleteSeen)
	c.Skipped = slices.Clone(r.Skipped)
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
// live entries that no delete or restore had seen: edits made
// concurrently with the delete, typically on a tablet that was offline. They
// are kept, not dropped, until someone restores or deletes the record again
// having seen them. It returns nil for a record that is not deleted.
func (r *Record) DeleteConflicts() []string {
	if !r.Deleted() {
		return nil
	}
	var names []string
	for _, name := range r.FieldNames() {
		if name == DeletedField {
			continue
		}
		for _, e := range r.Fields[name].Entries {
			if !containsID(r.DeleteSeen, e.ID) {
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
	var names []string // sorted below: no sorted copy of every name first
	for name, f := range r.Fields {
		if f.Conflict() {
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
