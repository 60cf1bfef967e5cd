package crdt

// The version 2 state decoder as it was before issue 17's third pass,
// kept as the reference FuzzUnmarshalRecord holds decodeStateV2 to.

import (
	"bytes"
	"fmt"
)

// refStateReader reads msgpack from a byte slice in any of the forms msgpack
// allows for each value (every integer width, str8 keys, and so on). It
// never reads past the slice, never allocates more than what remains of
// it, and records the first error.
type refStateReader struct {
	b     []byte
	arena []byte // a copy of b that decoded values slice into
	p     int
	err   error
}

func (r *refStateReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: record state: %s at byte %d", ErrMalformed, what, r.p)
	}
}

func (r *refStateReader) need(n int) bool {
	if r.err != nil {
		return false
	}
	if n < 0 || n > len(r.b)-r.p {
		r.fail("truncated")
		return false
	}
	return true
}

func (r *refStateReader) code() byte {
	if !r.need(1) {
		return 0
	}
	c := r.b[r.p]
	r.p++
	return c
}

func (r *refStateReader) be(n int) uint64 {
	if !r.need(n) {
		return 0
	}
	var v uint64
	for _, c := range r.b[r.p : r.p+n] {
		v = v<<8 | uint64(c)
	}
	r.p += n
	return v
}

// length reads a map or array header (nil reads as 0).
func (r *refStateReader) length(fix byte, c16, c32 byte) int {
	c := r.code()
	var n uint64
	switch {
	case c&0xf0 == fix:
		n = uint64(c & 0x0f)
	case c == c16:
		n = r.be(2)
	case c == c32:
		n = r.be(4)
	case c == 0xc0:
		return 0
	default:
		r.fail(fmt.Sprintf("unexpected 0x%02x", c))
		return 0
	}
	if n > uint64(len(r.b)-r.p) {
		r.fail("length beyond the input")
		return 0
	}
	return int(n)
}

func (r *refStateReader) mapLen() int   { return r.length(0x80, 0xde, 0xdf) }
func (r *refStateReader) arrayLen() int { return r.length(0x90, 0xdc, 0xdd) }

func (r *refStateReader) strBytes() []byte {
	c := r.code()
	var n uint64
	switch {
	case c&0xe0 == 0xa0:
		n = uint64(c & 0x1f)
	case c == 0xd9:
		n = r.be(1)
	case c == 0xda:
		n = r.be(2)
	case c == 0xdb:
		n = r.be(4)
	default:
		r.fail(fmt.Sprintf("want a string, got 0x%02x", c))
		return nil
	}
	if !r.need(int(min(n, 1<<31))) {
		return nil
	}
	s := r.b[r.p : r.p+int(n)]
	r.p += int(n)
	return s
}

func (r *refStateReader) bin() []byte {
	c := r.code()
	var n uint64
	switch c {
	case 0xc4:
		n = r.be(1)
	case 0xc5:
		n = r.be(2)
	case 0xc6:
		n = r.be(4)
	default:
		r.fail(fmt.Sprintf("want bytes, got 0x%02x", c))
		return nil
	}
	if !r.need(int(min(n, 1<<31))) {
		return nil
	}
	s := r.b[r.p : r.p+int(n)]
	r.p += int(n)
	return s
}

func (r *refStateReader) uint() uint64 {
	c := r.code()
	switch {
	case c <= 0x7f:
		return uint64(c)
	case c == 0xcc:
		return r.be(1)
	case c == 0xcd:
		return r.be(2)
	case c == 0xce:
		return r.be(4)
	case c == 0xcf:
		return r.be(8)
	case c >= 0xd0 && c <= 0xd3:
		n := 1 << (c - 0xd0)
		v := r.be(n)
		if v>>(8*n-1) != 0 {
			r.fail("negative integer")
			return 0
		}
		return v
	}
	r.fail(fmt.Sprintf("want an unsigned integer, got 0x%02x", c))
	return 0
}

// raw returns the next value's bytes (a copy: decoded states never alias
// their input).
func (r *refStateReader) raw() []byte {
	if r.err != nil {
		return nil
	}
	end, err := scan(r.b, r.p, DefaultLimits)
	if err != nil {
		r.fail(err.Error())
		return nil
	}
	if r.arena == nil {
		r.arena = bytes.Clone(r.b)
	}
	v := r.arena[r.p:end:end]
	r.p = end
	return v
}

func (r *refStateReader) skip() {
	if r.err != nil {
		return
	}
	end, err := scan(r.b, r.p, DefaultLimits)
	if err != nil {
		r.fail(err.Error())
		return
	}
	r.p = end
}

// errNotV2 reports a state map without the "z" key: version 1.

// decodeStateV2Reference decodes the version 2 encoding, or returns errNotV2 for a
// map without a "z" key. It checks the form, not the invariants (Validate
// does). Keys may come in any order; in the canonical order (table and
// base before what refers to them) it reads the bytes once.
func decodeStateV2Reference(b []byte) (*Record, error) {
	r := &refStateReader{b: b}
	var at [128]int // offset+1 of each one-letter key's value, 0 if absent
	var done [128]bool
	rec := &Record{}
	var table []ReplicaID
	var base uint64
	ready := false // table and base read
	readRefs := func() {
		save := r.p
		if p := at['w']; p != 0 {
			r.p = p - 1
			t := r.bin()
			if len(t)%16 != 0 {
				r.fail("replica table length")
			}
			table = make([]ReplicaID, len(t)/16)
			for i := range table {
				copy(table[i][:], t[16*i:])
			}
		}
		if p := at['b']; p != 0 {
			r.p = p - 1
			base = r.uint()
		}
		r.p = save
		ready = true
	}
	id := func(prev *uint64) OpID {
		i, dt := r.uint(), r.uint()
		if r.err != nil {
			return OpID{}
		}
		if i >= uint64(len(table)) {
			r.fail("replica index out of the table")
			return OpID{}
		}
		t := *prev + dt
		if t < *prev {
			r.fail("time overflows")
			return OpID{}
		}
		*prev = t
		return OpID{Time: Timestamp(t), Replica: table[i]}
	}
	ids := func() []OpID {
		m := r.arrayLen()
		if m%2 != 0 {
			r.fail("odd id list")
			return nil
		}
		var out []OpID
		if m > 0 {
			out = make([]OpID, 0, m/2)
		}
		prev := base
		for range m / 2 {
			if r.err != nil {
				return nil
			}
			out = append(out, id(&prev))
		}
		return out
	}
	parseLate := func(k byte) {
		switch k {
		case 'v':
			m := r.arrayLen()
			if m%2 != 0 {
				r.fail("odd clock")
			}
			if m > 0 {
				rec.Clock = make([]Seen, 0, m/2)
			}
			for range m / 2 {
				if r.err != nil {
					break
				}
				p := base
				x := id(&p)
				rec.Clock = append(rec.Clock, Seen{Replica: x.Replica, Time: x.Time})
			}
		case 'f':
			nf := r.mapLen()
			rec.Fields = make(map[string]*Field, min(nf, maxPrealloc))
			for range nf {
				if r.err != nil {
					break
				}
				name := string(r.strBytes())
				if _, dup := rec.Fields[name]; dup {
					r.fail(fmt.Sprintf("field %q twice", name))
					break
				}
				if r.need(1) && r.b[r.p] == 0xc0 {
					r.p++
					rec.Fields[name] = nil
					continue
				}
				rec.Fields[name] = r.field(id, ids, base)
			}
		case 'd':
			rec.DeleteSeen = ids()
		case 's':
			rec.Skipped = ids()
		}
	}
	isLate := func(k byte) bool { return k == 'v' || k == 'f' || k == 'd' || k == 's' }
	n := r.mapLen()
	for range n {
		k := r.strBytes()
		if r.err != nil {
			break
		}
		if len(k) != 1 || k[0] >= 128 {
			r.skip()
			continue
		}
		c := k[0]
		if at[c] != 0 {
			r.fail(fmt.Sprintf("key %q twice", k))
			break
		}
		at[c] = r.p + 1
		switch {
		case c == 'c' || c == 'r' || c == 't':
			v := string(r.strBytes())
			switch c {
			case 'c':
				rec.Collection = v
			case 'r':
				rec.ID = v
			default:
				rec.Team = v
			}
		case c == 'z':
			if v := r.uint(); r.err == nil && v != StateVersion {
				return nil, fmt.Errorf("%w: record state version %d, this build reads %d", ErrMalformed, v, StateVersion)
			}
		case isLate(c) && at['w'] != 0 && at['b'] != 0 && at['z'] != 0:
			if !ready {
				readRefs()
			}
			parseLate(c)
			done[c] = true
		default:
			r.skip()
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if r.p != len(b) {
		return nil, fmt.Errorf("%w: record state: %d trailing bytes", ErrMalformed, len(b)-r.p)
	}
	if at['z'] == 0 {
		return nil, errNotV2
	}
	if !ready {
		readRefs()
	}
	for _, c := range []byte{'v', 'f', 'd', 's'} {
		if at[c] != 0 && !done[c] {
			r.p = at[c] - 1
			parseLate(c)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if rec.Fields == nil {
		rec.Fields = map[string]*Field{}
	}
	return rec, nil
}

// field reads one field of a version 2 state.
func (r *refStateReader) field(id func(*uint64) OpID, ids func() []OpID, base uint64) *Field {
	f := &Field{}
	seenKeys := 0
	for range r.mapLen() {
		k := r.strBytes()
		if r.err != nil {
			break
		}
		if len(k) != 1 {
			r.skip()
			continue
		}
		bit := 0
		switch k[0] {
		case 'y':
			bit = 1
			t := r.uint()
			if t > 255 {
				r.fail("field type")
			}
			f.Type = FieldType(t)
		case 'e':
			bit = 2
			m := r.arrayLen()
			if m%3 != 0 {
				r.fail("entry list")
				break
			}
			if m > 0 {
				f.Entries = make([]Entry, 0, m/3)
			}
			prev := base
			for range m / 3 {
				if r.err != nil {
					break
				}
				e := Entry{ID: id(&prev)}
				e.Value = r.raw()
				f.Entries = append(f.Entries, e)
			}
		case 'p':
			bit = 4
			f.Pending = ids()
		default:
			r.skip()
		}
		if seenKeys&bit != 0 {
			r.fail(fmt.Sprintf("field key %q twice", k))
		}
		seenKeys |= bit
	}
	return f
}

// fromV1 converts a version 1 state (per-field removed IDs) to the causal
// context form. Version 1 states were built by the same delivery paths,
// which keep each replica's ops in ID order (package doc), so every ID it
// lists, live or removed, is one the state applied (or, for a removed ID
// never applied, one whose arrival must be ignored, which covering it
// does): the clock is the highest time per replica among them. The
// removed IDs of DeletedField that are live somewhere are what the delete
// saw.
