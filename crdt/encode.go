package crdt

import (
	"bytes"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// MarshalOp returns the msgpack encoding of op.
func MarshalOp(op *Op) ([]byte, error) { return marshal(op) }

// UnmarshalOp decodes an op and checks it with Validate. It returns an error
// wrapping ErrMalformed for bytes that are not a valid op; it never panics.
func UnmarshalOp(b []byte) (*Op, error) {
	var op Op
	if err := unmarshal(b, &op); err != nil {
		return nil, err
	}
	if err := op.Validate(); err != nil {
		return nil, err
	}
	return &op, nil
}

// MarshalRecord returns the canonical msgpack encoding of r: map keys sorted,
// entries and removed IDs in ID order. Equal states encode to equal bytes.
func MarshalRecord(r *Record) ([]byte, error) { return marshal(r) }

// UnmarshalRecord decodes a record state and checks its invariants (sorted,
// duplicate-free entries, known field types). It never panics.
func UnmarshalRecord(b []byte) (*Record, error) {
	var r Record
	if err := unmarshal(b, &r); err != nil {
		return nil, err
	}
	if r.Collection == "" || r.ID == "" || r.Team == "" {
		return nil, fmt.Errorf("%w: record lacks team, collection or id", ErrMalformed)
	}
	if r.Fields == nil {
		r.Fields = map[string]*Field{}
	}
	for name, f := range r.Fields {
		if f == nil {
			return nil, fmt.Errorf("%w: field %q is nil", ErrMalformed, name)
		}
		if err := f.check(); err != nil {
			return nil, fmt.Errorf("field %q: %w", name, err)
		}
	}
	return &r, nil
}

func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	enc.UseCompactInts(true)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return buf.Bytes(), nil
}

func unmarshal(b []byte, v any) (err error) {
	// msgpack/v5 reports most bad input as errors; the recover is a last
	// line of defence so that outside bytes can never crash a caller.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: decoder panic: %v", ErrMalformed, p)
		}
	}()
	rd := bytes.NewReader(b)
	if err := msgpack.NewDecoder(rd).Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if rd.Len() != 0 {
		return fmt.Errorf("%w: %d trailing bytes after %T", ErrMalformed, rd.Len(), v)
	}
	return nil
}
