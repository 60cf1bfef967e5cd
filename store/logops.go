package store

import (
	"encoding/binary"
	"fmt"

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
//	uvarint n                      the number of ops, then n times:
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
//	[packPred]  uvarint m, m × 24 bytes the preds (crdt.OpID.AppendBinary);
//	                               absent: none
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
	return appendPackedOps(make([]byte, 0, packedOpsSize(ops)), ops)
}

// packedOpsSize estimates from above, for ops without huge preds, the
// bytes appendPackedOps writes.
func packedOpsSize(ops []crdt.Op) int {
	n := 10
	for i := range ops {
		op := &ops[i]
		n += 8 + len(op.Value) + 24*len(op.Pred)
		if i == 0 || !sameRef(&ops[i-1], op) {
			n += 40 + len(op.Record) + len(op.Team) + len(op.Collection) + len(op.Field)
		}
		if i == 0 || ops[i-1].ID.Replica != op.ID.Replica {
			n += 16
		}
	}
	return n
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
type nameTable []string

func (t *nameTable) append(b []byte, s string, hint *int) []byte {
	if i := *hint + 1; i >= 0 && i < len(*t) && (*t)[i] == s {
		*hint = i
		return binary.AppendUvarint(b, uint64(i))
	}
	for i := len(*t) - 1; i >= 0; i-- {
		if (*t)[i] == s {
			*hint = i
			return binary.AppendUvarint(b, uint64(i))
		}
	}
	*hint = len(*t)
	b = binary.AppendUvarint(b, uint64(len(*t)))
	*t = append(*t, s)
	return appendStr(b, s)
}

// appendPackedOps appends the packed form of ops to b.
func appendPackedOps(b []byte, ops []crdt.Op) []byte {
	var spare [40]string
	names := nameTable(spare[:0])
	// Hints: a run's team and collection are most often the previous
	// run's, and a field the one after the previous op's.
	teamHint, collHint, fieldHint, runField := -1, -1, -1, 0
	b = binary.AppendUvarint(b, uint64(len(ops)))
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
				b = p.AppendBinary(b)
			}
		}
		prev = op
	}
	return b
}

// packReader reads a packed form, one op at a time, into op: the strings
// of one run (team, collection, record) and each name are shared by the
// ops that use them, and the value and preds alias p (capacity limited,
// so an append copies).
type packReader struct {
	p     []byte
	off   int
	n     int // ops left
	names []string
	time  crdt.Timestamp
	op    crdt.Op
	// preds is reused for each op's preds when the caller only encodes
	// them (AppendOpsBytes); nil: each op gets its own.
	reuse bool
}

func (r *packReader) bad(what string) error {
	return fmt.Errorf("%w: packed log ops: %s at byte %d", ErrBadValue, what, r.off)
}

func (r *packReader) uvarint() (uint64, bool) {
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

func (r *packReader) str() (string, bool) {
	n, ok := r.uvarint()
	if !ok {
		return "", false
	}
	b, ok := r.bytes(n)
	return string(b), ok
}

func (r *packReader) name() (string, bool) {
	i, ok := r.uvarint()
	switch {
	case !ok:
		return "", false
	case i < uint64(len(r.names)):
		return r.names[i], true
	case i > uint64(len(r.names)):
		return "", false
	}
	s, ok := r.str()
	if ok {
		r.names = append(r.names, s)
	}
	return s, ok
}

// start reads the op count; it returns the count.
func (r *packReader) start() (int, error) {
	n, ok := r.uvarint()
	// Every op takes at least 4 bytes (flags, time, field, kind).
	if !ok || n > uint64(len(r.p)-r.off)/4 {
		return 0, r.bad("op count")
	}
	r.n = int(n)
	return r.n, nil
}

// next reads the next op into r.op.
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
	op := &r.op
	var ok bool
	if flags&packNewRef != 0 {
		if op.Team, ok = r.name(); !ok {
			return r.bad("team")
		}
		if op.Collection, ok = r.name(); !ok {
			return r.bad("collection")
		}
		if op.Record, ok = r.str(); !ok {
			return r.bad("record")
		}
	}
	if flags&packNewReplica != 0 {
		b, ok := r.bytes(16)
		if !ok {
			return r.bad("replica")
		}
		copy(op.ID.Replica[:], b)
	}
	d, k := binary.Varint(r.p[r.off:])
	if k <= 0 {
		return r.bad("time")
	}
	r.off += k
	r.time += crdt.Timestamp(d)
	op.ID.Time = r.time
	if op.Field, ok = r.name(); !ok {
		return r.bad("field")
	}
	kind, ok := r.uvarint()
	if !ok || kind > 0xff {
		return r.bad("kind")
	}
	op.Kind = crdt.Kind(kind)
	op.Value = nil
	if flags&packValue != 0 {
		n, ok := r.uvarint()
		if !ok || n == 0 {
			return r.bad("value")
		}
		if op.Value, ok = r.bytes(n); !ok {
			return r.bad("value")
		}
	}
	if r.reuse {
		op.Pred = op.Pred[:0]
	} else {
		op.Pred = nil
	}
	if flags&packPred != 0 {
		m, ok := r.uvarint()
		if !ok || m == 0 || m > uint64(len(r.p)-r.off)/crdt.OpIDSize {
			return r.bad("preds")
		}
		if !r.reuse {
			op.Pred = make([]crdt.OpID, 0, m)
		}
		for range m {
			b, _ := r.bytes(crdt.OpIDSize)
			id, err := crdt.OpIDFromBinary(b)
			if err != nil {
				return r.bad("pred")
			}
			op.Pred = append(op.Pred, id)
		}
	}
	return nil
}

// Ops decodes p into ops.
func (p PackedLogOps) Ops() ([]crdt.Op, error) {
	r := packReader{p: p}
	n, err := r.start()
	if err != nil {
		return nil, err
	}
	ops := make([]crdt.Op, n)
	for i := range ops {
		if err := r.next(i == 0); err != nil {
			return nil, err
		}
		ops[i] = r.op
	}
	if r.off != len(p) {
		return nil, r.bad("trailing bytes")
	}
	return ops, nil
}

// AppendOpsBytes appends to dst the ops of p as crdt.NewOpsBytes encodes
// them (a msgpack array of crdt.AppendOp forms): the bytes a pull serves.
func (p PackedLogOps) AppendOpsBytes(dst []byte) ([]byte, error) {
	r := packReader{p: p, reuse: true}
	n, err := r.start()
	if err != nil {
		return nil, err
	}
	if n == 0 {
		if r.off != len(p) {
			return nil, r.bad("trailing bytes")
		}
		return dst, nil
	}
	dst = appendArrayHeader(dst, n)
	for i := range n {
		if err := r.next(i == 0); err != nil {
			return nil, err
		}
		dst = crdt.AppendOp(dst, &r.op)
	}
	if r.off != len(p) {
		return nil, r.bad("trailing bytes")
	}
	return dst, nil
}

// OpsBytes returns the ops of p as crdt.NewOpsBytes encodes them (nil
// for none).
func (p PackedLogOps) OpsBytes() (crdt.OpsBytes, error) {
	// Unpacked, an op is its packed size plus its team, collection,
	// record and msgpack keys: about 3.7 times a short answer's op.
	b, err := p.AppendOpsBytes(make([]byte, 0, 4*len(p)+64))
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
