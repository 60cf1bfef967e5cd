package crdt

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// OpsBytes is a list of ops already encoded as one msgpack array of ops in
// the form AppendOp writes, exactly as a []Op encodes. It encodes as those
// bytes unchanged, so a server can copy stored ops into a message without
// decoding them, and it decodes as the raw bytes of one msgpack value,
// which Ops checks and decodes.
type OpsBytes []byte

// EncodeMsgpack writes b as it is; an empty b is written as nil, as a nil
// []Op is, so the output is always well-formed msgpack.
func (b OpsBytes) EncodeMsgpack(enc *msgpack.Encoder) error {
	if len(b) == 0 {
		return enc.EncodeNil()
	}
	_, err := enc.Writer().Write(b)
	return err
}

// DecodeMsgpack keeps the raw bytes of the next msgpack value, unchecked:
// call Ops to decode them.
func (b *OpsBytes) DecodeMsgpack(dec *msgpack.Decoder) error {
	raw, err := dec.DecodeRaw()
	if err != nil {
		return err
	}
	*b = OpsBytes(raw)
	return nil
}

// Len returns the number of ops b's array header declares: 0 for an empty
// or nil b, and for bytes that do not start with an array header.
func (b OpsBytes) Len() int {
	n, _, ok := opsArrayHeader(b)
	if !ok {
		return 0
	}
	return n
}

// Ops decodes b, bounded as bytes from outside are: the array may declare
// at most DefaultLimits.MaxLen ops and no more ops than bytes remain, and
// each op is checked against DefaultLimits (as CheckLimits does) and then
// decoded and validated as UnmarshalOp does. Empty
// or nil bytes decode to no ops. Its errors wrap ErrMalformed, and
// ErrTooLarge for bytes beyond DefaultLimits.
//
// The ops never alias b. Ops of one call that name the same team,
// collection, record or field share one string for it. Each op's value
// and preds are its own bytes, carved (capacity limited, so an append
// copies) from a few chunks shared by the call: a retained value keeps at
// most a few KB alive.
func (b OpsBytes) Ops() ([]Op, error) {
	if len(b) == 0 || len(b) == 1 && b[0] == 0xc0 {
		return nil, nil
	}
	n, p, ok := opsArrayHeader(b)
	if !ok {
		return nil, fmt.Errorf("%w: ops: not an array (0x%02x)", ErrMalformed, b[0])
	}
	if n > DefaultLimits.MaxLen {
		return nil, fmt.Errorf("%w: ops: %d ops over %d", ErrTooLarge, n, DefaultLimits.MaxLen)
	}
	if n > len(b)-p {
		return nil, fmt.Errorf("%w: ops: %d ops declared in %d bytes", ErrMalformed, n, len(b)-p)
	}
	ops := make([]Op, 0, min(n, (len(b)-p)/minOpBytes+1))
	d := opsDecoder{b: b}
	for i := range n {
		ops = append(ops, Op{})
		if end, ok := d.op(p, &ops[i]); ok {
			p = end
			continue
		}
		end, err := scan(b, p, DefaultLimits)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				err = fmt.Errorf("%w: %w", ErrMalformed, err)
			}
			return nil, fmt.Errorf("ops: op %d: %w", i, err)
		}
		// The op is within DefaultLimits (scan checked it): decode it
		// as UnmarshalOp does after its own CheckLimits.
		op, ok := fastOp(b[p:end])
		if !ok {
			op = new(Op)
			if err := unmarshal(b[p:end], op); err != nil {
				return nil, fmt.Errorf("ops: op %d: %w", i, err)
			}
		}
		if err := op.Validate(); err != nil {
			return nil, fmt.Errorf("ops: op %d: %w", i, err)
		}
		ops[i] = *op
		p = end
	}
	if p != len(b) {
		return nil, fmt.Errorf("%w: ops: %d trailing bytes", ErrMalformed, len(b)-p)
	}
	return ops, nil
}

// Append returns one array holding b's ops then more's, as a []Op holding
// both lists encodes. Either may be empty. It checks only the two array
// headers, not the ops.
func (b OpsBytes) Append(more OpsBytes) (OpsBytes, error) {
	m, mp, ok := opsArrayHeader(more)
	if !ok && len(more) != 0 {
		return nil, fmt.Errorf("%w: append ops: not an array (0x%02x)", ErrMalformed, more[0])
	}
	if m == 0 {
		return b, nil
	}
	n, p, ok := opsArrayHeader(b)
	if !ok && len(b) != 0 {
		return nil, fmt.Errorf("%w: append ops: not an array (0x%02x)", ErrMalformed, b[0])
	}
	if n == 0 {
		return more, nil
	}
	out := make(OpsBytes, 0, 5+len(b)-p+len(more)-mp)
	out = appendArrayLen(out, n+m)
	out = append(out, b[p:]...)
	return append(out, more[mp:]...), nil
}

// opsArrayHeader reads the array header at the start of b: the declared
// length and the offset of the first element. A nil value (0xc0) is an
// empty array; ok is false for anything else that is not an array header.
func opsArrayHeader(b []byte) (n, p int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	switch c := b[0]; {
	case c == 0xc0:
		return 0, 1, true
	case c >= 0x90 && c <= 0x9f:
		return int(c & 0x0f), 1, true
	case c == 0xdc && len(b) >= 3:
		return int(binary.BigEndian.Uint16(b[1:])), 3, true
	case c == 0xdd && len(b) >= 5:
		u := binary.BigEndian.Uint32(b[1:])
		if uint64(u) > uint64(len(b)) {
			// More elements than bytes: never a valid array, and an int
			// may not hold it on 32-bit platforms.
			return 0, 0, false
		}
		return int(u), 5, true
	}
	return 0, 0, false
}

// NewOpsBytes encodes ops as one msgpack array, exactly as a []Op encodes:
// nil for no ops.
func NewOpsBytes(ops []Op) OpsBytes {
	if len(ops) == 0 {
		return nil
	}
	n := 5
	for i := range ops {
		n += opSize(&ops[i])
	}
	b := appendArrayLen(make(OpsBytes, 0, n), len(ops))
	for i := range ops {
		b = AppendOp(b, &ops[i])
	}
	return b
}
