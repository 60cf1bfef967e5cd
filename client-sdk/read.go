package client

import (
	"bytes"
	"context"
	"fmt"
	"math"

	"github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
)

// Record is a read view of one record's merged state.
type Record struct {
	Ref Ref
	// Deleted reports whether the record is deleted.
	Deleted bool
	// DeleteConflicts names fields edited concurrently with the delete:
	// edits the deleter had not seen, kept until someone restores or
	// deletes again.
	DeleteConflicts []string
	// Fields holds every field with state, including fields this device's
	// schema does not know (they pass through sync untouched).
	Fields map[string]Field
	// State is the underlying CRDT state, for callers that need it.
	State *crdt.Record
}

// Field is a read view of one field.
type Field struct {
	Type crdt.FieldType
	// Value is a register's winning value decoded (nil if unset), the same
	// on every replica that has seen the same ops. Integers decode as int64
	// whatever width they travelled in (uint64 only above math.MaxInt64),
	// floats as float64. A register cleared with Clear and not in conflict
	// is left out of Record.Fields, as if never written.
	Value any
	// Conflict reports concurrent values that no write has yet settled;
	// Values then holds them all (the winner last). Resolve settles it.
	Conflict bool
	// Values are a register's live values, sorted by op ID.
	Values []Value
	// Members are a set's distinct elements decoded, in a stable order.
	Members []any
	// Entries are a log's entries, oldest first.
	Entries []Value
	// Clinical reports a field the schema marks clinically significant:
	// its conflicts should be put in front of a person to settle.
	Clinical bool
}

// Value is one live entry of a field: the op that wrote it and its value.
type Value struct {
	ID    crdt.OpID
	Value any
	Raw   msgpack.RawMessage
}

// Conflicts returns the names of fields in conflict, and for a deleted
// record the fields edited concurrently with the delete.
func (r *Record) Conflicts() []string { return r.State.Conflicts() }

// Get returns the local merged view of a record, or an error wrapping
// ErrNotFound.
func (r *Replica) Get(ctx context.Context, ref Ref) (*Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if r.closed() {
		return nil, ErrClosed
	}
	var rec *crdt.Record
	err := r.view(func(txn *badger.Txn) error {
		var err error
		rec, err = loadRecord(txn, ref)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("client: get: %w", err)
	}
	if rec == nil {
		return nil, fmt.Errorf("client: get %s/%s/%s: %w", ref.Team, ref.Collection, ref.ID, ErrNotFound)
	}
	return r.viewOf(rec), nil
}

// GetState returns the local CRDT state of a record, or nil if there is none.
func (r *Replica) GetState(ctx context.Context, ref Ref) (*crdt.Record, error) {
	v, err := r.Get(ctx, ref)
	if err != nil {
		return nil, err
	}
	return v.State, nil
}

// List returns the records of one team and collection (all collections if
// collection is empty), deleted ones included, in key order.
func (r *Replica) List(ctx context.Context, team, collection string) ([]*Record, error) {
	if r.closed() {
		return nil, ErrClosed
	}
	prefix := []byte("r/" + team + "\x00")
	if collection != "" {
		prefix = append(prefix, collection+"\x00"...)
	}
	var out []*Record
	err := r.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var rec *crdt.Record
			err := it.Item().Value(func(v []byte) error {
				var err error
				rec, err = crdt.UnmarshalRecord(v)
				return err
			})
			if err != nil {
				return fmt.Errorf("record %q: %w", it.Item().Key(), err)
			}
			out = append(out, r.viewOf(rec))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("client: list %s/%s: %w", team, collection, err)
	}
	return out, nil
}

// Conflicts returns the team's local records that hold a conflict: a
// register with concurrent values, or edits made concurrently with a
// delete. Record.Conflicts names the fields.
func (r *Replica) Conflicts(ctx context.Context, team string) ([]*Record, error) {
	recs, err := r.List(ctx, team, "")
	if err != nil {
		return nil, err
	}
	var out []*Record
	for _, rec := range recs {
		if len(rec.Conflicts()) > 0 {
			out = append(out, rec)
		}
	}
	return out, nil
}

// States returns every local record state, keyed by reference: for tests
// and tools that compare replicas.
func (r *Replica) States(ctx context.Context) (map[Ref]*crdt.Record, error) {
	out := map[Ref]*crdt.Record{}
	err := r.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefRecord, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			err := it.Item().Value(func(v []byte) error {
				rec, err := crdt.UnmarshalRecord(v)
				if err != nil {
					return err
				}
				out[Ref{Team: rec.Team, Collection: rec.Collection, ID: rec.ID}] = rec
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("client: read states: %w", err)
	}
	return out, nil
}

// viewOf returns the read view of rec, marking the fields the schema calls
// clinical.
func (r *Replica) viewOf(rec *crdt.Record) *Record {
	v := view(rec)
	if sc, ok := r.opts.Validator.(*schema.Schema); ok {
		for name, f := range v.Fields {
			f.Clinical = sc.Clinical(rec.Collection, name)
			v.Fields[name] = f
		}
	}
	return v
}

func view(rec *crdt.Record) *Record {
	v := &Record{
		Ref:             Ref{Team: rec.Team, Collection: rec.Collection, ID: rec.ID},
		Deleted:         rec.Deleted(),
		DeleteConflicts: rec.DeleteConflicts(),
		Fields:          map[string]Field{},
		State:           rec,
	}
	for _, name := range rec.FieldNames() {
		if name == crdt.DeletedField {
			continue
		}
		f := rec.Field(name)
		fv := Field{Type: f.Type}
		switch f.Type {
		case crdt.Register:
			fv.Conflict = f.Conflict()
			fv.Values = values(f.Entries)
			if len(fv.Values) > 0 {
				fv.Value = fv.Values[len(fv.Values)-1].Value
			}
			if !fv.Conflict && fv.Value == nil {
				continue // cleared (see Replica.Clear): reads as unset
			}
		case crdt.Set:
			for _, m := range f.Members() {
				fv.Members = append(fv.Members, decode(m))
			}
		case crdt.Log:
			fv.Entries = values(f.Entries)
		}
		v.Fields[name] = fv
	}
	return v
}

func values(es []crdt.Entry) []Value {
	out := make([]Value, len(es))
	for i, e := range es {
		out[i] = Value{ID: e.ID, Value: decode(e.Value), Raw: e.Value}
	}
	return out
}

// decode decodes a msgpack value into Go's generic types: nil, bool,
// int64 for every integer (uint64 only for one above math.MaxInt64,
// whatever width it was sent in), float64 (float32 too), string, []byte,
// []any and map[string]any. A value that does not decode is returned as its
// raw bytes.
func decode(b msgpack.RawMessage) any {
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	dec.UseLooseInterfaceDecoding(true)
	var v any
	if err := dec.Decode(&v); err != nil {
		return []byte(b)
	}
	return normalize(v)
}

// normalize turns the unsigned integers loose decoding yields into int64
// where they fit, through slices and maps.
func normalize(v any) any {
	switch x := v.(type) {
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x)
		}
	case []any:
		for i := range x {
			x[i] = normalize(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = normalize(x[k])
		}
	case map[any]any:
		for k := range x {
			x[k] = normalize(x[k])
		}
	}
	return v
}
