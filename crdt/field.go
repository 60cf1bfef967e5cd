package crdt

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
)

// Entry is one op's contribution to a field: a register value, a set add
// tag with its element, or a log entry.
type Entry struct {
	ID    OpID               `msgpack:"i"`
	Value msgpack.RawMessage `msgpack:"v"`
}

// Field is the merged state of one field. All three field types share one
// representation:
//
//   - Entries: the live entries, sorted by ID;
//   - Pending: IDs that a pred of an op on this field named before this
//     state applied them (the op overwritten or removed has not arrived
//     yet), sorted. It is empty whenever ops arrive in causal order, as
//     they do through the server.
//
// Which ops were overwritten or removed is not listed: the record's causal
// context (Record.Clock) says which ops the state has applied, and an
// applied op that is not live was overwritten or removed. See the package
// doc, "State", for the merge and why it is sound.
type Field struct {
	Type    FieldType `msgpack:"y"`
	Entries []Entry   `msgpack:"e"`
	Pending []OpID    `msgpack:"p,omitempty"`
}

// Winner returns a register's deterministic winner, the live entry with the
// highest ID, and false when the register has no live entry.
func (f *Field) Winner() (Entry, bool) {
	if f == nil || len(f.Entries) == 0 {
		return Entry{}, false
	}
	return f.Entries[len(f.Entries)-1], true
}

// Conflict reports whether a register holds concurrent values: more than
// one write that no later write has overwritten.
func (f *Field) Conflict() bool { return f != nil && f.Type == Register && len(f.Entries) > 1 }

// Live returns the IDs of the live entries: for a register, the pred a new
// write needs to overwrite every concurrent value.
func (f *Field) Live() []OpID {
	if f == nil {
		return nil
	}
	ids := make([]OpID, len(f.Entries))
	for i, e := range f.Entries {
		ids[i] = e.ID
	}
	return ids
}

// Members returns a set's distinct elements, sorted bytewise.
func (f *Field) Members() []msgpack.RawMessage {
	if f == nil {
		return nil
	}
	var out []msgpack.RawMessage
	for _, e := range f.Entries {
		out = append(out, e.Value)
	}
	slices.SortFunc(out, func(a, b msgpack.RawMessage) int { return bytes.Compare(a, b) })
	return slices.CompactFunc(out, func(a, b msgpack.RawMessage) bool { return bytes.Equal(a, b) })
}

// Tags returns the live add tags of one set element: the pred of a remove.
func (f *Field) Tags(elem msgpack.RawMessage) []OpID {
	if f == nil {
		return nil
	}
	var ids []OpID
	for _, e := range f.Entries {
		if bytes.Equal(e.Value, elem) {
			ids = append(ids, e.ID)
		}
	}
	return ids
}

// HasEntry reports whether id is a live entry of f.
func (f *Field) HasEntry(id OpID) bool {
	_, ok := f.find(id)
	return ok
}

func (f *Field) find(id OpID) (int, bool) {
	if f == nil {
		return 0, false
	}
	return slices.BinarySearchFunc(f.Entries, id, func(e Entry, id OpID) int { return e.ID.Compare(id) })
}

func (f *Field) pending(id OpID) bool {
	if f == nil {
		return false
	}
	_, ok := slices.BinarySearchFunc(f.Pending, id, OpID.Compare)
	return ok
}

func (f *Field) clone() *Field {
	return &Field{Type: f.Type, Entries: slices.Clone(f.Entries), Pending: slices.Clone(f.Pending)}
}

// check verifies the invariants a decoded Field must hold, given its
// record's causal context: entries sorted, each applied (covered by the
// clock); pending IDs sorted, none applied.
func (f *Field) check(r *Record) error {
	if f.Type < Register || f.Type > Log {
		return fmt.Errorf("%w: unknown field type %d", ErrMalformed, f.Type)
	}
	for i := range f.Entries {
		if f.Entries[i].ID.Replica.IsZero() || len(f.Entries[i].Value) == 0 {
			return fmt.Errorf("%w: entry without id or value", ErrMalformed)
		}
		if i > 0 && f.Entries[i-1].ID.Compare(f.Entries[i].ID) >= 0 {
			return fmt.Errorf("%w: entries not sorted", ErrMalformed)
		}
		if !r.Covers(f.Entries[i].ID) {
			return fmt.Errorf("%w: entry %s is not in the record's clock", ErrMalformed, f.Entries[i].ID)
		}
	}
	for i := range f.Pending {
		if f.Pending[i].Replica.IsZero() {
			return fmt.Errorf("%w: pending id of no replica", ErrMalformed)
		}
		if i > 0 && f.Pending[i-1].Compare(f.Pending[i]) >= 0 {
			return fmt.Errorf("%w: pending ids not sorted", ErrMalformed)
		}
		if r.Covers(f.Pending[i]) {
			return fmt.Errorf("%w: pending id %s is already applied", ErrMalformed, f.Pending[i])
		}
	}
	return nil
}

// sortEntries sorts entries by ID and keeps one entry per ID, the one with
// the bytewise greatest value: should a faulty replica reuse an op ID for
// two values, every replica keeps the same one.
func sortEntries(es []Entry) []Entry {
	if len(es) < 2 {
		return es
	}
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
	if len(ids) > 1 {
		slices.SortFunc(ids, OpID.Compare)
		ids = slices.Compact(ids)
	}
	return ids
}

// unionIDs merges two sorted, duplicate-free ID lists into a new one.
func unionIDs(a, b []OpID) []OpID {
	if len(a) == 0 {
		return slices.Clone(b)
	}
	if len(b) == 0 {
		return slices.Clone(a)
	}
	out := make([]OpID, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := a[i].Compare(b[j]); {
		case c < 0:
			out, i = append(out, a[i]), i+1
		case c > 0:
			out, j = append(out, b[j]), j+1
		default:
			out, i, j = append(out, a[i]), i+1, j+1
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

func containsID(sorted []OpID, id OpID) bool {
	if len(sorted) <= 4 {
		for i := range sorted {
			if sorted[i] == id {
				return true
			}
		}
		return false
	}
	_, ok := slices.BinarySearchFunc(sorted, id, OpID.Compare)
	return ok
}
