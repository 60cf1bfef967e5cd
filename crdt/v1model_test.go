package crdt

// The layout-1 representation (removed-ID lists per field), kept as the
// reference model of the differential test: for every random history, the
// new representation must show the same live entries, winners, conflicts,
// deletion and delete conflicts. This is the code of crdt/field.go and
// crdt/record.go as it stood before layout 2, renamed.

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

type refV1Field struct {
	Type    FieldType
	Entries []Entry
	Removed []OpID
}

type refRecord struct {
	Fields map[string]*refV1Field
}

func newRefRecord() *refRecord { return &refRecord{Fields: map[string]*refV1Field{}} }

func (r *refRecord) Apply(op *Op) error {
	if err := op.Validate(); err != nil {
		return err
	}
	if op.Field == DeletedField && op.Kind != KindWrite {
		return fmt.Errorf("%w: %s must be written, not %s", ErrKindMismatch, DeletedField, op.Kind)
	}
	return r.mergeField(op.Field, refFieldOf(op))
}

func (r *refRecord) Merge(o *refRecord) error {
	for name, f := range o.Fields {
		if err := r.mergeField(name, f); err != nil {
			return err
		}
	}
	return nil
}

func (r *refRecord) mergeField(name string, f *refV1Field) error {
	cur, ok := r.Fields[name]
	if !ok {
		cur = &refV1Field{Type: f.Type}
	}
	m, err := refMerge(cur, f)
	if err != nil {
		return err
	}
	r.Fields[name] = m
	return nil
}

func (r *refRecord) Deleted() bool {
	f := r.Fields[DeletedField]
	if f == nil || len(f.Entries) == 0 {
		return false
	}
	return bytes.Equal(f.Entries[len(f.Entries)-1].Value, MustValue(true))
}

func (r *refRecord) DeleteConflicts() []string {
	if !r.Deleted() {
		return nil
	}
	seen := r.Fields[DeletedField].Removed
	var names []string
	for _, name := range sortedKeys(r.Fields) {
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

func (r *refRecord) Conflicts() []string {
	var names []string
	for _, name := range sortedKeys(r.Fields) {
		if f := r.Fields[name]; f.Type == Register && len(f.Entries) > 1 {
			names = append(names, name)
		}
	}
	names = append(names, r.DeleteConflicts()...)
	slices.Sort(names)
	return slices.Compact(names)
}

// fieldOf returns the one-op state that applying op contributes.
func refFieldOf(op *Op) *refV1Field {
	f := &refV1Field{Type: op.Kind.FieldType()}
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
func refMerge(a, b *refV1Field) (*refV1Field, error) {
	if a.Type != b.Type {
		return nil, fmt.Errorf("%w: %s and %s", ErrKindMismatch, a.Type, b.Type)
	}
	if refCovers(a, b) {
		return a, nil
	}
	removed := refUnionIDs(a.Removed, b.Removed)
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
	return &refV1Field{Type: a.Type, Entries: entries, Removed: removed}, nil
}

// covers reports whether merging b into a would leave a as it is: every
// removed ID of b is removed in a, and every entry of b is in a (with a value
// the merge would keep) or removed in a. It is the common case when states
// are exchanged, and costs no allocation.
func refCovers(a, b *refV1Field) bool {
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
func refUnionIDs(a, b []OpID) []OpID {
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

// appendV1Record writes a layout-1 state as the layout-1 encoder did:
// {c, r, t, f: {name: {y, e: [{i, v}], x: removed}}}, fields sorted.
func appendV1Record(b []byte, team, coll, id string, r *refRecord) []byte {
	b = appendMapLen(b, 4)
	b = appendStr(appendStr(b, "c"), coll)
	b = appendStr(appendStr(b, "r"), id)
	b = appendStr(appendStr(b, "t"), team)
	b = appendStr(b, "f")
	b = appendMapLen(b, len(r.Fields))
	for _, name := range sortedKeys(r.Fields) {
		f := r.Fields[name]
		b = appendStr(b, name)
		n := 2
		if len(f.Removed) > 0 {
			n = 3
		}
		b = appendMapLen(b, n)
		b = appendUint(appendStr(b, "y"), uint64(f.Type))
		b = appendArrayLen(appendStr(b, "e"), len(f.Entries))
		for i := range f.Entries {
			b = appendEntry(b, &f.Entries[i])
		}
		if n == 3 {
			b = appendIDs(appendStr(b, "x"), f.Removed)
		}
	}
	return b
}

// seedV1States returns layout-1 encodings of the simulation's states,
// built by the layout-1 merge from each replica's ops.
func seedV1States(tb testing.TB) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	s := newSim(rng, 3)
	s.run(tb, 40)
	var out [][]byte
	for _, rp := range s.reps {
		for _, id := range simRecords {
			ref := newRefRecord()
			for _, op := range rp.ops {
				if op.Record == id {
					if err := ref.Apply(&op); err != nil {
						tb.Fatal(err)
					}
				}
			}
			out = append(out, appendV1Record(nil, simTeam, simColl, id, ref))
		}
	}
	return out
}
