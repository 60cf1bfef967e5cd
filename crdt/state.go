package crdt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// StateVersion is the version of the record state encoding that
// MarshalRecord and AppendRecord write (the "z" key). Version 1, the
// encoding before it, had no "z" key and kept removed IDs per field;
// UnmarshalRecord still reads it and converts it (see the package doc,
// "State encoding").
const StateVersion = 2

// stateRefs collects the replicas and the lowest time a state refers to,
// and what else one pass over the record learns for encoding it: its
// field names, sorted, and an estimate of its encoded size.
type stateRefs struct {
	table  []ReplicaID
	base   Timestamp
	any    bool
	fields []fieldRef // the record's fields, in name order
	size   int
}

// fieldRef is one field to encode, with the first 8 bytes of its name as
// a number that sorts as the name does (ties broken by the name).
type fieldRef struct {
	key  uint64
	name string
	f    *Field
}

func nameKey(name string) uint64 {
	var k [8]byte
	copy(k[:], name)
	return binary.BigEndian.Uint64(k[:])
}

func compareFieldRefs(a, b fieldRef) int {
	switch {
	case a.key < b.key:
		return -1
	case a.key > b.key:
		return 1
	}
	return strings.Compare(a.name, b.name)
}

// addRef adds id to a table and lowest time being collected.
func addRef(table []ReplicaID, base *Timestamp, any *bool, id OpID) []ReplicaID {
	if !*any || id.Time < *base {
		*base, *any = id.Time, true
	}
	// Most IDs of a state are of a replica just seen: skip those here,
	// the sort and compact at the end drop the rest.
	for i := len(table) - 1; i >= max(0, len(table)-4); i-- {
		if table[i] == id.Replica {
			return table
		}
	}
	return append(table, id.Replica)
}

func (s *stateRefs) index(rep ReplicaID) uint64 {
	if len(s.table) <= 8 {
		for i := range s.table {
			if s.table[i] == rep {
				return uint64(i)
			}
		}
	}
	i, _ := slices.BinarySearchFunc(s.table, rep, func(a, b ReplicaID) int { return bytes.Compare(a[:], b[:]) })
	return uint64(i)
}

// refs reads r once for AppendRecord, appending to table and fields
// (which the caller may give room on its stack).
func (r *Record) refs(table []ReplicaID, fields []fieldRef) stateRefs {
	var base Timestamp
	var any bool
	size := 48 + len(r.Collection) + len(r.ID) + len(r.Team) + 28*len(r.Clock) + 12*len(r.DeleteSeen)
	for _, c := range r.Clock {
		table = addRef(table, &base, &any, OpID{Time: c.Time, Replica: c.Replica})
	}
	for name, f := range r.Fields {
		fields = append(fields, fieldRef{key: nameKey(name), name: name, f: f})
		size += 16 + len(name)
		if f == nil {
			continue
		}
		size += 12 * len(f.Pending)
		for i := range f.Entries {
			table = addRef(table, &base, &any, f.Entries[i].ID)
			size += 12 + len(f.Entries[i].Value)
		}
		for _, p := range f.Pending {
			table = addRef(table, &base, &any, p)
		}
	}
	for _, p := range r.DeleteSeen {
		table = addRef(table, &base, &any, p)
	}
	for _, p := range r.Skipped {
		table = addRef(table, &base, &any, p)
	}
	size += 16*len(table) + 12*len(r.Skipped)
	if len(table) > 1 {
		slices.SortFunc(table, func(a, b ReplicaID) int { return bytes.Compare(a[:], b[:]) })
		table = slices.Compact(table)
	}
	slices.SortFunc(fields, compareFieldRefs)
	return stateRefs{table: table, base: base, any: any, fields: fields, size: size}
}

// AppendRecord appends the canonical msgpack encoding of r to dst, as
// MarshalRecord does: state encoding version 2.
func AppendRecord(dst []byte, r *Record) []byte {
	var table [8]ReplicaID
	var fields [48]fieldRef
	s := r.refs(table[:0], fields[:0])
	return r.appendState(dst, &s)
}

// appendState appends r's encoding, given what refs read of it.
func (r *Record) appendState(dst []byte, s *stateRefs) []byte {
	n := 8
	if len(r.DeleteSeen) > 0 {
		n++
	}
	if len(r.Skipped) > 0 {
		n++
	}
	b := appendMapLen(dst, n)
	b = appendStr(appendStr(b, "c"), r.Collection)
	b = appendStr(appendStr(b, "r"), r.ID)
	b = appendStr(appendStr(b, "t"), r.Team)
	b = appendUint(appendStr(b, "z"), StateVersion)
	b = appendStr(b, "w")
	b = appendBinLen(b, len(s.table)*len(ReplicaID{}))
	for _, rep := range s.table {
		b = append(b, rep[:]...)
	}
	b = appendUint(appendStr(b, "b"), uint64(s.base))
	b = appendArrayLen(appendStr(b, "v"), 2*len(r.Clock))
	for _, c := range r.Clock {
		b = appendUint(appendUint(b, s.index(c.Replica)), uint64(c.Time-s.base))
	}
	b = appendStr(b, "f")
	b = appendMapLen(b, len(r.Fields))
	for _, fr := range s.fields {
		b = appendStr(b, fr.name)
		f := fr.f
		if f == nil {
			b = append(b, 0xc0)
			continue
		}
		m := 2
		if len(f.Pending) > 0 {
			m = 3
		}
		b = appendMapLen(b, m)
		b = appendUint(appendStr(b, "y"), uint64(f.Type))
		b = appendArrayLen(appendStr(b, "e"), 3*len(f.Entries))
		prev := s.base
		for i := range f.Entries {
			e := &f.Entries[i]
			b = appendUint(appendUint(b, s.index(e.ID.Replica)), uint64(e.ID.Time-prev))
			prev = e.ID.Time
			if len(e.Value) == 0 {
				b = append(b, 0xc0)
			} else {
				b = append(b, e.Value...)
			}
		}
		if m == 3 {
			b = s.appendIDs(appendStr(b, "p"), f.Pending)
		}
	}
	if len(r.DeleteSeen) > 0 {
		b = s.appendIDs(appendStr(b, "d"), r.DeleteSeen)
	}
	if len(r.Skipped) > 0 {
		b = s.appendIDs(appendStr(b, "s"), r.Skipped)
	}
	return b
}

// appendIDs writes sorted IDs as [index, time delta]... pairs, each time
// relative to the one before (the first to the base).
func (s *stateRefs) appendIDs(b []byte, ids []OpID) []byte {
	b = appendArrayLen(b, 2*len(ids))
	prev := s.base
	for _, id := range ids {
		b = appendUint(appendUint(b, s.index(id.Replica)), uint64(id.Time-prev))
		prev = id.Time
	}
	return b
}

func appendBinLen(b []byte, n int) []byte {
	switch {
	case n <= 0xff:
		return append(b, 0xc4, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 0xc5), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(n))
}

// stateReader reads msgpack from a byte slice in any of the forms msgpack
// allows for each value (every integer width, str8 keys, and so on). It
// never reads past the slice, never allocates more than what remains of
// it, and records the first error.
type stateReader struct {
	b     []byte
	arena []byte // a copy of b that decoded values slice into
	p     int
	err   error
}

func (r *stateReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: record state: %s at byte %d", ErrMalformed, what, r.p)
	}
}

func (r *stateReader) need(n int) bool {
	if r.err != nil {
		return false
	}
	if n < 0 || n > len(r.b)-r.p {
		r.fail("truncated")
		return false
	}
	return true
}

func (r *stateReader) code() byte {
	if !r.need(1) {
		return 0
	}
	c := r.b[r.p]
	r.p++
	return c
}

func (r *stateReader) be(n int) uint64 {
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
func (r *stateReader) length(fix byte, c16, c32 byte) int {
	if r.err == nil && r.p < len(r.b) {
		// The fix forms, inlined: headers of fields, entries, pairs.
		if c := r.b[r.p]; c&0xf0 == fix && int(c&0x0f) <= len(r.b)-r.p-1 {
			r.p++
			return int(c & 0x0f)
		}
	}
	return r.lengthSlow(fix, c16, c32)
}

func (r *stateReader) lengthSlow(fix byte, c16, c32 byte) int {
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

func (r *stateReader) mapLen() int   { return r.length(0x80, 0xde, 0xdf) }
func (r *stateReader) arrayLen() int { return r.length(0x90, 0xdc, 0xdd) }

func (r *stateReader) strBytes() []byte {
	if r.err == nil && r.p < len(r.b) {
		// A fixstr, inlined: keys and field names.
		if c := r.b[r.p]; c&0xe0 == 0xa0 && int(c&0x1f) < len(r.b)-r.p {
			s := r.b[r.p+1 : r.p+1+int(c&0x1f)]
			r.p += 1 + int(c&0x1f)
			return s
		}
	}
	return r.strBytesSlow()
}

func (r *stateReader) strBytesSlow() []byte {
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

func (r *stateReader) bin() []byte {
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

func (r *stateReader) uint() uint64 {
	if r.err == nil && r.p < len(r.b) && r.b[r.p] <= 0x7f { // a fixint, inlined
		r.p++
		return uint64(r.b[r.p-1])
	}
	return r.uintSlow()
}

func (r *stateReader) uintSlow() uint64 {
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
func (r *stateReader) raw() []byte {
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

func (r *stateReader) skip() {
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
var errNotV2 = errors.New("crdt: not a version 2 state")

// span is where a string lies in the input.
type span struct{ start, end int }

// v2Reader decodes one version 2 state. Its strings (collection, ID,
// team, field names) are cut from one string holding them all, its fields
// from one slice, their entries from a few shared chunks and their values
// from one copy of the input: a state of F fields allocates a handful of
// times, not a few times per field.
type v2Reader struct {
	stateReader
	rec   *Record
	table []ReplicaID
	base  uint64

	strs   [3]span      // collection, ID, team
	fields []namedField // the fields, in the order read
	fs     []Field      // room for the fields
	es     []Entry      // room for entries: the current chunk
}

// namedField is a field read and where its name lies (f is nil for a
// field written as nil).
type namedField struct {
	name span
	f    *Field
}

// id reads one [index, time delta] pair, the delta from *prev.
func (r *v2Reader) id(prev *uint64) OpID {
	i, dt := r.uint(), r.uint()
	if r.err != nil {
		return OpID{}
	}
	if i >= uint64(len(r.table)) {
		r.fail("replica index out of the table")
		return OpID{}
	}
	t := *prev + dt
	if t < *prev {
		r.fail("time overflows")
		return OpID{}
	}
	*prev = t
	return OpID{Time: Timestamp(t), Replica: r.table[i]}
}

// ids reads a list of [index, time delta] pairs.
func (r *v2Reader) ids() []OpID {
	m := r.arrayLen()
	if m%2 != 0 {
		r.fail("odd id list")
		return nil
	}
	var out []OpID
	if m > 0 {
		out = make([]OpID, 0, m/2)
	}
	prev := r.base
	for range m / 2 {
		if r.err != nil {
			return nil
		}
		out = append(out, r.id(&prev))
	}
	return out
}

// readRefs reads the replica table and the base time, wherever they are.
func (r *v2Reader) readRefs(at *[128]int) {
	save := r.p
	if p := at['w']; p != 0 {
		r.p = p - 1
		t := r.bin()
		if len(t)%16 != 0 {
			r.fail("replica table length")
		}
		r.table = make([]ReplicaID, len(t)/16)
		for i := range r.table {
			copy(r.table[i][:], t[16*i:])
		}
	}
	if p := at['b']; p != 0 {
		r.p = p - 1
		r.base = r.uint()
	}
	r.p = save
}

// late parses the value of a key that refers to the table and base.
func (r *v2Reader) late(k byte) {
	rec := r.rec
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
			p := r.base
			x := r.id(&p)
			rec.Clock = append(rec.Clock, Seen{Replica: x.Replica, Time: x.Time})
		}
	case 'f':
		nf := r.mapLen()
		if r.err != nil {
			break
		}
		r.fs = make([]Field, nf)
		r.fields = make([]namedField, 0, nf)
		for i := range nf {
			if r.err != nil {
				break
			}
			name := r.strBytes()
			if r.err != nil {
				break
			}
			at := span{r.p - len(name), r.p}
			if r.need(1) && r.b[r.p] == 0xc0 {
				r.p++
				r.fields = append(r.fields, namedField{name: at})
				continue
			}
			f := &r.fs[i]
			if !r.fastField(f) {
				r.field(f)
			}
			r.fields = append(r.fields, namedField{name: at, f: f})
		}
	case 'd':
		rec.DeleteSeen = r.ids()
	case 's':
		rec.Skipped = r.ids()
	}
}

// entries returns room for n entries, cut from the current chunk.
func (r *v2Reader) entries(n int) []Entry {
	if cap(r.es)-len(r.es) < n {
		// Entries still to come fit in what remains of the input (3
		// bytes at least each); most states have about one per field.
		r.es = make([]Entry, 0, max(n, min(len(r.fs)-len(r.fields)+n, (len(r.b)-r.p)/3+n)))
	}
	start := len(r.es)
	r.es = r.es[:start+n]
	return r.es[start : start : start+n]
}

// value returns the next value's bytes, sliced from the arena copy of
// the input (decoded states never alias their input).
func (r *v2Reader) value() []byte {
	if r.err != nil {
		return nil
	}
	end := shortEnd(r.b, r.p)
	if end == 0 {
		return r.raw()
	}
	if r.arena == nil {
		r.arena = bytes.Clone(r.b)
	}
	v := r.arena[r.p:end:end]
	r.p = end
	return v
}

// fastField reads a field at r.p in the form AppendRecord writes when
// nothing is pending, {y: type, e: entries} with replica indexes as
// fixints, into f, which it sets only on success; on anything else it
// reports false having moved nothing, and field reads it (to the same
// Field, or to the error).
func (r *v2Reader) fastField(f *Field) bool {
	b, p := r.b, r.p
	if r.err != nil || len(b)-p < 7 || b[p] != 0x82 || b[p+1] != 0xa1 || b[p+2] != 'y' || b[p+3] > 0x7f || b[p+4] != 0xa1 || b[p+5] != 'e' {
		return false
	}
	typ := b[p+3]
	p += 6
	m, p, ok := shortArrayLen(b, p)
	if !ok {
		return false
	}
	if m%3 != 0 || m > len(b)-p {
		return false
	}
	var es []Entry
	if m > 0 {
		es = r.entries(m / 3)
	}
	prev := r.base
	for range m / 3 {
		if len(b)-p < 3 || b[p] > 0x7f || int(b[p]) >= len(r.table) {
			return false
		}
		rep := &r.table[b[p]]
		dt, q, ok := compactUint(b, p+1)
		if !ok {
			return false
		}
		t := prev + dt
		if t < prev {
			return false
		}
		prev, p = t, q
		end := shortEnd(b, p)
		if end == 0 {
			var err error
			if end, err = scan(b, p, DefaultLimits); err != nil {
				return false
			}
		}
		if r.arena == nil {
			r.arena = bytes.Clone(b)
		}
		es = append(es, Entry{ID: OpID{Time: Timestamp(t), Replica: *rep}, Value: r.arena[p:end:end]})
		p = end
	}
	f.Type, f.Entries = FieldType(typ), es
	r.p = p
	return true
}

// compactUint reads an unsigned integer in one of the forms appendUint
// writes at b[p], and returns it and the offset after it.
func compactUint(b []byte, p int) (uint64, int, bool) {
	if p >= len(b) {
		return 0, p, false
	}
	c := b[p]
	n := 0
	switch c {
	case 0xcc:
		n = 1
	case 0xcd:
		n = 2
	case 0xce:
		n = 4
	case 0xcf:
		n = 8
	default:
		if c <= 0x7f {
			return uint64(c), p + 1, true
		}
		return 0, p, false
	}
	if len(b)-p-1 < n {
		return 0, p, false
	}
	var v uint64
	for _, x := range b[p+1 : p+1+n] {
		v = v<<8 | uint64(x)
	}
	return v, p + 1 + n, true
}

// field reads one field of a version 2 state into f.
func (r *v2Reader) field(f *Field) {
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
			f.Entries = nil
			if m > 0 {
				f.Entries = r.entries(m / 3)
			}
			prev := r.base
			for range m / 3 {
				if r.err != nil {
					break
				}
				e := Entry{ID: r.id(&prev)}
				e.Value = r.value()
				f.Entries = append(f.Entries, e)
			}
		case 'p':
			bit = 4
			f.Pending = r.ids()
		default:
			r.skip()
		}
		if seenKeys&bit != 0 {
			r.fail(fmt.Sprintf("field key %q twice", k))
		}
		seenKeys |= bit
	}
}

// finish cuts the strings read from one string holding them all, and
// fills the record's fields.
func (r *v2Reader) finish() error {
	n := 0
	for _, sp := range r.strs {
		n += sp.end - sp.start
	}
	for _, nf := range r.fields {
		n += nf.name.end - nf.name.start
	}
	var sb strings.Builder
	sb.Grow(n)
	for _, sp := range r.strs {
		sb.Write(r.b[sp.start:sp.end])
	}
	for _, nf := range r.fields {
		sb.Write(r.b[nf.name.start:nf.name.end])
	}
	all := sb.String()
	off := 0
	cut := func(sp span) string {
		s := all[off : off+sp.end-sp.start]
		off += sp.end - sp.start
		return s
	}
	rec := r.rec
	rec.Collection, rec.ID, rec.Team = cut(r.strs[0]), cut(r.strs[1]), cut(r.strs[2])
	rec.Fields = make(map[string]*Field, len(r.fields))
	for _, nf := range r.fields {
		name := cut(nf.name)
		if _, dup := rec.Fields[name]; dup {
			return fmt.Errorf("%w: record state: field %q twice", ErrMalformed, name)
		}
		rec.Fields[name] = nf.f
	}
	return nil
}

// decodeStateV2 decodes the version 2 encoding, or returns errNotV2 for a
// map without a "z" key. It checks the form, not the invariants (Validate
// does). Keys may come in any order; in the canonical order (table and
// base before what refers to them) it reads the bytes once.
func decodeStateV2(b []byte) (*Record, error) {
	r := &v2Reader{stateReader: stateReader{b: b}, rec: &Record{}}
	var at [128]int // offset+1 of each one-letter key's value, 0 if absent
	var done [128]bool
	ready := false // table and base read
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
			v := r.strBytes()
			sp := span{r.p - len(v), r.p}
			switch c {
			case 'c':
				r.strs[0] = sp
			case 'r':
				r.strs[1] = sp
			default:
				r.strs[2] = sp
			}
		case c == 'z':
			if v := r.uint(); r.err == nil && v != StateVersion {
				return nil, fmt.Errorf("%w: record state version %d, this build reads %d", ErrMalformed, v, StateVersion)
			}
		case isLate(c) && at['w'] != 0 && at['b'] != 0 && at['z'] != 0:
			if !ready {
				r.readRefs(&at)
				ready = true
			}
			r.late(c)
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
		r.readRefs(&at)
	}
	for _, c := range []byte{'v', 'f', 'd', 's'} {
		if at[c] != 0 && !done[c] {
			r.p = at[c] - 1
			r.late(c)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if err := r.finish(); err != nil {
		return nil, err
	}
	return r.rec, nil
}

// fromV1 converts a version 1 state (per-field removed IDs) to the causal
// context form. Version 1 states were built by the same delivery paths,
// which keep each replica's ops in ID order (package doc), so every ID it
// lists, live or removed, is one the state applied (or, for a removed ID
// never applied, one whose arrival must be ignored, which covering it
// does): the clock is the highest time per replica among them. The
// removed IDs of DeletedField that are live somewhere are what the delete
// saw.
func fromV1(r *Record, removed map[string][]OpID) {
	var dots []Seen
	for name, f := range r.Fields {
		if f == nil {
			continue
		}
		for _, e := range f.Entries {
			dots = addDot(dots, e.ID)
		}
		for _, id := range removed[name] {
			dots = addDot(dots, id)
		}
	}
	slices.SortFunc(dots, func(a, b Seen) int { return bytes.Compare(a.Replica[:], b.Replica[:]) })
	r.Clock = dots
	if seen := removed[DeletedField]; len(seen) > 0 {
		r.DeleteSeen = r.keepDeleteSeen(slices.Clone(seen))
	}
}
