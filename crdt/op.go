package crdt

import (
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Errors callers branch on. Errors returned by this package wrap one of them.
var (
	// ErrMalformed: bytes or values that do not form a valid op or state.
	ErrMalformed = errors.New("crdt: malformed")
	// ErrKindMismatch: an op or state of one field type applied to a field
	// of another (a set add on a register, say).
	ErrKindMismatch = errors.New("crdt: field type mismatch")
	// ErrWrongRecord: an op or state for a different record, or a record
	// claimed by a different team.
	ErrWrongRecord = errors.New("crdt: op is for another record")
)

// Kind says what an op does to its field, and so fixes the field's type.
type Kind uint8

// The op kinds. The zero Kind is invalid.
const (
	// KindWrite sets a register to Value, overwriting the entries in Pred.
	KindWrite Kind = 1
	// KindAdd adds the element Value to a set; the op's ID is the add tag.
	KindAdd Kind = 2
	// KindRemove removes from a set the add tags in Pred (those of element
	// Value that the remover had seen). Concurrent adds survive.
	KindRemove Kind = 3
	// KindAppend appends Value to a log. Devices send no pred; a server
	// re-issuing a held-back op late names the original in Pred, which
	// replaces it (see Record.Skip).
	KindAppend Kind = 4
)

// FieldType is the CRDT type of a field.
type FieldType uint8

// The field types. The zero FieldType is invalid.
const (
	Register FieldType = 1 // multi-value register
	Set      FieldType = 2 // add-wins observed-remove set
	Log      FieldType = 3 // append-only log
)

// String returns the type's lower-case name, or "FieldType(n)" for an
// unknown one.
func (t FieldType) String() string {
	switch t {
	case Register:
		return "register"
	case Set:
		return "set"
	case Log:
		return "log"
	}
	return fmt.Sprintf("FieldType(%d)", uint8(t))
}

// ParseFieldType parses "register", "set" or "log".
func ParseFieldType(s string) (FieldType, error) {
	switch s {
	case "register":
		return Register, nil
	case "set":
		return Set, nil
	case "log":
		return Log, nil
	}
	return 0, fmt.Errorf("%w: unknown field type %q", ErrMalformed, s)
}

// FieldType returns the field type an op of kind k applies to, or 0 for an
// unknown kind.
func (k Kind) FieldType() FieldType {
	switch k {
	case KindWrite:
		return Register
	case KindAdd, KindRemove:
		return Set
	case KindAppend:
		return Log
	}
	return 0
}

// String returns the kind's lower-case name, or "Kind(n)" for an unknown
// one.
func (k Kind) String() string {
	switch k {
	case KindWrite:
		return "write"
	case KindAdd:
		return "add"
	case KindRemove:
		return "remove"
	case KindAppend:
		return "append"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// DeletedField is the reserved register that marks a record deleted. A
// delete is a write of true to it (see Record.Delete); writing false
// restores the record.
const DeletedField = "_deleted"

// Op is one change to one field of one record. Value is the msgpack
// encoding of the written value, set element or log entry; the crdt package
// treats it as opaque bytes and compares it bytewise.
//
// Wire form: a msgpack map with the short keys in the struct tags; ID and
// Pred entries are 24-byte bins (see OpID).
type Op struct {
	ID         OpID               `msgpack:"i"`
	Team       string             `msgpack:"t"`
	Collection string             `msgpack:"c"`
	Record     string             `msgpack:"r"`
	Field      string             `msgpack:"f"`
	Kind       Kind               `msgpack:"k"`
	Value      msgpack.RawMessage `msgpack:"v,omitempty"`
	Pred       []OpID             `msgpack:"p,omitempty"`
}

// Validate checks the op's own shape: non-zero ID, names present, a known
// kind, a value where the kind needs one that is exactly one well-formed
// msgpack value within DefaultLimits, and every pred naming an older op of
// some replica. A pred on an add or append replaces the entries it names;
// only a server re-issuing a held-back op makes one (sync refuses them
// from devices).
func (o *Op) Validate() error { return o.validate(true) }

// validate is Validate; checkValue false leaves out the value's limits,
// for a decoder that has checked them already.
func (o *Op) validate(checkValue bool) error {
	switch {
	case o.ID.IsZero() || o.ID.Replica.IsZero():
		return fmt.Errorf("%w: op has no id", ErrMalformed)
	case o.Team == "" || o.Collection == "" || o.Record == "" || o.Field == "":
		return fmt.Errorf("%w: op %s lacks team, collection, record or field", ErrMalformed, o.ID)
	case o.Kind.FieldType() == 0:
		return fmt.Errorf("%w: op %s has unknown kind %d", ErrMalformed, o.ID, o.Kind)
	case o.Kind != KindRemove && len(o.Value) == 0:
		return fmt.Errorf("%w: %s op %s has no value", ErrMalformed, o.Kind, o.ID)
	}
	if checkValue && len(o.Value) > 0 && shortEnd(o.Value, 0) != len(o.Value) {
		if err := CheckLimits(o.Value, DefaultLimits); err != nil {
			return fmt.Errorf("%w: op %s value: %w", ErrMalformed, o.ID, err)
		}
	}
	for _, p := range o.Pred {
		if p.Replica.IsZero() {
			return fmt.Errorf("%w: op %s names pred %s of no replica", ErrMalformed, o.ID, p)
		}
		if p.Compare(o.ID) >= 0 {
			return fmt.Errorf("%w: op %s names pred %s that is not older", ErrMalformed, o.ID, p)
		}
	}
	return nil
}

// MustValue returns the msgpack encoding of v, for building ops in tests
// and examples. It panics if v cannot be encoded.
func MustValue(v any) msgpack.RawMessage {
	b, err := EncodeValue(v)
	if err != nil {
		panic(err)
	}
	return b
}

// EncodeValue returns the msgpack encoding of v as an op value, with
// integers in their smallest form and the keys of map[string]any,
// map[string]string and map[string]bool sorted. Values are compared
// bytewise (a set's elements, say), so equal values must encode equally:
// build them with EncodeValue, and use structs or those map types rather
// than other maps, whose keys msgpack writes in random order.
func EncodeValue(v any) (msgpack.RawMessage, error) {
	// The commonest values without the reflecting encoder, in the bytes
	// it would write (TestEncodeValueFastPath).
	switch x := v.(type) {
	case string:
		return appendStr(make([]byte, 0, 5+len(x)), x), nil
	case bool:
		if x {
			return msgpack.RawMessage{0xc3}, nil
		}
		return msgpack.RawMessage{0xc2}, nil
	}
	b, err := marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode value: %w", err)
	}
	return b, nil
}
