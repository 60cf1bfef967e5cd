package schema

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxValueDepth bounds the nesting of arrays and maps in a value DecodeValue
// accepts.
const MaxValueDepth = 16

// errDecode marks bytes that are not one well-formed msgpack value.
var errDecode = errors.New("not a well-formed msgpack value")

// DecodeValue decodes one msgpack value from outside bytes into nil, bool,
// int64, uint64 (only above math.MaxInt64), float64, string, []byte, []any
// or map[string]any. Allocation is bounded by len(b): a length prefix longer
// than the bytes that remain is an error, as is nesting deeper than
// MaxValueDepth, a map key that is not a string, a duplicate key, an
// extension type, or trailing bytes. It never panics.
func DecodeValue(b []byte) (any, error) {
	d := decoder{b: b}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.off != len(b) {
		return nil, fmt.Errorf("%w: %d trailing bytes", errDecode, len(b)-d.off)
	}
	return v, nil
}

type decoder struct {
	b   []byte
	off int
}

func (d *decoder) need(n uint64) ([]byte, error) {
	if n > uint64(len(d.b)-d.off) {
		return nil, fmt.Errorf("%w: %d bytes wanted at offset %d, %d left", errDecode, n, d.off, len(d.b)-d.off)
	}
	p := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return p, nil
}

func (d *decoder) uint(n int) (uint64, error) {
	p, err := d.need(uint64(n))
	if err != nil {
		return 0, err
	}
	switch n {
	case 1:
		return uint64(p[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(p)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(p)), nil
	default:
		return binary.BigEndian.Uint64(p), nil
	}
}

func (d *decoder) value(depth int) (any, error) {
	if depth > MaxValueDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", errDecode, MaxValueDepth)
	}
	p, err := d.need(1)
	if err != nil {
		return nil, err
	}
	c := p[0]
	switch {
	case c <= 0x7f:
		return int64(c), nil
	case c >= 0xe0:
		return int64(int8(c)), nil
	case c >= 0x80 && c <= 0x8f:
		return d.mapOf(uint64(c&0x0f), depth)
	case c >= 0x90 && c <= 0x9f:
		return d.arrayOf(uint64(c&0x0f), depth)
	case c >= 0xa0 && c <= 0xbf:
		return d.str(uint64(c & 0x1f))
	}
	switch c {
	case 0xc0:
		return nil, nil
	case 0xc2:
		return false, nil
	case 0xc3:
		return true, nil
	case 0xc4, 0xc5, 0xc6:
		n, err := d.uint(1 << (c - 0xc4))
		if err != nil {
			return nil, err
		}
		p, err := d.need(n)
		if err != nil {
			return nil, err
		}
		return append([]byte(nil), p...), nil
	case 0xca:
		u, err := d.uint(4)
		if err != nil {
			return nil, err
		}
		return float64(math.Float32frombits(uint32(u))), nil
	case 0xcb:
		u, err := d.uint(8)
		if err != nil {
			return nil, err
		}
		return math.Float64frombits(u), nil
	case 0xcc, 0xcd, 0xce, 0xcf:
		u, err := d.uint(1 << (c - 0xcc))
		if err != nil {
			return nil, err
		}
		if u > math.MaxInt64 {
			return u, nil
		}
		return int64(u), nil
	case 0xd0, 0xd1, 0xd2, 0xd3:
		n := 1 << (c - 0xd0)
		u, err := d.uint(n)
		if err != nil {
			return nil, err
		}
		switch n {
		case 1:
			return int64(int8(u)), nil
		case 2:
			return int64(int16(u)), nil
		case 4:
			return int64(int32(u)), nil
		}
		return int64(u), nil
	case 0xd9, 0xda, 0xdb:
		n, err := d.uint(1 << (c - 0xd9))
		if err != nil {
			return nil, err
		}
		return d.str(n)
	case 0xdc, 0xdd:
		n, err := d.uint(2 << (c - 0xdc))
		if err != nil {
			return nil, err
		}
		return d.arrayOf(n, depth)
	case 0xde, 0xdf:
		n, err := d.uint(2 << (c - 0xde))
		if err != nil {
			return nil, err
		}
		return d.mapOf(n, depth)
	}
	return nil, fmt.Errorf("%w: unsupported type byte 0x%02x", errDecode, c)
}

func (d *decoder) str(n uint64) (string, error) {
	p, err := d.need(n)
	if err != nil {
		return "", err
	}
	return string(p), nil
}

func (d *decoder) arrayOf(n uint64, depth int) ([]any, error) {
	// Every element takes at least one byte, so n is bounded by what is left.
	if n > uint64(len(d.b)-d.off) {
		return nil, fmt.Errorf("%w: array of %d elements in %d bytes", errDecode, n, len(d.b)-d.off)
	}
	out := make([]any, 0, n)
	for range n {
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (d *decoder) mapOf(n uint64, depth int) (map[string]any, error) {
	if n > uint64(len(d.b)-d.off)/2 {
		return nil, fmt.Errorf("%w: map of %d entries in %d bytes", errDecode, n, len(d.b)-d.off)
	}
	out := make(map[string]any, n)
	for range n {
		k, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		ks, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("%w: map key of type %T, want string", errDecode, k)
		}
		if _, dup := out[ks]; dup {
			return nil, fmt.Errorf("%w: duplicate map key %q", errDecode, ks)
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		out[ks] = v
	}
	return out, nil
}

// typeName names a decoded value's msgpack type for error messages.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "nil"
	case bool:
		return "bool"
	case int64, uint64:
		return "integer"
	case float64:
		return "float"
	case string:
		return "string"
	case []byte:
		return "binary"
	case []any:
		return "array"
	case map[string]any:
		return "map"
	}
	return fmt.Sprintf("%T", v)
}

// valueError is a failed value check; wrong says whether the value had the
// wrong type (ErrWrongType) rather than a bad value of the right type
// (ErrInvalidValue). path names the property inside an object, if any.
type valueError struct {
	path   string
	reason string
	wrong  bool
}

func (e *valueError) Error() string { return e.reason }

func wrongType(f *Field, v any) *valueError {
	return &valueError{reason: fmt.Sprintf("%s value is a msgpack %s", f.Type, typeName(v)), wrong: true}
}

func invalid(format string, args ...any) *valueError {
	return &valueError{reason: fmt.Sprintf(format, args...)}
}

// ValidateValue checks one decoded value (as DecodeValue returns it)
// against the field's value type and constraints. A nil value is not
// accepted here; ValidateOp allows nil only as a register write that
// clears the field. The error wraps ErrWrongType or ErrInvalidValue.
func (f *Field) ValidateValue(v any) error {
	if ve := f.check(v); ve != nil {
		sentinel := ErrInvalidValue
		if ve.wrong {
			sentinel = ErrWrongType
		}
		name := f.Name
		if ve.path != "" {
			name += "." + ve.path
		}
		return &ValidationError{Field: name, Reason: ve.reason, Err: sentinel}
	}
	return nil
}

func (f *Field) check(v any) *valueError {
	switch f.Type {
	case TypeString, TypeText:
		s, ok := v.(string)
		if !ok {
			return wrongType(f, v)
		}
		return checkString(s, f.MaxLength)
	case TypeInt:
		n, ok := v.(int64)
		if !ok {
			if _, big := v.(uint64); big {
				return invalid("integer above %d", int64(math.MaxInt64))
			}
			return wrongType(f, v)
		}
		return f.checkRange(n)
	case TypeBool:
		if _, ok := v.(bool); !ok {
			return wrongType(f, v)
		}
		return nil
	case TypeDate:
		s, ok := v.(string)
		if !ok {
			return wrongType(f, v)
		}
		if _, err := time.Parse(time.DateOnly, s); err != nil || len(s) != len(time.DateOnly) {
			return invalid("date %q is not YYYY-MM-DD", clip(s))
		}
		return nil
	case TypeDateTime:
		s, ok := v.(string)
		if !ok {
			return wrongType(f, v)
		}
		if len(s) > 64 {
			return invalid("datetime of %d bytes", len(s))
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			return invalid("datetime %q is not RFC 3339", clip(s))
		}
		return nil
	case TypeEnum:
		s, ok := v.(string)
		if !ok {
			return wrongType(f, v)
		}
		if !f.enumSet[s] {
			return invalid("%q is not one of the allowed values %v", clip(s), f.Enum)
		}
		return nil
	case TypeNHSNumber:
		s, ok := v.(string)
		if !ok {
			return wrongType(f, v)
		}
		if err := CheckNHSNumber(s); err != nil {
			return invalid("%v", err)
		}
		return nil
	case TypeIntMap:
		m, ok := v.(map[string]any)
		if !ok {
			return wrongType(f, v)
		}
		if len(m) > 64 {
			return invalid("%d entries, at most 64", len(m))
		}
		for k, x := range m {
			if err := checkString(k, 64); err != nil {
				return invalid("key: %s", err.reason)
			}
			n, ok := x.(int64)
			if !ok {
				return &valueError{path: k, reason: fmt.Sprintf("value is a msgpack %s, want integer", typeName(x)), wrong: true}
			}
			if err := f.checkRange(n); err != nil {
				err.path = k
				return err
			}
		}
		return nil
	case TypeAttachment:
		return checkAttachment(v)
	case TypeObject:
		m, ok := v.(map[string]any)
		if !ok {
			return wrongType(f, v)
		}
		for k, x := range m {
			p, ok := f.props[k]
			if !ok {
				return &valueError{path: clip(k), reason: "unknown property"}
			}
			if x == nil {
				continue // an absent optional property may be sent as nil
			}
			if err := p.check(x); err != nil {
				if err.path == "" {
					err.path = k
				} else {
					err.path = k + "." + err.path
				}
				return err
			}
		}
		for _, p := range f.Properties {
			if p.RequiredOnCreate && m[p.Name] == nil {
				return &valueError{path: p.Name, reason: "required property missing"}
			}
		}
		if f.Check == CheckInstrumentResponse {
			inst, _ := m["instrument"].(string)
			answers := map[string]int{}
			am, _ := m["answers"].(map[string]any)
			for k, x := range am {
				n, _ := x.(int64)
				answers[k] = int(n)
			}
			if err := ValidateResponse(inst, answers); err != nil {
				return &valueError{path: "answers", reason: err.Error()}
			}
		}
		return nil
	}
	return invalid("unknown value type %q", f.Type)
}

func (f *Field) checkRange(n int64) *valueError {
	if f.Min != nil && n < *f.Min {
		return invalid("%d is below the minimum %d", n, *f.Min)
	}
	if f.Max != nil && n > *f.Max {
		return invalid("%d is above the maximum %d", n, *f.Max)
	}
	return nil
}

func checkString(s string, max int) *valueError {
	if max > 0 && len(s) > max {
		return invalid("%d bytes, at most %d", len(s), max)
	}
	if !utf8.ValidString(s) {
		return invalid("not valid UTF-8")
	}
	return nil
}

// clip shortens a value quoted in an error message.
func clip(s string) string {
	if len(s) <= 40 {
		return s
	}
	return strings.ToValidUTF8(s[:40], "") + "…"
}
