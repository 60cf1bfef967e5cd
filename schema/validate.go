package schema

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/doorstep-health/doorstep/crdt"
)

// Errors callers branch on. Every validation error wraps exactly one of
// them (through a *ValidationError that says which field and why).
var (
	// ErrUnknownCollection: the op names a collection the schema lacks.
	ErrUnknownCollection = errors.New("schema: unknown collection")
	// ErrUnknownField: the op names a field its collection lacks.
	ErrUnknownField = errors.New("schema: unknown field")
	// ErrWrongType: the op's kind does not suit the field's CRDT type (a set
	// add on a register), or the value has the wrong msgpack type (a string
	// for an int field).
	ErrWrongType = errors.New("schema: wrong type")
	// ErrInvalidValue: the value does not decode, or breaks the field's
	// constraints (enum, range, date, NHS number check digit, length…).
	ErrInvalidValue = errors.New("schema: invalid value")
)

// ValidationError says which collection and field an op or value failed
// on, and why. Err is one of the package's sentinel errors.
type ValidationError struct {
	Collection string
	Field      string // may name a property inside an object, e.g. "responses.answers"
	Reason     string
	Err        error
}

// Error returns the sentinel error, the collection and field at fault, and
// the reason.
func (e *ValidationError) Error() string {
	where := e.Field
	if e.Collection != "" {
		where = e.Collection + "." + e.Field
	}
	return fmt.Sprintf("%s: %s: %s", e.Err, where, e.Reason)
}

// Unwrap returns the sentinel error.
func (e *ValidationError) Unwrap() error { return e.Err }

// ValidateOp checks an op against the schema: its collection and field
// exist, its kind suits the field's CRDT type, and its value decodes
// (bounded, see DecodeValue) and satisfies the field's value type and
// constraints. The reserved crdt.DeletedField is valid on every collection
// as a register write of a bool. A register write of nil clears the field
// and is valid on every register. A set remove is checked for kind and
// decoding only, so that an element the schema no longer allows can still
// be removed. ValidateOp does not check the op's own shape (crdt's
// Op.Validate does) and does not read other ops (see MissingOnCreate).
func (s *Schema) ValidateOp(op *crdt.Op) error {
	c, ok := s.byName[op.Collection]
	if !ok {
		return &ValidationError{Collection: op.Collection, Field: op.Field, Reason: "collection not in schema version " + fmt.Sprint(s.version), Err: ErrUnknownCollection}
	}
	verr := func(sentinel error, format string, args ...any) error {
		return &ValidationError{Collection: op.Collection, Field: op.Field, Reason: fmt.Sprintf(format, args...), Err: sentinel}
	}
	if op.Field == crdt.DeletedField {
		if op.Kind != crdt.KindWrite {
			return verr(ErrWrongType, "%s op on the delete register", op.Kind)
		}
		v, err := DecodeValue(op.Value)
		if err != nil {
			return verr(ErrInvalidValue, "%v", err)
		}
		if _, ok := v.(bool); !ok {
			return verr(ErrWrongType, "delete register value is a msgpack %s, want bool", typeName(v))
		}
		return nil
	}
	f, ok := c.byName[op.Field]
	if !ok {
		return verr(ErrUnknownField, "field not in schema version %d", s.version)
	}
	return f.ValidateOp(op)
}

// ValidateOp checks an op on the field, as Schema.ValidateOp does once it
// has found the field: for a caller that looked the field up already
// (a record's create validates an op per field), the same answer
// without the look-ups. op.Field must name f, and op.Collection the
// collection f is a field of (the error names it).
func (f *Field) ValidateOp(op *crdt.Op) error {
	verr := func(sentinel error, format string, args ...any) error {
		return &ValidationError{Collection: op.Collection, Field: op.Field, Reason: fmt.Sprintf(format, args...), Err: sentinel}
	}
	if got := op.Kind.FieldType(); got != f.CRDT {
		return verr(ErrWrongType, "%s op on a %s field", op.Kind, f.CRDT)
	}
	if op.Kind == crdt.KindRemove && len(op.Value) == 0 {
		return nil
	}
	if op.Kind != crdt.KindRemove && f.rawStringOK(op.Value) {
		return nil
	}
	v, err := DecodeValue(op.Value)
	if err != nil {
		return verr(ErrInvalidValue, "%v", err)
	}
	switch {
	case op.Kind == crdt.KindRemove:
		return nil
	case v == nil && op.Kind == crdt.KindWrite:
		return nil
	case v == nil:
		return verr(ErrInvalidValue, "nil %s element", f.CRDT)
	}
	if err := f.ValidateValue(v); err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			ve.Collection = op.Collection
			return ve
		}
		return err
	}
	return nil
}

// ValidateValue decodes a msgpack value and checks it against the named
// field, as ValidateOp does for a register write, set add or log append.
func (s *Schema) ValidateValue(collection, field string, raw []byte) error {
	c, ok := s.byName[collection]
	if !ok {
		return &ValidationError{Collection: collection, Field: field, Reason: "collection not in schema", Err: ErrUnknownCollection}
	}
	f, ok := c.byName[field]
	if !ok {
		return &ValidationError{Collection: collection, Field: field, Reason: "field not in schema", Err: ErrUnknownField}
	}
	kind := map[crdt.FieldType]crdt.Kind{crdt.Register: crdt.KindWrite, crdt.Set: crdt.KindAdd, crdt.Log: crdt.KindAppend}[f.CRDT]
	return s.ValidateOp(&crdt.Op{Collection: collection, Field: field, Kind: kind, Value: raw})
}

// rawStringOK is ValidateOp's fast path for the commonest op: a string,
// text or enum field given one msgpack string. It reports true only for
// a value the full check (DecodeValue, then Field.check) accepts, reading
// the bytes in place; on false the full check runs and says why, so an
// invalid value gets exactly the error it always did.
func (f *Field) rawStringOK(raw []byte) bool {
	switch f.Type {
	case TypeString, TypeText, TypeEnum:
	default:
		return false
	}
	p, ok := rawString(raw)
	if !ok {
		return false
	}
	if f.Type == TypeEnum {
		return f.enumSet[string(p)] // no copy: the compiler reads p in place
	}
	return (f.MaxLength <= 0 || len(p) <= f.MaxLength) && utf8.Valid(p)
}

// rawString returns the bytes of a string if raw is exactly one msgpack
// string (fixstr, str 8, str 16 or str 32) and nothing else.
func rawString(raw []byte) ([]byte, bool) {
	if len(raw) == 0 {
		return nil, false
	}
	var n, h int
	switch c := raw[0]; {
	case c >= 0xa0 && c <= 0xbf:
		n, h = int(c&0x1f), 1
	case c == 0xd9 && len(raw) >= 2:
		n, h = int(raw[1]), 2
	case c == 0xda && len(raw) >= 3:
		n, h = int(binary.BigEndian.Uint16(raw[1:])), 3
	case c == 0xdb && len(raw) >= 5:
		n, h = int(binary.BigEndian.Uint32(raw[1:])), 5
	default:
		return nil, false
	}
	if len(raw)-h != n {
		return nil, false
	}
	return raw[h:], true
}
