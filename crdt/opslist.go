package crdt

import (
	"bytes"
	"encoding/binary"
)

// The fast path of OpsBytes.Ops: one pass over each op in the form AppendOp
// writes (a fixmap of one-letter keys, str8 or shorter strings, IDs as
// bin8 of 24 bytes, a kind as a positive fixint, preds in a fixarray or
// array16), decoding it in place and checking the limits CheckLimits would
// on the way, instead of a CheckLimits pass, a decoding pass, and a third
// look at the value in Validate. It accepts only ops that the general path
// (scan, fastOp or msgpack, Validate) accepts, and decodes them to the
// same Op: its own structure stays far inside DefaultLimits (at most 15
// keys, 65,535 preds and 65,535-byte strings), and the value is scanned
// with one level of nesting and half the values fewer than DefaultLimits
// allow, so the op as a whole passes them. On anything else it reports
// !ok and Ops decodes that op by the general path, which then says what
// is wrong exactly as before (FuzzOpsBytes checks that the two agree).
//
// Consecutive ops of one change name the same team, collection and
// record, and a few field names over and over: a string is allocated per
// run of equal team, collection or record bytes and once per distinct
// field name, not per op. Values and preds are copied into chunks shared
// by the ops of one call (a value keeps at most its chunk alive, a few
// KB), so decoding allocates per op only what is new.

// valueLimits bound an op's value inside the fast path: one level less
// deep than DefaultLimits (the op's map is a level) and half the values,
// leaving room for the op's keys and preds.
var valueLimits = Limits{MaxDepth: DefaultLimits.MaxDepth - 1, MaxLen: DefaultLimits.MaxLen, MaxItems: DefaultLimits.MaxItems / 2}

// Chunk sizes of the value and pred arenas, and the largest value copied
// into a chunk rather than on its own.
const (
	valueChunk    = 4 << 10
	valueOwnAbove = 512
	predChunk     = 64
	maxInterned   = 1024 // distinct field names kept per call
)

// minOpBytes is the fewest bytes a valid op takes in any encoding: a map
// header, a 24-byte bin ID with its key, four non-empty strings with their
// keys and a kind. Ops presizes its result to no more ops than that allows.
const minOpBytes = 1 + (2 + 2 + OpIDSize) + 4*(2+2) + (2 + 1)

type opsDecoder struct {
	b []byte

	// The previous op's team, collection and record (their bytes in b),
	// reused while the next op's are equal.
	team, coll, rec    []byte
	teamS, collS, recS string

	fields map[string]int // field names met so far: their index in names
	names  []string       // the same, in the order first met
	at     int            // index in names of the previous op's field

	vals []byte // value arena: the current chunk, filled to len
	ids  []OpID // pred arena: the current chunk, filled to len
}

// run returns the string of raw, reusing *s when raw equals *prev.
func run(raw []byte, prev *[]byte, s *string) string {
	if *prev == nil || !bytes.Equal(raw, *prev) {
		*prev, *s = raw, string(raw)
	}
	return *s
}

// field returns the string of a field name, interned for the call. The
// ops of one change name fields in the same order record after record, so
// the name after the previous op's is tried first, then that one again.
func (d *opsDecoder) field(raw []byte) string {
	if i := d.at + 1; i < len(d.names) && string(raw) == d.names[i] {
		d.at = i
		return d.names[i]
	}
	if len(d.names) > 0 {
		if string(raw) == d.names[d.at] {
			return d.names[d.at]
		}
		if string(raw) == d.names[0] {
			d.at = 0
			return d.names[0]
		}
	}
	if i, ok := d.fields[string(raw)]; ok {
		d.at = i
		return d.names[i]
	}
	s := string(raw)
	if d.fields == nil {
		d.fields = make(map[string]int, 32)
	}
	if len(d.names) < maxInterned {
		d.fields[s] = len(d.names)
		d.names = append(d.names, s)
		d.at = len(d.names) - 1
	}
	return s
}

// value returns a copy of v that aliases nothing of the input.
func (d *opsDecoder) value(v []byte, p int) []byte {
	n := len(v)
	if n > valueOwnAbove {
		return bytes.Clone(v)
	}
	if cap(d.vals)-len(d.vals) < n {
		// Values still to come fit in what remains of the input.
		d.vals = make([]byte, 0, max(n, min(valueChunk, len(d.b)-p+n)))
	}
	start := len(d.vals)
	d.vals = append(d.vals, v...)
	return d.vals[start:len(d.vals):len(d.vals)]
}

// preds returns room for m IDs in the pred arena.
func (d *opsDecoder) preds(m, p int) []OpID {
	if m > predChunk/4 {
		return make([]OpID, m)
	}
	if cap(d.ids)-len(d.ids) < m {
		d.ids = make([]OpID, 0, max(m, min(predChunk, (len(d.b)-p)/(2+OpIDSize)+m)))
	}
	start := len(d.ids)
	d.ids = d.ids[:start+m]
	return d.ids[start : start+m : start+m]
}

// str reads a fixstr, str8 or str16 at p and returns its bytes and the
// offset after it.
func (d *opsDecoder) str(p int) ([]byte, int, bool) {
	b := d.b
	if p >= len(b) {
		return nil, p, false
	}
	c := b[p]
	var n int
	switch {
	case c&0xe0 == 0xa0:
		n, p = int(c&0x1f), p+1
	case c == 0xd9 && p+1 < len(b):
		n, p = int(b[p+1]), p+2
	case c == 0xda && p+2 < len(b):
		n, p = int(binary.BigEndian.Uint16(b[p+1:])), p+3
	default:
		return nil, p, false
	}
	if n > len(b)-p {
		return nil, p, false
	}
	return b[p : p+n], p + n, true
}

// id reads a bin8 of 24 bytes at p.
func (d *opsDecoder) id(p int) (OpID, bool) {
	b := d.b
	if len(b)-p < 2+OpIDSize || b[p] != 0xc4 || b[p+1] != OpIDSize {
		return OpID{}, false
	}
	var id OpID
	id.Time = Timestamp(binary.BigEndian.Uint64(b[p+2:]))
	copy(id.Replica[:], b[p+10:p+2+OpIDSize])
	return id, true
}

// op decodes the op at p into op and returns the offset after it, or
// reports !ok for anything the general path must decide (see above).
func (d *opsDecoder) op(p int, op *Op) (int, bool) {
	b := d.b
	if p >= len(b) || b[p]&0xf0 != 0x80 {
		return p, false
	}
	n := int(b[p] & 0x0f)
	p++
	*op = Op{}
	for range n {
		if len(b)-p < 3 || b[p] != 0xa1 {
			return p, false
		}
		k := b[p+1]
		p += 2
		var raw []byte
		var ok bool
		switch k {
		case 'i':
			if op.ID, ok = d.id(p); !ok {
				return p, false
			}
			p += 2 + OpIDSize
		case 't':
			if raw, p, ok = d.str(p); !ok {
				return p, false
			}
			op.Team = run(raw, &d.team, &d.teamS)
		case 'c':
			if raw, p, ok = d.str(p); !ok {
				return p, false
			}
			op.Collection = run(raw, &d.coll, &d.collS)
		case 'r':
			if raw, p, ok = d.str(p); !ok {
				return p, false
			}
			op.Record = run(raw, &d.rec, &d.recS)
		case 'f':
			if raw, p, ok = d.str(p); !ok {
				return p, false
			}
			op.Field = d.field(raw)
		case 'k':
			if b[p] > 0x7f {
				return p, false
			}
			op.Kind = Kind(b[p])
			p++
		case 'v':
			end := shortEnd(b, p)
			if end == 0 {
				var err error
				if end, err = scan(b, p, valueLimits); err != nil {
					return p, false
				}
			}
			op.Value = d.value(b[p:end], end)
			p = end
		case 'p':
			var m int
			if m, p, ok = shortArrayLen(b, p); !ok {
				return p, false
			}
			if m == 0 {
				op.Pred = nil
				break
			}
			if m > (len(b)-p)/(2+OpIDSize) {
				return p, false
			}
			ids := d.preds(m, p)
			for i := range ids {
				if ids[i], ok = d.id(p); !ok {
					return p, false
				}
				p += 2 + OpIDSize
			}
			op.Pred = ids
		default:
			return p, false
		}
	}
	if op.validate(false) != nil {
		return p, false
	}
	return p, true
}
