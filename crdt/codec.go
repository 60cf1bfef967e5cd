package crdt

import (
	"encoding/binary"
	gosync "sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Encoding writes msgpack by appending to a byte slice, with no reflection
// and no per-value allocation. The output is exactly what msgpack/v5 would
// derive from the struct tags with compact integers, except that it is
// canonical: record fields are in sorted name order, empty entry lists are
// empty arrays (never nil), and "v", "p" and "x" are left out when empty.
// The decoders (encode.go) read this form and anything msgpack-equivalent.

// AppendOp appends the msgpack encoding of op to dst, as MarshalOp does.
func AppendOp(dst []byte, op *Op) []byte {
	n := 6
	if len(op.Value) > 0 {
		n++
	}
	if len(op.Pred) > 0 {
		n++
	}
	// The one-letter keys and the ID's bin8 header as literal bytes.
	b := append(dst, 0x80|byte(n), 0xa1, 'i', 0xc4, OpIDSize)
	b = op.ID.AppendBinary(b)
	b = appendStr(append(b, 0xa1, 't'), op.Team)
	b = appendStr(append(b, 0xa1, 'c'), op.Collection)
	b = appendStr(append(b, 0xa1, 'r'), op.Record)
	b = appendStr(append(b, 0xa1, 'f'), op.Field)
	b = appendUint(append(b, 0xa1, 'k'), uint64(op.Kind))
	if len(op.Value) > 0 {
		b = append(append(b, 0xa1, 'v'), op.Value...)
	}
	if len(op.Pred) > 0 {
		b = appendIDs(append(b, 0xa1, 'p'), op.Pred)
	}
	return b
}

// opSize returns the length of op's encoding, or a little more.
func opSize(op *Op) int {
	return 64 + len(op.Team) + len(op.Collection) + len(op.Record) + len(op.Field) + len(op.Value) + 26*len(op.Pred)
}

// appendField writes f alone, outside a record: {"y": type, "e": entries,
// "p": pending}, IDs in full. Records use the compact form (state.go).
func appendField(b []byte, f *Field) []byte {
	n := 2
	if len(f.Pending) > 0 {
		n = 3
	}
	b = appendMapLen(b, n)
	b = appendUint(appendStr(b, "y"), uint64(f.Type))
	b = appendArrayLen(appendStr(b, "e"), len(f.Entries))
	for i := range f.Entries {
		b = appendEntry(b, &f.Entries[i])
	}
	if n == 3 {
		b = appendIDs(appendStr(b, "p"), f.Pending)
	}
	return b
}

func appendEntry(b []byte, e *Entry) []byte {
	b = appendMapLen(b, 2)
	b = appendID(appendStr(b, "i"), e.ID)
	b = appendStr(b, "v")
	if len(e.Value) == 0 {
		return append(b, 0xc0)
	}
	return append(b, e.Value...)
}

func appendIDs(b []byte, ids []OpID) []byte {
	b = appendArrayLen(b, len(ids))
	for _, id := range ids {
		b = appendID(b, id)
	}
	return b
}

func appendID(b []byte, id OpID) []byte {
	return id.AppendBinary(append(b, 0xc4, OpIDSize))
}

func appendMapLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x80|byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 0xde), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdf), uint32(n))
}

// shortArrayLen reads the array header at b[p] in the two forms our
// encoders write for up to 65,535 elements (fixarray, array16): the
// element count and the position after the header. ok is false, and p
// returned unmoved, on any other byte or a cut header. b[p] must exist.
func shortArrayLen(b []byte, p int) (n, next int, ok bool) {
	switch c := b[p]; {
	case c&0xf0 == 0x90:
		return int(c & 0x0f), p + 1, true
	case c == 0xdc && len(b)-p >= 3:
		return int(binary.BigEndian.Uint16(b[p+1:])), p + 3, true
	}
	return 0, p, false
}

func appendArrayLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
}

func appendStr(b []byte, s string) []byte { return append(AppendStrHeader(b, len(s)), s...) }

// AppendStrHeader appends the header of a msgpack str of n bytes in its
// shortest form, as appendStr (and so AppendOp) writes it, for callers
// that append the bytes themselves from a []byte (package store, which
// expands packed log ops to AppendOp's bytes).
func AppendStrHeader(b []byte, n int) []byte {
	switch {
	case n < 32:
		return append(b, 0xa0|byte(n))
	case n <= 0xff:
		return append(b, 0xd9, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
}

// AppendUint appends n in msgpack's most compact unsigned integer form, the
// bytes vmihailenco/msgpack writes with compact integers (for callers that
// assemble msgpack documents around encoded ops, such as the SDK's outbox).
func AppendUint(b []byte, n uint64) []byte { return appendUint(b, n) }

func appendUint(b []byte, n uint64) []byte {
	switch {
	case n <= 0x7f:
		return append(b, byte(n))
	case n <= 0xff:
		return append(b, 0xcc, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(n))
	case n <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xcf), n)
}

var bufPool = gosync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// writeTo appends with fn to a pooled buffer and writes the result to enc's
// writer, as msgpack.RawMessage does for pre-encoded bytes.
func writeTo(enc *msgpack.Encoder, fn func([]byte) []byte) error {
	bp := bufPool.Get().(*[]byte)
	b := fn((*bp)[:0])
	_, err := enc.Writer().Write(b)
	if cap(b) <= 64<<10 {
		*bp = b
		bufPool.Put(bp)
	}
	return err
}

// EncodeMsgpack writes op as AppendOp does, so that ops inside other
// messages (package api) use the same wire form.
func (o Op) EncodeMsgpack(enc *msgpack.Encoder) error {
	return writeTo(enc, func(b []byte) []byte { return AppendOp(b, &o) })
}

// EncodeMsgpack writes r as AppendRecord does: canonical, fields sorted.
func (r Record) EncodeMsgpack(enc *msgpack.Encoder) error {
	return writeTo(enc, func(b []byte) []byte { return AppendRecord(b, &r) })
}

// EncodeMsgpack writes f alone as a msgpack map {"y": type, "e": entries,
// "p": pending}, leaving out "p" when nothing is pending.
func (f Field) EncodeMsgpack(enc *msgpack.Encoder) error {
	return writeTo(enc, func(b []byte) []byte { return appendField(b, &f) })
}

// EncodeMsgpack writes e as a msgpack map {"i": id, "v": value}. An empty
// value is written as nil, so the output is always well-formed msgpack.
func (e Entry) EncodeMsgpack(enc *msgpack.Encoder) error {
	return writeTo(enc, func(b []byte) []byte { return appendEntry(b, &e) })
}
