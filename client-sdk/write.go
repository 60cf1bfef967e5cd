package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
)

// FieldTyper is optionally implemented by a Validator to give a field's CRDT
// type, so that Create can turn a slice given for a set or log field into
// adds or appends.
type FieldTyper interface {
	FieldType(collection, field string) (crdt.FieldType, bool)
}

// NewID returns a new random record ID: 32 hex digits.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// Create creates a record in collection for team with the given fields and
// returns its new ID. Each field becomes a register write, except that a
// slice given for a field the schema types as a set or log becomes one add or
// append per element. It fails with a *ValidationError (ErrInvalid) if a
// field required on create is missing or a value is invalid.
func (r *Replica) Create(ctx context.Context, collection, team string, fields map[string]any) (string, error) {
	id := NewID()
	return id, r.CreateWithID(ctx, Ref{Team: team, Collection: collection, ID: id}, fields)
}

// CreateWithID is Create with an ID chosen by the caller. It fails if the
// record already exists locally.
func (r *Replica) CreateWithID(ctx context.Context, ref Ref, fields map[string]any) error {
	if ref.Team == "" || ref.Collection == "" || ref.ID == "" {
		return &ValidationError{Ref: ref, Err: fmt.Errorf("team, collection and id are required")}
	}
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.Sort(names)
	if cc, ok := r.opts.Validator.(CreateChecker); ok {
		if missing := cc.MissingOnCreate(ref.Collection, names); len(missing) > 0 {
			return &ValidationError{Ref: ref, Missing: missing}
		}
	}
	typer, _ := r.opts.Validator.(FieldTyper)
	if sc, ok := r.opts.Validator.(*schema.Schema); ok {
		typer = schemaTyper{sc}
	}
	return r.write(ctx, ref, true, func(rec *crdt.Record) ([]crdt.Op, error) {
		var ops []crdt.Op
		for _, name := range names {
			ft := crdt.Register
			if typer != nil {
				if t, ok := typer.FieldType(ref.Collection, name); ok {
					ft = t
				}
			}
			elems := []any{fields[name]}
			if ft != crdt.Register {
				if s, ok := asSlice(fields[name]); ok {
					elems = s
				}
			}
			for _, e := range elems {
				v, err := crdt.EncodeValue(e)
				if err != nil {
					return nil, &ValidationError{Ref: ref, Field: name, Err: err}
				}
				var op crdt.Op
				id := r.nextID()
				switch ft {
				case crdt.Set:
					op = rec.Add(id, name, v)
				case crdt.Log:
					op = rec.Append(id, name, v)
				default:
					op = rec.Write(id, name, v)
				}
				ops = append(ops, op)
			}
		}
		return ops, nil
	})
}

type schemaTyper struct{ s *schema.Schema }

func (t schemaTyper) FieldType(collection, field string) (crdt.FieldType, bool) {
	f, ok := t.s.Field(collection, field)
	if !ok {
		return 0, false
	}
	return f.CRDT, true
}

func asSlice(v any) ([]any, bool) {
	switch s := v.(type) {
	case []any:
		return s, true
	case []string:
		out := make([]any, len(s))
		for i := range s {
			out[i] = s[i]
		}
		return out, true
	}
	return nil, false
}

// Set writes value to a register field. The write overwrites the value the
// user sees (the winner) but not other concurrent values: a field in
// conflict stays in conflict until Resolve, so a conflict on a clinically
// important field is never settled by accident.
func (r *Replica) Set(ctx context.Context, ref Ref, field string, value any) error {
	return r.fieldWrite(ctx, ref, field, value, func(rec *crdt.Record, id crdt.OpID, v msgpack.RawMessage) crdt.Op {
		op := rec.Write(id, field, v)
		if f := rec.Field(field); f.Conflict() {
			w, _ := f.Winner()
			op.Pred = []crdt.OpID{w.ID}
		}
		return op
	})
}

// Resolve writes value to a register field, overwriting every concurrent
// value the replica holds: it settles a conflict.
func (r *Replica) Resolve(ctx context.Context, ref Ref, field string, value any) error {
	return r.fieldWrite(ctx, ref, field, value, func(rec *crdt.Record, id crdt.OpID, v msgpack.RawMessage) crdt.Op {
		return rec.Write(id, field, v)
	})
}

// Add adds elem to a set field.
func (r *Replica) Add(ctx context.Context, ref Ref, field string, elem any) error {
	return r.fieldWrite(ctx, ref, field, elem, func(rec *crdt.Record, id crdt.OpID, v msgpack.RawMessage) crdt.Op {
		return rec.Add(id, field, v)
	})
}

// Remove removes elem from a set field: every add of it this replica has
// seen. An add made concurrently on another device survives (add wins).
func (r *Replica) Remove(ctx context.Context, ref Ref, field string, elem any) error {
	return r.fieldWrite(ctx, ref, field, elem, func(rec *crdt.Record, id crdt.OpID, v msgpack.RawMessage) crdt.Op {
		return rec.Remove(id, field, v)
	})
}

// Append appends value to a log field.
func (r *Replica) Append(ctx context.Context, ref Ref, field string, value any) error {
	return r.fieldWrite(ctx, ref, field, value, func(rec *crdt.Record, id crdt.OpID, v msgpack.RawMessage) crdt.Op {
		return rec.Append(id, field, v)
	})
}

// Delete deletes a record. Edits made concurrently on other devices are
// kept and reported by Get as DeleteConflicts.
func (r *Replica) Delete(ctx context.Context, ref Ref) error {
	return r.write(ctx, ref, false, func(rec *crdt.Record) ([]crdt.Op, error) {
		return []crdt.Op{rec.Delete(r.nextID())}, nil
	})
}

// Restore undeletes a record.
func (r *Replica) Restore(ctx context.Context, ref Ref) error {
	return r.write(ctx, ref, false, func(rec *crdt.Record) ([]crdt.Op, error) {
		return []crdt.Op{rec.Restore(r.nextID())}, nil
	})
}

func (r *Replica) fieldWrite(ctx context.Context, ref Ref, field string, value any,
	build func(*crdt.Record, crdt.OpID, msgpack.RawMessage) crdt.Op) error {
	if field == crdt.DeletedField {
		return &ValidationError{Ref: ref, Field: field, Err: fmt.Errorf("use Delete or Restore")}
	}
	v, err := crdt.EncodeValue(value)
	if err != nil {
		return &ValidationError{Ref: ref, Field: field, Err: err}
	}
	return r.write(ctx, ref, false, func(rec *crdt.Record) ([]crdt.Op, error) {
		if rec.Deleted() {
			return nil, fmt.Errorf("write %s to %s/%s/%s: %w", field, ref.Team, ref.Collection, ref.ID, ErrDeleted)
		}
		return []crdt.Op{build(rec, r.nextID(), v)}, nil
	})
}

func (r *Replica) nextID() crdt.OpID { return crdt.OpID{Time: r.clock.Now(), Replica: r.id} }

// write runs one local write: under the write lock it loads the record (or
// starts it, for a create), builds the ops, validates them, applies them and
// in one Badger transaction stores the record, appends the ops to the outbox
// as one group, and saves the clock. The transaction is fsynced before write
// returns.
func (r *Replica) write(ctx context.Context, ref Ref, create bool, build func(*crdt.Record) ([]crdt.Op, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.closed() {
		return ErrClosed
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed() {
		return ErrClosed
	}
	var nops int
	err := r.db.Update(func(txn *badger.Txn) error {
		rec, err := loadRecord(txn, ref)
		if err != nil {
			return err
		}
		switch {
		case rec == nil && !create:
			return fmt.Errorf("%s/%s/%s: %w", ref.Team, ref.Collection, ref.ID, ErrNotFound)
		case rec != nil && create:
			return &ValidationError{Ref: ref, Err: fmt.Errorf("record already exists")}
		case rec == nil:
			rec = crdt.NewRecord(ref.Team, ref.Collection, ref.ID)
		}
		ops, err := build(rec)
		if err != nil {
			return err
		}
		if len(ops) == 0 {
			return nil
		}
		for i := range ops {
			if err := r.validate(ref, &ops[i]); err != nil {
				return err
			}
			if err := rec.Apply(&ops[i]); err != nil {
				return &ValidationError{Ref: ref, Field: ops[i].Field, Err: err}
			}
		}
		if err := putRecord(txn, rec); err != nil {
			return err
		}
		if err := r.appendPending(txn, ops); err != nil {
			return err
		}
		nops = len(ops)
		return txn.Set(keyClock, u64Bytes(uint64(r.clock.Last())))
	})
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if nops > 0 {
		r.statusMu.Lock()
		r.status.Pending += nops
		r.statusMu.Unlock()
		r.notify([]Ref{ref})
		r.trigger()
	}
	return nil
}

func (r *Replica) validate(ref Ref, op *crdt.Op) error {
	if err := op.Validate(); err != nil {
		return &ValidationError{Ref: ref, Field: op.Field, Err: err}
	}
	if r.opts.Validator != nil {
		if err := r.opts.Validator.ValidateOp(op); err != nil {
			return &ValidationError{Ref: ref, Field: op.Field, Err: err}
		}
	}
	return nil
}

// appendPending stores one write's ops as an unsealed group under the next
// outbox index.
func (r *Replica) appendPending(txn *badger.Txn, ops []crdt.Op) error {
	v, err := get(txn, keyNextOp)
	if err != nil {
		return err
	}
	n := u64(v) + 1
	b, err := encodeChange(&api.Change{Ops: ops})
	if err != nil {
		return err
	}
	if err := txn.Set(u64Key(prefPending, n), b); err != nil {
		return err
	}
	return txn.Set(keyNextOp, u64Bytes(n))
}

func loadRecord(txn *badger.Txn, ref Ref) (*crdt.Record, error) {
	v, err := get(txn, recordKey(ref))
	if err != nil || v == nil {
		return nil, err
	}
	rec, err := crdt.UnmarshalRecord(v)
	if err != nil {
		return nil, fmt.Errorf("stored record %s/%s/%s: %w", ref.Team, ref.Collection, ref.ID, err)
	}
	return rec, nil
}

func putRecord(txn *badger.Txn, rec *crdt.Record) error {
	b, err := crdt.MarshalRecord(rec)
	if err != nil {
		return err
	}
	return txn.Set(recordKey(Ref{Team: rec.Team, Collection: rec.Collection, ID: rec.ID}), b)
}

func encodeChange(c *api.Change) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encode change: %w", err)
	}
	return buf.Bytes(), nil
}

func decodeChange(b []byte) (*api.Change, error) {
	var c api.Change
	if err := msgpack.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("decode stored change: %w", err)
	}
	return &c, nil
}
