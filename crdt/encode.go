package crdt

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// MarshalOp returns the msgpack encoding of op (see AppendOp). It does not
// validate op; the error is always nil and is kept for callers' symmetry.
func MarshalOp(op *Op) ([]byte, error) {
	return AppendOp(make([]byte, 0, opSize(op)), op), nil
}

// UnmarshalOp decodes an op and checks it with Validate. It returns an error
// wrapping ErrMalformed for bytes that are not a valid op, and also
// ErrTooLarge for bytes beyond DefaultLimits (see CheckLimits, which it calls
// first, so no length prefix can make it allocate more than a small multiple
// of len(b)). It never panics.
func UnmarshalOp(b []byte) (*Op, error) {
	op, err := decodeOp(b, true)
	if err != nil {
		return nil, err
	}
	if err := op.Validate(); err != nil {
		return nil, err
	}
	return op, nil
}

// decodeOp decodes an op after CheckLimits, by the fast path if fast and b
// is in the form AppendOp writes, else by the msgpack decoder.
func decodeOp(b []byte, fast bool) (*Op, error) {
	if err := checkLimits(b); err != nil {
		return nil, err
	}
	if fast {
		if op, ok := fastOp(b); ok {
			return op, nil
		}
	}
	var op Op
	if err := unmarshal(b, &op); err != nil {
		return nil, err
	}
	return &op, nil
}

// MarshalRecord returns the canonical msgpack encoding of r: map keys sorted,
// entries and removed IDs in ID order. Equal states encode to equal bytes.
func MarshalRecord(r *Record) ([]byte, error) {
	var table [8]ReplicaID
	var fields [48]fieldRef
	s := r.refs(table[:0], fields[:0])
	return r.appendState(make([]byte, 0, s.size), &s), nil
}

// UnmarshalRecord decodes a record state, in the version 2 encoding or the
// version 1 encoding (converted, see StateVersion), and checks its
// invariants (see Validate). Its errors wrap ErrMalformed, and
// ErrTooLarge for bytes beyond DefaultLimits, as UnmarshalOp's do. It never
// panics.
func UnmarshalRecord(b []byte) (*Record, error) {
	r, err := decodeRecord(b, true)
	if err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

// UnmarshalRecordHeld is UnmarshalRecord for a store moving its states to
// the current encoding: held names ops that the store's owner holds back
// (a server's quarantine). In a version 1 state, a held op the state does
// not list (live or removed) becomes Skipped, so that the clock taken from
// the state does not cover it; one it lists was overwritten or removed
// and stays covered. In a version 2 state it changes nothing (such states
// record held ops themselves).
func UnmarshalRecordHeld(b []byte, held []OpID) (*Record, error) {
	if err := checkLimits(b); err != nil {
		return nil, err
	}
	r, err := decodeStateV2(b)
	if err != nil && !errors.Is(err, errNotV2) {
		return nil, err
	}
	if err != nil {
		rec, removed, ok := fastRecordV1(b)
		if !ok {
			v := new(v1Record)
			if err := unmarshal(b, v); err != nil {
				return nil, err
			}
			rec, removed = v.rec, v.removed
		}
		if err := checkV1(rec, removed); err != nil {
			return nil, err
		}
		listed := func(id OpID) bool {
			for name, f := range rec.Fields {
				if f.HasEntry(id) || containsID(removed[name], id) {
					return true
				}
			}
			return false
		}
		var skip []OpID
		for _, id := range held {
			if !id.Replica.IsZero() && !listed(id) {
				skip = append(skip, id)
			}
		}
		fromV1(rec, removed)
		rec.Skipped = sortIDs(skip)
		if rec.Fields == nil {
			rec.Fields = map[string]*Field{}
		}
		r = rec
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

// decodeRecord decodes a record state after CheckLimits: the version 2
// encoding, or version 1 (by the fast path if fast and b is in the form
// the version 1 encoder wrote, else by the msgpack decoder), converted.
func decodeRecord(b []byte, fast bool) (*Record, error) {
	if err := checkLimits(b); err != nil {
		return nil, err
	}
	return decodeRecordBytes(b, fast)
}

// decodeRecordBytes is decodeRecord without the limits check, for bytes
// already checked.
func decodeRecordBytes(b []byte, fast bool) (*Record, error) {
	r, err := decodeStateV2(b)
	if err != nil && !errors.Is(err, errNotV2) {
		return nil, err
	}
	if err != nil {
		var removed map[string][]OpID
		ok := false
		if fast {
			r, removed, ok = fastRecordV1(b)
		}
		if !ok {
			v := new(v1Record)
			if err := unmarshal(b, v); err != nil {
				return nil, err
			}
			r, removed = v.rec, v.removed
		}
		if err := checkV1(r, removed); err != nil {
			return nil, err
		}
		fromV1(r, removed)
	}
	if r.Fields == nil {
		r.Fields = map[string]*Field{}
	}
	return r, nil
}

// checkLimits runs CheckLimits with DefaultLimits, its errors wrapping
// ErrMalformed as well.
func checkLimits(b []byte) error {
	if err := CheckLimits(b, DefaultLimits); err != nil {
		if errors.Is(err, ErrMalformed) {
			return err
		}
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return nil
}

// Validate checks the invariants every state built by this package holds,
// and that Merge relies on: team, collection and ID present; the clock
// sorted by replica with no zero replica; every field non-nil, of a known
// type, with entries sorted, duplicate-free and covered by the clock, and
// pending IDs sorted, duplicate-free and not covered; Skipped sorted and
// duplicate-free; DeleteSeen sorted, each ID live or not covered; and
// DeletedField a register.
// UnmarshalRecord calls it; call it on a Record assembled by hand or from
// another source before merging it.
func (r *Record) Validate() error {
	if r.Collection == "" || r.ID == "" || r.Team == "" {
		return fmt.Errorf("%w: record lacks team, collection or id", ErrMalformed)
	}
	for i, c := range r.Clock {
		if c.Replica.IsZero() {
			return fmt.Errorf("%w: clock entry of no replica", ErrMalformed)
		}
		if i > 0 && bytes.Compare(r.Clock[i-1].Replica[:], c.Replica[:]) >= 0 {
			return fmt.Errorf("%w: clock not sorted", ErrMalformed)
		}
	}
	for name, f := range r.Fields {
		if f == nil {
			return fmt.Errorf("%w: field %q is nil", ErrMalformed, name)
		}
		if err := f.check(r); err != nil {
			return fmt.Errorf("field %q: %w", name, err)
		}
		if name == DeletedField && f.Type != Register {
			return fmt.Errorf("%w: %s is a %s, not a register", ErrMalformed, DeletedField, f.Type)
		}
	}
	for i, id := range r.Skipped {
		if id.Replica.IsZero() {
			return fmt.Errorf("%w: skipped id of no replica", ErrMalformed)
		}
		if i > 0 && r.Skipped[i-1].Compare(id) >= 0 {
			return fmt.Errorf("%w: skipped ids not sorted", ErrMalformed)
		}
	}
	for i, id := range r.DeleteSeen {
		if id.Replica.IsZero() {
			return fmt.Errorf("%w: delete-seen id of no replica", ErrMalformed)
		}
		if i > 0 && r.DeleteSeen[i-1].Compare(id) >= 0 {
			return fmt.Errorf("%w: delete-seen ids not sorted", ErrMalformed)
		}
		if r.Covers(id) && !r.liveAnywhere(id) {
			return fmt.Errorf("%w: delete-seen id %s is neither live nor pending", ErrMalformed, id)
		}
	}
	return nil
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

// unmarshal decodes b, which has passed CheckLimits, with the msgpack
// decoder.
func unmarshal(b []byte, v msgpack.CustomDecoder) (err error) {
	// msgpack/v5 reports most bad input as errors; the recover is a last
	// line of defence so that outside bytes can never crash a caller.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: decoder panic: %v", ErrMalformed, p)
		}
	}()
	rd := bytes.NewReader(b)
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(rd)
	if err := v.DecodeMsgpack(dec); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if rd.Len() != 0 {
		return fmt.Errorf("%w: %d trailing bytes after %T", ErrMalformed, rd.Len(), v)
	}
	return nil
}

// The hand-written codecs below produce exactly the wire form the struct tags
// describe. They exist because msgpack/v5's reflection codec cannot be made
// canonical or faithful here: it writes Go maps in random order, writes nil
// and empty slices differently, and decodes a msgpack nil into a RawMessage
// as "no value", losing a written null. Decoders skip unknown keys, so newer
// peers can add fields, and never preallocate more than a few elements from
// a length prefix.

// maxPrealloc bounds what a decoder allocates up front from a length prefix.
const maxPrealloc = 64

// DecodeMsgpack reads the form written by EncodeMsgpack. A msgpack nil value
// is kept as the one-byte value nil (0xc0), not dropped. It does not call
// Validate; UnmarshalOp does.
func (o *Op) DecodeMsgpack(dec *msgpack.Decoder) error {
	*o = Op{}
	return decodeMap(dec, "op", func(key byte) (err error) {
		switch key {
		case 'i':
			err = o.ID.DecodeMsgpack(dec)
		case 't':
			o.Team, err = dec.DecodeString()
		case 'c':
			o.Collection, err = dec.DecodeString()
		case 'r':
			o.Record, err = dec.DecodeString()
		case 'f':
			o.Field, err = dec.DecodeString()
		case 'k':
			var k uint64
			if k, err = dec.DecodeUint64(); err == nil && k > 255 {
				err = fmt.Errorf("%w: op kind %d", ErrMalformed, k)
			}
			o.Kind = Kind(k)
		case 'v':
			o.Value, err = dec.DecodeRaw()
		case 'p':
			o.Pred, err = decodeIDs(dec)
		default:
			err = dec.Skip()
		}
		return err
	})
}

// DecodeMsgpack reads the form written by EncodeMsgpack, keeping a msgpack
// nil value as the one-byte value nil.
func (e *Entry) DecodeMsgpack(dec *msgpack.Decoder) error {
	*e = Entry{}
	return decodeMap(dec, "entry", func(key byte) (err error) {
		switch key {
		case 'i':
			err = e.ID.DecodeMsgpack(dec)
		case 'v':
			e.Value, err = dec.DecodeRaw()
		default:
			err = dec.Skip()
		}
		return err
	})
}

// decodeMap reads a msgpack map whose keys are one letter, as every struct
// this package encodes is, calling decodeValue with each key (0 for a key
// of another length) to decode its value. decodeValue must skip the value
// of a key it does not know. Its errors are wrapped with what and the key.
func decodeMap(dec *msgpack.Decoder, what string, decodeValue func(key byte) error) error {
	n, err := dec.DecodeMapLen()
	if err != nil {
		return err
	}
	for range n {
		key, err := decodeKey(dec)
		if err != nil {
			return err
		}
		if err := decodeValue(key); err != nil {
			return fmt.Errorf("%s key %q: %w", what, key, err)
		}
	}
	return nil
}

// decodeKey reads a map key of a struct this package encodes. Its keys are
// one letter, returned as that byte (one-byte strings cost no allocation);
// any other key returns 0, so that its value is skipped.
func decodeKey(dec *msgpack.Decoder) (byte, error) {
	s, err := dec.DecodeString()
	if err != nil || len(s) != 1 {
		return 0, err
	}
	return s[0], nil
}

func decodeIDs(dec *msgpack.Decoder) ([]OpID, error) {
	n, err := dec.DecodeArrayLen()
	if err != nil || n <= 0 {
		return nil, err
	}
	ids := make([]OpID, 0, min(n, maxPrealloc))
	for range n {
		var id OpID
		if err := id.DecodeMsgpack(dec); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// DecodeMsgpack reads the form written by EncodeMsgpack. It does not check
// the field's invariants; UnmarshalRecord does.
func (f *Field) DecodeMsgpack(dec *msgpack.Decoder) error {
	*f = Field{}
	return decodeMap(dec, "field", func(key byte) (err error) {
		switch key {
		case 'y':
			var t uint64
			if t, err = dec.DecodeUint64(); err == nil && t > 255 {
				err = fmt.Errorf("%w: field type %d", ErrMalformed, t)
			}
			f.Type = FieldType(t)
		case 'e':
			f.Entries, err = decodeEntries(dec)
		case 'p':
			f.Pending, err = decodeIDs(dec)
		default:
			err = dec.Skip()
		}
		return err
	})
}

func decodeEntries(dec *msgpack.Decoder) ([]Entry, error) {
	n, err := dec.DecodeArrayLen()
	if err != nil || n < 0 {
		return nil, err
	}
	es := make([]Entry, 0, min(n, maxPrealloc))
	for range n {
		var e Entry
		if err := e.DecodeMsgpack(dec); err != nil {
			return nil, err
		}
		es = append(es, e)
	}
	return es, nil
}

// DecodeMsgpack reads the form written by EncodeMsgpack (or the version 1
// form, converted). A field written as nil decodes as a nil *Field, which
// UnmarshalRecord refuses. It does not call Validate; UnmarshalRecord
// does.
func (r *Record) DecodeMsgpack(dec *msgpack.Decoder) error {
	raw, err := dec.DecodeRaw()
	if err != nil {
		return err
	}
	if err := CheckLimits(raw, DefaultLimits); err != nil {
		return err
	}
	rec, err := decodeRecordBytes(raw, true)
	if err != nil {
		return err
	}
	*r = *rec
	return nil
}

// v1Record decodes the version 1 record encoding: fields whose "x" key
// lists removed IDs.
type v1Record struct {
	rec     *Record
	removed map[string][]OpID
}

// DecodeMsgpack reads the version 1 form.
func (v *v1Record) DecodeMsgpack(dec *msgpack.Decoder) error {
	r := &Record{}
	v.rec, v.removed = r, map[string][]OpID{}
	return decodeMap(dec, "record", func(key byte) (err error) {
		switch key {
		case 'c':
			r.Collection, err = dec.DecodeString()
		case 'r':
			r.ID, err = dec.DecodeString()
		case 't':
			r.Team, err = dec.DecodeString()
		case 'f':
			r.Fields, err = decodeV1Fields(dec, v.removed)
		default:
			err = dec.Skip()
		}
		return err
	})
}

func decodeV1Fields(dec *msgpack.Decoder, removed map[string][]OpID) (map[string]*Field, error) {
	n, err := dec.DecodeMapLen()
	if err != nil || n < 0 {
		return nil, err
	}
	fields := make(map[string]*Field, min(n, maxPrealloc))
	for range n {
		name, err := dec.DecodeString()
		if err != nil {
			return nil, err
		}
		if _, dup := fields[name]; dup {
			return nil, fmt.Errorf("%w: field %q twice", ErrMalformed, name)
		}
		var f *Field
		if code, err := dec.PeekCode(); err != nil {
			return nil, err
		} else if code == msgpcode.Nil {
			_ = dec.Skip()
		} else {
			f = new(Field)
			err := decodeMap(dec, "field", func(key byte) (err error) {
				switch key {
				case 'y':
					var t uint64
					if t, err = dec.DecodeUint64(); err == nil && t > 255 {
						err = fmt.Errorf("%w: field type %d", ErrMalformed, t)
					}
					f.Type = FieldType(t)
				case 'e':
					f.Entries, err = decodeEntries(dec)
				case 'x':
					var ids []OpID
					ids, err = decodeIDs(dec)
					removed[name] = ids
				default:
					err = dec.Skip()
				}
				return err
			})
			if err != nil {
				return nil, fmt.Errorf("field %q: %w", name, err)
			}
		}
		fields[name] = f
	}
	return fields, nil
}

// checkV1 checks what version 1 required of a state: team, collection and
// ID, known field types, entries and removed IDs sorted and
// duplicate-free, no entry also removed, no removals in a log, and
// DeletedField a register.
func checkV1(r *Record, removed map[string][]OpID) error {
	if r.Collection == "" || r.ID == "" || r.Team == "" {
		return fmt.Errorf("%w: record lacks team, collection or id", ErrMalformed)
	}
	for name, f := range r.Fields {
		if f == nil {
			return fmt.Errorf("%w: field %q is nil", ErrMalformed, name)
		}
		if f.Type < Register || f.Type > Log {
			return fmt.Errorf("field %q: %w: unknown field type %d", name, ErrMalformed, f.Type)
		}
		rm := removed[name]
		for i := range f.Entries {
			if f.Entries[i].ID.Replica.IsZero() || len(f.Entries[i].Value) == 0 {
				return fmt.Errorf("field %q: %w: entry without id or value", name, ErrMalformed)
			}
			if i > 0 && f.Entries[i-1].ID.Compare(f.Entries[i].ID) >= 0 {
				return fmt.Errorf("field %q: %w: entries not sorted", name, ErrMalformed)
			}
			if containsID(rm, f.Entries[i].ID) {
				return fmt.Errorf("field %q: %w: entry %s is also removed", name, ErrMalformed, f.Entries[i].ID)
			}
		}
		for i := range rm {
			if rm[i].Replica.IsZero() {
				return fmt.Errorf("field %q: %w: removed id of no replica", name, ErrMalformed)
			}
			if i > 0 && rm[i-1].Compare(rm[i]) >= 0 {
				return fmt.Errorf("field %q: %w: removed ids not sorted", name, ErrMalformed)
			}
		}
		if f.Type == Log && len(rm) > 0 {
			return fmt.Errorf("field %q: %w: log with removed entries", name, ErrMalformed)
		}
		if name == DeletedField && f.Type != Register {
			return fmt.Errorf("%w: %s is a %s, not a register", ErrMalformed, DeletedField, f.Type)
		}
	}
	for name := range removed {
		if r.Fields[name] == nil {
			return fmt.Errorf("%w: removed ids of a missing field %q", ErrMalformed, name)
		}
	}
	return nil
}
