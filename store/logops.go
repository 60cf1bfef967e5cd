package store

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/doorstep-health/doorstep/crdt"
)

// Packed log ops (layout 3). A log entry written by layout 3 keeps its
// ops under "O" in the form below instead of under "o" as a msgpack
// array of whole ops (crdt.AppendOp). A whole op repeats its team,
// collection and record, spells its field name and carries a 24-byte ID
// with its msgpack keys: about 92 bytes for a 20-byte answer, so the log
// entry was 70% of what a push wrote to the store. Packed, the same op is
// about 25 bytes (issue 17, docs/benchmarks.md "fourth pass:
// i17-store4"). Readers expand it back to exactly the bytes
// crdt.NewOpsBytes writes for the ops (PackedLogOps.AppendOpsBytes), so
// a pull serves the same reply, and they read entries of both forms:
// entries written before layout 3 are never rewritten.
//
// "O" is a msgpack bin holding:
//
//	uvarint n                      the number of ops
//	uvarint whole                  the length of the ops whole (crdt.NewOpsBytes),
//	                               which a reader allocates; then n times:
//	byte    flags                  packNewRef | packNewReplica | packValue | packPred
//	[packNewRef]     name team, name collection, str record
//	                               (else the previous op's; set on the first op)
//	[packNewReplica] 16 bytes      the ID's replica (else the previous op's;
//	                               set on the first op)
//	varint  time                   zigzag of the ID's time minus the previous
//	                               op's (the first op's minus 0), mod 2^64
//	name    field
//	uvarint kind
//	[packValue] uvarint len, bytes the value (one msgpack value, as Op.Value);
//	                               absent: no value
//	[packPred]  uvarint m, m × pred the preds; absent: none, where a pred is
//	            byte               0: the op's own replica, 1: 16 bytes of
//	                               replica follow
//	            varint             zigzag of the op's time minus the pred's,
//	                               mod 2^64 (an overwrite names a recent op)
//
// where str is a uvarint length and the bytes, and name is a uvarint
// index into the entry's table of names seen so far (teams, collections,
// fields, in order of first use); an index equal to the table's length
// introduces a new name: a str follows and joins the table. Unknown flag
// bits are malformed.
const (
	packNewRef     = 1 << 0
	packNewReplica = 1 << 1
	packValue      = 1 << 2
	packPred       = 1 << 3
	packKnown      = packNewRef | packNewReplica | packValue | packPred
)

// PackedLogOps is the "O" form of a log entry's ops (see above), as
// PackLogOps writes it.
type PackedLogOps []byte

// PackLogOps returns ops in the packed form of a layout 3 log entry.
func PackLogOps(ops []crdt.Op) PackedLogOps {
	packed, whole := packedSizes(ops)
	return appendPackedOpsWhole(make([]byte, 0, packed), ops, whole)
}

// packedSizes returns packedOpsSize(ops) and wholeOpsSize(ops), in one
// pass over the ops.
func packedSizes(ops []crdt.Op) (packed, whole int) {
	if len(ops) == 0 {
		return 10, 0
	}
	packed, whole = 10, arrayHeaderSize(len(ops))
	ref := 0
	for i := range ops {
		op := &ops[i]
		packed += 8 + len(op.Value)
		for _, p := range op.Pred {
			packed += 11
			if p.Replica != op.ID.Replica {
				packed += 16
			}
		}
		if i == 0 || !sameRef(&ops[i-1], op) {
			packed += 40 + len(op.Record) + len(op.Team) + len(op.Collection) + len(op.Field)
			ref = refSize(len(op.Team), len(op.Collection), len(op.Record))
		}
		if i == 0 || ops[i-1].ID.Replica != op.ID.Replica {
			packed += 16
		}
		whole += wholeOpSize(ref, len(op.Field), op.Kind, len(op.Value), len(op.Pred))
	}
	return packed, whole
}

// packedOpsSize estimates from above, for ops without huge preds, the
// bytes appendPackedOps writes.
func packedOpsSize(ops []crdt.Op) int {
	n := 10
	for i := range ops {
		op := &ops[i]
		n += 8 + len(op.Value)
		for _, p := range op.Pred {
			n += 11 // tag and time
			if p.Replica != op.ID.Replica {
				n += 16
			}
		}
		if i == 0 || !sameRef(&ops[i-1], op) {
			n += 40 + len(op.Record) + len(op.Team) + len(op.Collection) + len(op.Field)
		}
		if i == 0 || ops[i-1].ID.Replica != op.ID.Replica {
			n += 16
		}
	}
	return n
}

// wholeOpsSize is the length of crdt.NewOpsBytes(ops): an array header,
// and per op the map crdt.AppendOp writes.
func wholeOpsSize(ops []crdt.Op) int {
	if len(ops) == 0 {
		return 0 // crdt.NewOpsBytes writes nothing
	}
	n := arrayHeaderSize(len(ops))
	ref := 0
	for i := range ops {
		op := &ops[i]
		if i == 0 || !sameRef(&ops[i-1], op) {
			ref = refSize(len(op.Team), len(op.Collection), len(op.Record))
		}
		n += wholeOpSize(ref, len(op.Field), op.Kind, len(op.Value), len(op.Pred))
	}
	return n
}

// refSize is the length of an op's team, collection and record keys and
// values as crdt.AppendOp writes them, for names of these lengths.
func refSize(team, collection, record int) int {
	return 6 + strSize(team) + strSize(collection) + strSize(record)
}

// wholeOpSize is the length of one op as crdt.AppendOp writes it: its
// team, collection and record keys taking ref bytes (refSize), a field
// name of field bytes, a value of value bytes (0: none) and preds preds.
func wholeOpSize(ref, field int, kind crdt.Kind, value, preds int) int {
	// Map header, "i" and its bin 8, "f" and "k" keys.
	n := 1 + 4 + crdt.OpIDSize + 4 + ref + strSize(field) + uintSize(uint64(kind))
	if value > 0 {
		n += 2 + value
	}
	if preds > 0 {
		n += 2 + arrayHeaderSize(preds) + preds*(2+crdt.OpIDSize)
	}
	return n
}

// strSize is the length of a msgpack str of n bytes.
func strSize(n int) int {
	switch {
	case n < 32:
		return 1 + n
	case n <= 0xff:
		return 2 + n
	case n <= 0xffff:
		return 3 + n
	}
	return 5 + n
}

// uintSize is the length of v as crdt.AppendUint writes it.
func uintSize(v uint64) int {
	switch {
	case v <= 0x7f:
		return 1
	case v <= 0xff:
		return 2
	case v <= 0xffff:
		return 3
	case v <= 0xffffffff:
		return 5
	}
	return 9
}

// arrayHeaderSize is the length of a msgpack array header for n.
func arrayHeaderSize(n int) int {
	switch {
	case n < 16:
		return 1
	case n <= 0xffff:
		return 3
	}
	return 5
}

func sameRef(a, b *crdt.Op) bool {
	return a.Record == b.Record && a.Collection == b.Collection && a.Team == b.Team
}

// nameTable is the table of names of one packed entry, while it is
// written: a short list (the names of an entry are few: its team, a
// collection or two, the fields of its records), searched first at a
// hint, the index after the one the same kind of name had last (records
// of one change mostly list their fields in one order), then from the
// end.
type nameTable struct {
	names [48]string // the first n names
	n     int
	more  []string // the rest
}

func (t *nameTable) at(i int) string {
	if i < len(t.names) {
		return t.names[i]
	}
	return t.more[i-len(t.names)]
}

func (t *nameTable) append(b []byte, s string, hint *int) []byte {
	if i := *hint + 1; i >= 0 && i < t.n && t.at(i) == s {
		*hint = i
		return binary.AppendUvarint(b, uint64(i))
	}
	for i := t.n - 1; i >= 0; i-- {
		if t.at(i) == s {
			*hint = i
			return binary.AppendUvarint(b, uint64(i))
		}
	}
	*hint = t.n
	b = binary.AppendUvarint(b, uint64(t.n))
	if t.n < len(t.names) {
		t.names[t.n] = s
	} else {
		t.more = append(t.more, s)
	}
	t.n++
	return appendStr(b, s)
}

// appendPackedOps appends the packed form of ops to b.
func appendPackedOps(b []byte, ops []crdt.Op) []byte {
	return appendPackedOpsWhole(b, ops, wholeOpsSize(ops))
}

// appendPackedOpsWhole is appendPackedOps for a caller that has
// wholeOpsSize(ops) already.
func appendPackedOpsWhole(b []byte, ops []crdt.Op, whole int) []byte {
	var names nameTable
	// Hints: a run's team and collection are most often the previous
	// run's, and a field the one after the previous op's.
	teamHint, collHint, fieldHint, runField := -1, -1, -1, 0
	b = binary.AppendUvarint(b, uint64(len(ops)))
	b = binary.AppendUvarint(b, uint64(whole))
	var prev *crdt.Op
	var prevTime crdt.Timestamp
	for i := range ops {
		op := &ops[i]
		var flags byte
		newRef := prev == nil || !sameRef(prev, op)
		if newRef {
			flags |= packNewRef
		}
		newReplica := prev == nil || prev.ID.Replica != op.ID.Replica
		if newReplica {
			flags |= packNewReplica
		}
		if len(op.Value) > 0 {
			flags |= packValue
		}
		if len(op.Pred) > 0 {
			flags |= packPred
		}
		b = append(b, flags)
		if newRef {
			teamHint--
			collHint--
			b = names.append(b, op.Team, &teamHint)
			b = names.append(b, op.Collection, &collHint)
			b = appendStr(b, op.Record)
		}
		if newReplica {
			b = append(b, op.ID.Replica[:]...)
		}
		b = binary.AppendVarint(b, int64(op.ID.Time-prevTime))
		prevTime = op.ID.Time
		if newRef {
			// A new record: its first field is most often the first
			// field of the previous record.
			fieldHint = runField - 1
		}
		b = names.append(b, op.Field, &fieldHint)
		if newRef {
			runField = fieldHint
		}
		b = binary.AppendUvarint(b, uint64(op.Kind))
		if len(op.Value) > 0 {
			b = binary.AppendUvarint(b, uint64(len(op.Value)))
			b = append(b, op.Value...)
		}
		if len(op.Pred) > 0 {
			b = binary.AppendUvarint(b, uint64(len(op.Pred)))
			for _, p := range op.Pred {
				if p.Replica == op.ID.Replica {
					b = append(b, 0)
				} else {
					b = append(append(b, 1), p.Replica[:]...)
				}
				b = binary.AppendVarint(b, int64(op.ID.Time-p.Time))
			}
		}
		prev = op
	}
	return b
}

// packReader reads a packed form one op at a time, leaving the op's
// parts as slices of p (names by their index in the table), for Ops to
// build ops from and AppendOpsBytes to write whole ops from.
type packReader struct {
	p   []byte
	off int
	// The table of names, aliasing p: the first len(names) in names,
	// the rest in more (a pointer into the reader itself would move it
	// to the heap).
	names  [48][]byte
	nnames int
	more   [][]byte
	time   crdt.Timestamp
	whole  uint64 // the length of the ops whole, as the writer declared
	// The current op.
	newRef            bool // team, collection or record changed
	team, coll, field int  // indexes into names
	record            []byte
	replica           crdt.ReplicaID
	kind              crdt.Kind
	value             []byte      // nil: none
	preds             []crdt.OpID // reused for each op; empty: none
}

// nameAt returns the name at index i of the table (i < r.nnames).
func (r *packReader) nameAt(i int) []byte {
	if i < len(r.names) {
		return r.names[i]
	}
	return r.more[i-len(r.names)]
}

func (r *packReader) bad(what string) error {
	return fmt.Errorf("%w: packed log ops: %s at byte %d", ErrBadValue, what, r.off)
}

func (r *packReader) uvarint() (uint64, bool) {
	if r.off < len(r.p) && r.p[r.off] < 0x80 { // most are one byte
		r.off++
		return uint64(r.p[r.off-1]), true
	}
	v, k := binary.Uvarint(r.p[r.off:])
	if k <= 0 {
		return 0, false
	}
	r.off += k
	return v, true
}

func (r *packReader) bytes(n uint64) ([]byte, bool) {
	if n > uint64(len(r.p)-r.off) {
		return nil, false
	}
	b := r.p[r.off : r.off+int(n) : r.off+int(n)]
	r.off += int(n)
	return b, true
}

func (r *packReader) str() ([]byte, bool) {
	n, ok := r.uvarint()
	if !ok {
		return nil, false
	}
	return r.bytes(n)
}

// name reads a name and returns its index in the table.
func (r *packReader) name() (int, bool) {
	i, ok := r.uvarint()
	switch {
	case !ok || i > uint64(r.nnames):
		return 0, false
	case i < uint64(r.nnames):
		return int(i), true
	}
	b, ok := r.str()
	if !ok {
		return 0, false
	}
	if r.nnames < len(r.names) {
		r.names[r.nnames] = b
	} else {
		r.more = append(r.more, b)
	}
	r.nnames++
	return int(i), true
}

// start reads the op count.
func (r *packReader) start() (int, error) {
	n, ok := r.uvarint()
	// Every op takes at least 4 bytes (flags, time, field, kind).
	if !ok || n > uint64(len(r.p)-r.off)/4 {
		return 0, r.bad("op count")
	}
	if r.whole, ok = r.uvarint(); !ok {
		return 0, r.bad("size")
	}
	return int(n), nil
}

// next reads the next op.
func (r *packReader) next(first bool) error {
	if r.off >= len(r.p) {
		return r.bad("truncated op")
	}
	flags := r.p[r.off]
	r.off++
	if flags&^packKnown != 0 {
		return r.bad("unknown flags")
	}
	if first && flags&(packNewRef|packNewReplica) != packNewRef|packNewReplica {
		return r.bad("first op without its names and replica")
	}
	var ok bool
	r.newRef = flags&packNewRef != 0
	if r.newRef {
		if r.team, ok = r.name(); !ok {
			return r.bad("team")
		}
		if r.coll, ok = r.name(); !ok {
			return r.bad("collection")
		}
		if r.record, ok = r.str(); !ok {
			return r.bad("record")
		}
	}
	if flags&packNewReplica != 0 {
		b, ok := r.bytes(16)
		if !ok {
			return r.bad("replica")
		}
		copy(r.replica[:], b)
	}
	if r.off < len(r.p) && r.p[r.off] < 0x80 { // a delta of -64 to 63
		u := uint64(r.p[r.off])
		r.off++
		r.time += crdt.Timestamp(int64(u>>1) ^ -int64(u&1))
	} else {
		d, k := binary.Varint(r.p[r.off:])
		if k <= 0 {
			return r.bad("time")
		}
		r.off += k
		r.time += crdt.Timestamp(d)
	}
	if r.field, ok = r.name(); !ok {
		return r.bad("field")
	}
	kind, ok := r.uvarint()
	if !ok || kind > 0xff {
		return r.bad("kind")
	}
	r.kind = crdt.Kind(kind)
	r.value = nil
	if flags&packValue != 0 {
		n, ok := r.uvarint()
		if !ok || n == 0 {
			return r.bad("value")
		}
		if r.value, ok = r.bytes(n); !ok {
			return r.bad("value")
		}
	}
	r.preds = r.preds[:0]
	if flags&packPred != 0 {
		// A pred takes at least 2 bytes (its tag and time).
		m, ok := r.uvarint()
		if !ok || m == 0 || m > uint64(len(r.p)-r.off)/2 {
			return r.bad("preds")
		}
		for range m {
			var id crdt.OpID
			switch tag, ok := r.uvarint(); {
			case !ok || tag > 1:
				return r.bad("pred")
			case tag == 0:
				id.Replica = r.replica
			default:
				b, ok := r.bytes(16)
				if !ok {
					return r.bad("pred replica")
				}
				copy(id.Replica[:], b)
			}
			d, k := binary.Varint(r.p[r.off:])
			if k <= 0 {
				return r.bad("pred time")
			}
			r.off += k
			id.Time = r.time - crdt.Timestamp(d)
			r.preds = append(r.preds, id)
		}
	}
	return nil
}

// Ops decodes p into ops. Ops naming the same team, collection, record
// or field share one string for it; values and preds are the ops' own
// (values alias p, capacity limited, so an append copies).
func (p PackedLogOps) Ops() ([]crdt.Op, error) {
	r := packReader{p: p}
	n, err := r.start()
	if err != nil {
		return nil, err
	}
	ops := make([]crdt.Op, n)
	var strs []string // strs[i] is names[i] as a string, once made
	name := func(i int) string {
		for len(strs) <= i {
			strs = append(strs, string(r.nameAt(len(strs))))
		}
		return strs[i]
	}
	var team, coll, record string
	whole, ref := 0, 0
	if n > 0 {
		whole = arrayHeaderSize(n)
	}
	for i := range ops {
		if err := r.next(i == 0); err != nil {
			return nil, err
		}
		if r.newRef {
			ref = refSize(len(r.nameAt(r.team)), len(r.nameAt(r.coll)), len(r.record))
		}
		whole += wholeOpSize(ref, len(r.nameAt(r.field)), r.kind, len(r.value), len(r.preds))
		if r.newRef {
			team, coll, record = name(r.team), name(r.coll), string(r.record)
		}
		op := &ops[i]
		op.ID = crdt.OpID{Time: r.time, Replica: r.replica}
		op.Team, op.Collection, op.Record, op.Field = team, coll, record, name(r.field)
		op.Kind, op.Value = r.kind, r.value
		if len(r.preds) > 0 {
			op.Pred = slices.Clone(r.preds)
		}
	}
	if r.off != len(p) {
		return nil, r.bad("trailing bytes")
	}
	if uint64(whole) != r.whole {
		return nil, r.bad("declared size")
	}
	return ops, nil
}

// AppendOpsBytes appends to dst the ops of p as crdt.NewOpsBytes encodes
// them (a msgpack array of the maps crdt.AppendOp writes): the bytes a
// pull serves. It writes them from the packed parts without building
// ops: the team, collection and record keys of a run are encoded once
// and copied into each of its ops. FuzzPackedLogOps checks the bytes
// against crdt.NewOpsBytes.
func (p PackedLogOps) AppendOpsBytes(dst []byte) ([]byte, error) {
	r := packReader{p: p}
	n, err := r.start()
	if err != nil {
		return nil, err
	}
	if n == 0 {
		if r.off != len(p) || r.whole != 0 {
			return nil, r.bad("trailing bytes")
		}
		return dst, nil
	}
	begin := len(dst)
	dst = appendArrayHeader(dst, n)
	var run [160]byte
	ref := run[:0]
	for i := range n {
		if err := r.next(i == 0); err != nil {
			return nil, err
		}
		if r.newRef {
			ref = appendMsgpackStr(append(run[:0], 0xa1, 't'), r.nameAt(r.team))
			ref = appendMsgpackStr(append(ref, 0xa1, 'c'), r.nameAt(r.coll))
			ref = appendMsgpackStr(append(ref, 0xa1, 'r'), r.record)
		}
		// As crdt.AppendOp: a map of i, t, c, r, f, k, then v and p
		// when present.
		m := byte(6)
		if r.value != nil {
			m++
		}
		if len(r.preds) > 0 {
			m++
		}
		dst = append(dst, 0x80|m, 0xa1, 'i', 0xc4, crdt.OpIDSize)
		dst = binary.BigEndian.AppendUint64(dst, uint64(r.time))
		dst = append(dst, r.replica[:]...)
		dst = append(dst, ref...)
		dst = appendMsgpackStr(append(dst, 0xa1, 'f'), r.nameAt(r.field))
		dst = crdt.AppendUint(append(dst, 0xa1, 'k'), uint64(r.kind))
		if r.value != nil {
			dst = append(append(dst, 0xa1, 'v'), r.value...)
		}
		if len(r.preds) > 0 {
			dst = appendArrayHeader(append(dst, 0xa1, 'p'), len(r.preds))
			for _, id := range r.preds {
				dst = id.AppendBinary(append(dst, 0xc4, crdt.OpIDSize))
			}
		}
	}
	if r.off != len(p) {
		return nil, r.bad("trailing bytes")
	}
	if uint64(len(dst)-begin) != r.whole {
		return nil, r.bad("declared size")
	}
	return dst, nil
}

// appendMsgpackStr appends s as a msgpack str, in the shortest form (as
// crdt.AppendOp writes it).
func appendMsgpackStr(b, s []byte) []byte { return append(crdt.AppendStrHeader(b, len(s)), s...) }

// OpsBytes returns the ops of p as crdt.NewOpsBytes encodes them (nil
// for none).
func (p PackedLogOps) OpsBytes() (crdt.OpsBytes, error) {
	r := packReader{p: p}
	if _, err := r.start(); err != nil {
		return nil, err
	}
	// The declared size, unless it is beyond what any names could make
	// of these bytes (a damaged value): then append grows the slice.
	size := r.whole
	if size > 64*uint64(len(p))+1024 {
		size = 4 * uint64(len(p))
	}
	b, err := p.AppendOpsBytes(make([]byte, 0, size))
	if err != nil || len(b) == 0 {
		return nil, err
	}
	return crdt.OpsBytes(b), nil
}

// appendArrayHeader appends a msgpack array header for n elements, as
// msgpack (and crdt.NewOpsBytes) writes it.
func appendArrayHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
}
