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
// representation and one merge:
//
//   - Entries: the live entries, sorted by ID;
//   - Removed: IDs that were overwritten (register) or removed (set), sorted.
//
// Merging two states takes the union of both lists and drops every entry
// whose ID is in Removed. Both unions are commutative, associative and
// idempotent, so merge is too. The types differ only in which ops produce
// entries and removals, and in how entries are read.
type Field struct {
	Type    FieldType `msgpack:"y"`
	Entries []Entry   `msgpack:"e"`
	Removed []OpID    `msgpack:"x,omitempty"`
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

// fieldOf returns the one-op state that applying op contributes.
func fieldOf(op *Op) *Field {
	f := &Field{Type: op.Kind.FieldType()}
	if op.Kind != KindRemove {
		f.Entries = []Entry{{ID: op.ID, Value: op.Value}}
	}
	if len(op.Pred) > 0 {
		f.Removed = slices.Clone(op.Pred)
		slices.SortFunc(f.Removed, OpID.Compare)
		f.Removed = slices.Compact(f.Removed)
	}
	return f
}

// merge returns the merge of a and b, neither of which it modifies; it may
// return a itself when b adds nothing. Both must be sorted as Field
// documents.
func merge(a, b *Field) (*Field, error) {
	if a.Type != b.Type {
		return nil, fmt.Errorf("%w: %s and %s", ErrKindMismatch, a.Type, b.Type)
	}
	if covers(a, b) {
		return a, nil
	}
	removed := unionIDs(a.Removed, b.Removed)
	entries := make([]Entry, 0, len(a.Entries)+len(b.Entries))
	i, j := 0, 0
	for i < len(a.Entries) || j < len(b.Entries) {
		var e Entry
		switch {
		case j == len(b.Entries):
			e, i = a.Entries[i], i+1
		case i == len(a.Entries):
			e, j = b.Entries[j], j+1
		default:
			switch c := a.Entries[i].ID.Compare(b.Entries[j].ID); {
			case c < 0:
				e, i = a.Entries[i], i+1
			case c > 0:
				e, j = b.Entries[j], j+1
			default:
				// The same op seen twice. IDs are unique, so the values
				// agree; should a faulty replica have reused an ID, keep
				// the bytewise greater value so every replica still
				// converges on one state.
				e, i, j = a.Entries[i], i+1, j+1
				if bytes.Compare(b.Entries[j-1].Value, e.Value) > 0 {
					e = b.Entries[j-1]
				}
			}
		}
		if _, gone := slices.BinarySearchFunc(removed, e.ID, OpID.Compare); !gone {
			entries = append(entries, e)
		}
	}
	return &Field{Type: a.Type, Entries: entries, Removed: removed}, nil
}

// covers reports whether merging b into a would leave a as it is: every
// removed ID of b is removed in a, and every entry of b is in a (with a value
// the merge would keep) or removed in a. It is the common case when states
// are exchanged, and costs no allocation.
func covers(a, b *Field) bool {
	for _, id := range b.Removed {
		if _, ok := slices.BinarySearchFunc(a.Removed, id, OpID.Compare); !ok {
			return false
		}
	}
	for _, e := range b.Entries {
		if i, ok := slices.BinarySearchFunc(a.Entries, e.ID, func(x Entry, id OpID) int { return x.ID.Compare(id) }); ok {
			if bytes.Compare(e.Value, a.Entries[i].Value) > 0 {
				return false
			}
			continue
		}
		if _, ok := slices.BinarySearchFunc(a.Removed, e.ID, OpID.Compare); !ok {
			return false
		}
	}
	return true
}

// unionIDs merges two sorted, duplicate-free ID lists.
func unionIDs(a, b []OpID) []OpID {
	if len(b) == 0 {
		return a
	}
	if len(a) == 0 {
		return b
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

// check verifies the invariants a decoded Field must hold.
func (f *Field) check() error {
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
		if _, gone := slices.BinarySearchFunc(f.Removed, f.Entries[i].ID, OpID.Compare); gone {
			return fmt.Errorf("%w: entry %s is also removed", ErrMalformed, f.Entries[i].ID)
		}
	}
	for i := range f.Removed {
		if f.Removed[i].Replica.IsZero() {
			return fmt.Errorf("%w: removed id of no replica", ErrMalformed)
		}
		if i > 0 && f.Removed[i-1].Compare(f.Removed[i]) >= 0 {
			return fmt.Errorf("%w: removed ids not sorted", ErrMalformed)
		}
	}
	if f.Type == Log && len(f.Removed) > 0 {
		return fmt.Errorf("%w: log with removed entries", ErrMalformed)
	}
	return nil
}
