package crdt

import (
	"bytes"
	"encoding/binary"
)

// The fast path of UnmarshalOp and UnmarshalRecord: a decoder over the byte
// slice for exactly the form AppendOp and AppendRecord write (one-letter
// keys, compact type numbers, IDs as bin8 of 24 bytes). It allocates the
// strings, one copy of the input that every value slices into, and the
// structs, and nothing per key or ID. On anything else (unknown keys, other
// encodings msgpack would accept, errors) it reports !ok and the caller
// falls back to the msgpack decoder, so the two paths accept exactly the
// same inputs with the same results (FuzzUnmarshalOp and
// FuzzUnmarshalRecord check that they agree). It runs only after
// CheckLimits has passed, so lengths are known to fit in what remains.

type fastReader struct {
	b     []byte // the input
	arena []byte // a copy of the input that decoded values slice into
	p     int
	ok    bool
}

func newFastReader(b []byte) *fastReader {
	return &fastReader{b: b, ok: true}
}

func (r *fastReader) fail() { r.ok = false }

func (r *fastReader) byte() byte {
	if !r.ok || r.p >= len(r.b) {
		r.fail()
		return 0
	}
	c := r.b[r.p]
	r.p++
	return c
}

func (r *fastReader) need(n int) bool {
	if !r.ok || n < 0 || n > len(r.b)-r.p {
		r.fail()
		return false
	}
	return true
}

func (r *fastReader) length(c byte, fix, fixMask, c16, c32 byte) int {
	switch {
	case c&^fixMask == fix:
		return int(c & fixMask)
	case c == c16 && r.need(2):
		n := int(binary.BigEndian.Uint16(r.b[r.p:]))
		r.p += 2
		return n
	case c == c32 && r.need(4):
		n := int(binary.BigEndian.Uint32(r.b[r.p:]))
		r.p += 4
		return n
	}
	r.fail()
	return 0
}

func (r *fastReader) mapLen() int   { return r.length(r.byte(), 0x80, 0x0f, 0xde, 0xdf) }
func (r *fastReader) arrayLen() int { return r.length(r.byte(), 0x90, 0x0f, 0xdc, 0xdd) }

func (r *fastReader) str() string {
	c := r.byte()
	var n int
	switch {
	case c&^0x1f == 0xa0: // fixstr
		n = int(c & 0x1f)
	case c == 0xd9 && r.need(1): // str8
		n = int(r.b[r.p])
		r.p++
	case c == 0xda || c == 0xdb: // str16, str32
		n = r.length(c, 0xa0, 0x1f, 0xda, 0xdb)
	default:
		r.fail()
	}
	if !r.need(n) {
		return ""
	}
	s := string(r.b[r.p : r.p+n])
	r.p += n
	return s
}

// key reads a one-letter key, the only kind this form has.
func (r *fastReader) key() byte {
	if r.byte() != 0xa1 {
		r.fail()
		return 0
	}
	return r.byte()
}

// small reads a positive fixint, the form of kinds and field types.
func (r *fastReader) small() uint8 {
	c := r.byte()
	if c > 0x7f {
		r.fail()
	}
	return c
}

func (r *fastReader) id() OpID {
	if r.byte() != 0xc4 || r.byte() != OpIDSize || !r.need(OpIDSize) {
		r.fail()
		return OpID{}
	}
	var id OpID
	id.Time = Timestamp(binary.BigEndian.Uint64(r.b[r.p:]))
	copy(id.Replica[:], r.b[r.p+8:r.p+OpIDSize])
	r.p += OpIDSize
	return id
}

func (r *fastReader) ids() []OpID {
	n := r.arrayLen()
	if !r.ok || n == 0 || !r.need(n*(2+OpIDSize)) {
		return nil
	}
	ids := make([]OpID, n)
	for i := range ids {
		ids[i] = r.id()
	}
	return ids
}

// raw returns the next value's bytes, sliced from the arena copy so the
// result does not alias the caller's buffer.
func (r *fastReader) raw() []byte {
	if !r.ok {
		return nil
	}
	end, err := scan(r.b, r.p, DefaultLimits)
	if err != nil {
		r.fail()
		return nil
	}
	if r.arena == nil {
		r.arena = bytes.Clone(r.b)
	}
	v := r.arena[r.p:end:end]
	r.p = end
	return v
}

func (r *fastReader) entries() []Entry {
	n := r.arrayLen()
	if !r.ok || !r.need(n) {
		return nil
	}
	es := make([]Entry, n)
	for i := range es {
		for range r.mapLen() {
			switch r.key() {
			case 'i':
				es[i].ID = r.id()
			case 'v':
				es[i].Value = r.raw()
			default:
				r.fail()
			}
			if !r.ok {
				return nil
			}
		}
	}
	return es
}

func (r *fastReader) field() (*Field, []OpID) {
	f := new(Field)
	var removed []OpID
	for range r.mapLen() {
		switch r.key() {
		case 'y':
			f.Type = FieldType(r.small())
		case 'e':
			f.Entries = r.entries()
		case 'x':
			removed = r.ids()
		default:
			r.fail()
		}
		if !r.ok {
			return nil, nil
		}
	}
	return f, removed
}

// fastRecordV1 decodes b as the version 1 encoder wrote it, with each
// field's removed IDs, or reports !ok.
func fastRecordV1(b []byte) (*Record, map[string][]OpID, bool) {
	r := newFastReader(b)
	rec := new(Record)
	removed := map[string][]OpID{}
	for range r.mapLen() {
		switch r.key() {
		case 'c':
			rec.Collection = r.str()
		case 'r':
			rec.ID = r.str()
		case 't':
			rec.Team = r.str()
		case 'f':
			n := r.mapLen()
			if !r.ok || !r.need(2*n) {
				return nil, nil, false
			}
			rec.Fields = make(map[string]*Field, n)
			for range n {
				name := r.str()
				if _, dup := rec.Fields[name]; dup || !r.ok {
					return nil, nil, false
				}
				f, rm := r.field()
				rec.Fields[name] = f
				if rm != nil {
					removed[name] = rm
				}
			}
		default:
			r.fail()
		}
		if !r.ok {
			return nil, nil, false
		}
	}
	return rec, removed, r.ok && r.p == len(b)
}

// fastOp decodes b as AppendOp writes it, or reports !ok.
func fastOp(b []byte) (*Op, bool) {
	r := newFastReader(b)
	op := new(Op)
	for range r.mapLen() {
		switch r.key() {
		case 'i':
			op.ID = r.id()
		case 't':
			op.Team = r.str()
		case 'c':
			op.Collection = r.str()
		case 'r':
			op.Record = r.str()
		case 'f':
			op.Field = r.str()
		case 'k':
			op.Kind = Kind(r.small())
		case 'v':
			op.Value = r.raw()
		case 'p':
			op.Pred = r.ids()
		default:
			r.fail()
		}
		if !r.ok {
			return nil, false
		}
	}
	return op, r.ok && r.p == len(b)
}
