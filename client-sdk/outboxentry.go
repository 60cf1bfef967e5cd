package client

// The outbox entry codec: how a write group (o/...) and a sealed change
// (c/...) are stored.
//
// Layout 3 stores them packed: a header with the entry's seq, its op
// count and the estimated size of its ops (opsSize), then one or more
// blocks of the packed push form (api.PackPush, docs/PROTOCOL.md "Packed
// pull encoding") under seq 0, each holding ops of one write (a write's
// ops are cut in blocks of at most api.MaxPackedBlock bytes since issue
// 17's fifth pass, so that a push sends them as stored, pushchange.go; an
// entry written before holds one block per write, of any size):
//
//	0x01 | seq uvarint | ops uvarint | est uvarint | blocks uvarint | (len uvarint, block)*
//
// A packed op takes about a quarter of the bytes of its msgpack map (one
// batch of 3,000 20-byte fields: 80 KB rather than 354 KB), so a durable
// write encrypts, checksums and syncs far less; sealing concatenates the
// writes' blocks without decoding an op (sealFrom), and loading a change
// decodes blocks whose strings are shared by all their ops.
//
// Layouts 2 and older stored the msgpack map {"s": seq, "o": ops}
// (encodeChangeMsgpack). decodeChange reads both forms, and an entry is
// never rewritten just to change its form: a device upgraded with a full
// outbox pushes its old entries exactly as they were stored.

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// packedEntry is the first byte of a layout-3 outbox entry. A layout-2
// entry is a msgpack map of two keys and starts with 0x82.
const packedEntry = 0x01

// errEntry is wrapped by the errors for stored outbox entries that do not
// parse.
var errEntry = errors.New("malformed outbox entry")

// outboxEntry is a stored entry's header and, for the packed form, its
// blocks (slices of the stored bytes).
type outboxEntry struct {
	seq    uint64
	ops    int
	est    int      // opsSize of the ops, as estimated when written
	blocks [][]byte // packed form only
}

// encodeChange encodes a change as the outbox stores it (the packed form),
// its ops in blocks of at most api.MaxPackedBlock bytes (packBlocks), so
// that they go on the wire as they are (pushchange.go). Ops the packed
// form refuses (a pred newer than its op: crdt.Op.Validate refuses them
// and no write of this SDK stores them, but an older one may have) are
// stored in the msgpack form, which decodeChange reads too.
func encodeChange(c *api.Change) ([]byte, error) {
	if len(c.Ops) == 0 {
		return appendEntry(nil, c.Seq, 0, 0, nil), nil
	}
	blocks, err := packBlocks(c.Ops)
	if err != nil {
		return encodeChangeMsgpack(c)
	}
	return appendEntry(nil, c.Seq, len(c.Ops), opsSize(c.Ops), blocks), nil
}

// packBlocks packs one write's ops as the blocks of an entry, under seq 0:
// in consecutive pieces of at most api.MaxPackedBlock bytes, as packPush
// cuts a change for the wire, or in one block if a single op does not fit
// one (that block is packed again when pushed).
func packBlocks(ops []crdt.Op) ([][]byte, error) {
	if blocks, ok := packPush([]api.Change{{Ops: ops}}); ok {
		return blocks, nil
	}
	blk, err := packBlock(ops)
	if err != nil {
		return nil, err
	}
	return [][]byte{blk}, nil
}

// packBlock packs ops as one block of an entry.
func packBlock(ops []crdt.Op) ([]byte, error) {
	blk, err := api.PackPush([]api.Change{{Ops: ops}})
	if err != nil {
		return nil, fmt.Errorf("pack outbox entry: %w", err)
	}
	return blk, nil
}

// appendEntry appends a packed entry with the given header and blocks to
// dst.
func appendEntry(dst []byte, seq uint64, ops, est int, blocks [][]byte) []byte {
	n := 0
	for _, b := range blocks {
		n += len(b) + binary.MaxVarintLen32
	}
	if dst == nil {
		dst = make([]byte, 0, 1+4*binary.MaxVarintLen64+n)
	}
	dst = append(dst, packedEntry)
	dst = binary.AppendUvarint(dst, seq)
	dst = binary.AppendUvarint(dst, uint64(ops))
	dst = binary.AppendUvarint(dst, uint64(est))
	dst = binary.AppendUvarint(dst, uint64(len(blocks)))
	for _, b := range blocks {
		dst = binary.AppendUvarint(dst, uint64(len(b)))
		dst = append(dst, b...)
	}
	return dst
}

// parseEntry reads a stored entry's header, and its blocks if packed (then
// sliced from b, valid as long as b is). For an entry in the msgpack form
// it decodes the ops and returns them too, with est computed from them.
func parseEntry(b []byte) (outboxEntry, []crdt.Op, error) {
	if len(b) == 0 || b[0] != packedEntry {
		c, err := decodeChangeMsgpack(b)
		if err != nil {
			return outboxEntry{}, nil, err
		}
		return outboxEntry{seq: c.Seq, ops: len(c.Ops), est: opsSize(c.Ops)}, c.Ops, nil
	}
	p := 1
	next := func() uint64 {
		if p < 0 {
			return 0
		}
		v, n := binary.Uvarint(b[p:])
		if n <= 0 {
			p = -1
			return 0
		}
		p += n
		return v
	}
	e := outboxEntry{seq: next()}
	ops, est, nb := next(), next(), next()
	if p < 0 || ops > uint64(len(b)) || est > 1<<62 || nb > uint64(len(b)) {
		return outboxEntry{}, nil, fmt.Errorf("%w: bad header", errEntry)
	}
	e.ops, e.est = int(ops), int(est)
	e.blocks = make([][]byte, 0, nb)
	for range nb {
		n := next()
		if p < 0 || n > uint64(len(b)-p) {
			return outboxEntry{}, nil, fmt.Errorf("%w: block overruns the entry", errEntry)
		}
		e.blocks = append(e.blocks, b[p:p+int(n)])
		p += int(n)
	}
	if p != len(b) {
		return outboxEntry{}, nil, fmt.Errorf("%w: trailing bytes", errEntry)
	}
	return e, nil, nil
}

// decodeChange decodes a stored change in either form.
func decodeChange(b []byte) (*api.Change, error) {
	e, ops, err := parseEntry(b)
	if err != nil {
		return nil, fmt.Errorf("decode stored change: %w", err)
	}
	return e.change(ops)
}

// change returns the entry as a change: ops are its ops if parseEntry
// decoded them (the msgpack form), else its blocks are decoded.
func (e *outboxEntry) change(ops []crdt.Op) (*api.Change, error) {
	if e.blocks == nil {
		return &api.Change{Seq: e.seq, Ops: ops}, nil
	}
	c := &api.Change{Seq: e.seq}
	for _, blk := range e.blocks {
		// The stored ops were validated before they were written;
		// UnpackPush checks them again, and copies their values out of
		// blk.
		cs, err := api.UnpackPush(blk, 0)
		if err != nil {
			return nil, fmt.Errorf("decode stored change: %w", err)
		}
		for i := range cs {
			switch {
			case len(e.blocks) == 1 && len(cs) == 1:
				c.Ops = cs[i].Ops // the one block's ops, not copied
			case c.Ops == nil:
				c.Ops = append(make([]crdt.Op, 0, e.ops), cs[i].Ops...)
			default:
				c.Ops = append(c.Ops, cs[i].Ops...)
			}
		}
	}
	if len(c.Ops) != e.ops {
		return nil, fmt.Errorf("decode stored change: %w: %d ops, header says %d", errEntry, len(c.Ops), e.ops)
	}
	return c, nil
}

// entryOps returns the number of ops in a stored entry, reading only the
// header of a packed one.
func entryOps(b []byte) (int, error) {
	e, _, err := parseEntry(b)
	return e.ops, err
}

// encodeChangeMsgpack encodes a change in the msgpack form layouts 2 and
// older stored: the map {"s": seq, "o": ops} with the ops as
// crdt.NewOpsBytes writes them, the bytes msgpack's encoder writes for an
// api.Change (TestChangeCodecMatchesMsgpack), without its reflection.
func encodeChangeMsgpack(c *api.Change) ([]byte, error) {
	ops := crdt.NewOpsBytes(c.Ops)
	b := make([]byte, 0, 16+len(ops))
	b = crdt.AppendUint(append(b, 0x82, 0xa1, 's'), c.Seq)
	b = append(b, 0xa1, 'o')
	if len(ops) == 0 {
		return append(b, 0xc0), nil
	}
	return append(b, ops...), nil
}

// decodeChangeMsgpack decodes a change in the msgpack form. The form
// encodeChangeMsgpack writes is read directly, its ops through
// crdt.OpsBytes (crdt's fast op decoder); anything else, or ops that
// decoder refuses, goes through msgpack's decoder, so a change stored by
// an older SDK still loads.
func decodeChangeMsgpack(b []byte) (*api.Change, error) {
	if len(b) > 4 && b[0] == 0x82 && b[1] == 0xa1 && b[2] == 's' {
		if seq, n, ok := readCompactUint(b[3:]); ok && len(b) > 5+n && b[3+n] == 0xa1 && b[4+n] == 'o' {
			if ops, err := crdt.OpsBytes(b[5+n:]).Ops(); err == nil {
				return &api.Change{Seq: seq, Ops: ops}, nil
			}
		}
	}
	var c api.Change
	if err := msgpack.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// readCompactUint reads a msgpack unsigned integer at the start of b.
func readCompactUint(b []byte) (v uint64, n int, ok bool) {
	switch {
	case len(b) >= 1 && b[0] <= 0x7f:
		return uint64(b[0]), 1, true
	case len(b) >= 2 && b[0] == 0xcc:
		return uint64(b[1]), 2, true
	case len(b) >= 3 && b[0] == 0xcd:
		return uint64(binary.BigEndian.Uint16(b[1:])), 3, true
	case len(b) >= 5 && b[0] == 0xce:
		return uint64(binary.BigEndian.Uint32(b[1:])), 5, true
	case len(b) >= 9 && b[0] == 0xcf:
		return binary.BigEndian.Uint64(b[1:]), 9, true
	}
	return 0, 0, false
}

// wireBlocks returns a packed entry's blocks under its seq
// (api.RepackSeq), copied into one new buffer: valid after the stored
// bytes they were read from are gone.
func (e *outboxEntry) wireBlocks() ([][]byte, error) {
	n := 0
	for _, b := range e.blocks {
		n += len(b) + binary.MaxVarintLen64
	}
	buf := make([]byte, 0, n)
	out := make([][]byte, len(e.blocks))
	for i, b := range e.blocks {
		start := len(buf)
		var err error
		if buf, err = api.RepackSeq(buf, b, e.seq); err != nil {
			return nil, fmt.Errorf("%w: block %d: %w", errEntry, i, err)
		}
		out[i] = buf[start:len(buf):len(buf)]
	}
	return out, nil
}
