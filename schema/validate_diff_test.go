package schema

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/doorstep-health/doorstep/crdt"
)

// validateOpReference is ValidateOp as it was before its fast path for
// string values (rawStringOK): every op decoded with DecodeValue and
// checked with Field.ValidateValue. TestValidateOpMatchesReference holds
// the two to the same answer.
func (s *Schema) validateOpReference(op *crdt.Op) error {
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
	if got := op.Kind.FieldType(); got != f.CRDT {
		return verr(ErrWrongType, "%s op on a %s field", op.Kind, f.CRDT)
	}
	if op.Kind == crdt.KindRemove && len(op.Value) == 0 {
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

// strForms encodes s as a msgpack string in every header form that can
// hold it (fixstr, str 8, str 16, str 32), not only the shortest.
func strForms(s string) [][]byte {
	var out [][]byte
	n := len(s)
	if n < 32 {
		out = append(out, append([]byte{0xa0 | byte(n)}, s...))
	}
	if n < 256 {
		out = append(out, append([]byte{0xd9, byte(n)}, s...))
	}
	if n < 65536 {
		out = append(out, append(binary.BigEndian.AppendUint16([]byte{0xda}, uint16(n)), s...))
	}
	return append(out, append(binary.BigEndian.AppendUint32([]byte{0xdb}, uint32(n)), s...))
}

// TestValidateOpMatchesReference checks that ValidateOp gives the same
// answer, error text and sentinel included, as the reference for every
// field of the default schema and of a schema with bounded strings, every
// op kind, and strings of every header form and of lengths around each
// bound, valid and not, truncated and with trailing bytes, besides values
// of other types.
func TestValidateOpMatchesReference(t *testing.T) {
	ext, err := Default().Extend([]byte(fmt.Sprintf(`{"version": %d, "collections": [{"name": "diff_rows", "fields": [
		{"name": "s", "type": "string", "max_length": 20},
		{"name": "t", "type": "text", "max_length": 300},
		{"name": "u", "type": "string"},
		{"name": "e", "type": "enum", "values": ["a", "bb"], "crdt": "set"}]}]}`, Default().Version()+1)))
	if err != nil {
		t.Fatal(err)
	}
	var strs []string
	for _, n := range []int{0, 1, 2, 19, 20, 21, 31, 32, 255, 256, 299, 300, 301, 65535, 65536} {
		strs = append(strs, strings.Repeat("x", n))
	}
	strs = append(strs, "a", "bb", "b", "A", "héllo", "\xff", "ok\xc3", "dog", "cat", "Margaret", "1938-04-02", "9434765919")
	var values [][]byte
	for _, s := range strs {
		for _, b := range strForms(s) {
			values = append(values, b)
			if len(b) > 0 {
				values = append(values, b[:len(b)-1])    // truncated
				values = append(values, append(b, 0xa0)) // trailing bytes
			}
		}
	}
	values = append(values, nil, []byte{}, []byte{0xd9}, []byte{0xda, 0x00}, []byte{0xdb, 0, 0, 0},
		[]byte{0xc0}, []byte{0xc2}, []byte{0xc3}, []byte{0x05}, []byte{0xcc, 0xff},
		mv(t, map[string]any{"instrument": "ons4"}), mv(t, []string{"a"}), mv(t, []byte("bin")))
	// For the default schema's fields: strings of a few forms and
	// lengths, each field's own enum values, and the other types.
	var short [][]byte
	for _, s := range []string{"", "Margaret", "\xff", "dog", "1938-04-02", "9434765919", strings.Repeat("x", 40)} {
		for _, b := range strForms(s)[:2] {
			short = append(short, b, b[:len(b)-1], append(b, 0xa0))
		}
	}
	short = append(short, values[len(values)-13:]...)
	n := 0
	for _, s := range []*Schema{Default(), ext} {
		for _, c := range s.Collections() {
			fields := []string{crdt.DeletedField, "no_such_field"}
			for _, f := range c.Fields {
				fields = append(fields, f.Name)
			}
			// The default schema's fields with short values only, to
			// keep the test quick; the bounds are the extension's.
			vals := short
			if c.Name == "diff_rows" {
				vals = values
			}
			for _, field := range fields {
				kinds := []crdt.Kind{crdt.KindWrite, crdt.KindRemove, crdt.KindAppend}
				if f, ok := c.Field(field); ok && f.CRDT == crdt.Set {
					kinds = []crdt.Kind{crdt.KindAdd, crdt.KindRemove, crdt.KindWrite}
				}
				fvals := vals
				if f, ok := c.Field(field); ok && len(f.Enum) > 0 {
					fvals = slices.Clone(vals)
					for _, e := range f.Enum {
						fvals = append(fvals, strForms(e)[:2]...)
						fvals = append(fvals, strForms(e + "x")[0])
					}
				}
				for _, k := range kinds {
					for _, v := range fvals {
						op := &crdt.Op{Collection: c.Name, Field: field, Kind: k, Value: v}
						got, want := s.ValidateOp(op), s.validateOpReference(op)
						n++
						if f, ok := c.Field(field); ok {
							if fgot := f.ValidateOp(op); fmt.Sprint(fgot) != fmt.Sprint(got) || !sameSentinel(fgot, got) {
								t.Fatalf("%s.%s %v %x: Field.ValidateOp says %v, Schema.ValidateOp %v", c.Name, field, k, clipBytes(v), fgot, got)
							}
						}
						if fmt.Sprint(got) != fmt.Sprint(want) || (got == nil) != (want == nil) ||
							!sameSentinel(got, want) {
							t.Fatalf("%s.%s %v %x: ValidateOp says %v, the reference %v", c.Name, field, k, clipBytes(v), got, want)
						}
					}
				}
			}
		}
	}
	t.Logf("%d ops compared", n)
}

func sameSentinel(a, b error) bool {
	for _, s := range []error{ErrUnknownCollection, ErrUnknownField, ErrWrongType, ErrInvalidValue} {
		if errors.Is(a, s) != errors.Is(b, s) {
			return false
		}
	}
	return true
}

func clipBytes(b []byte) []byte {
	if len(b) > 24 {
		return b[:24]
	}
	return b
}
