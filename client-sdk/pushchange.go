package client

// Pushing stored blocks as they are (issue 17 fifth pass). A sealed change
// in the packed outbox form (outboxentry.go) holds its writes' ops as
// packed push blocks under seq 0. loadChanges gives each block the
// change's seq (api.RepackSeq: only the block's header is rewritten) and
// decodes nothing: when the server reads packed pushes, those blocks are
// the request's (packWire). Ops are decoded only where they are needed:
// the plain push to a server that does not read packed pushes, a change
// to split or set aside, the rejections of a reply, and a stored block too
// big for the wire (one written before writes were packed in wire-sized
// pieces), which is packed again as before.

import (
	"fmt"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// pushChange is a sealed change loaded for a request: its seq and op
// count, and its ops or its packed blocks under its seq (or both, once
// decoded). A stub (highwater.go) and an empty change have neither.
type pushChange struct {
	Seq    uint64
	n      int // its ops
	est    int // their estimated size (opsSize)
	ops    []crdt.Op
	blocks [][]byte // packed under Seq, owned (copied out of the store)
}

// fromChanges returns changes, whose ops are at hand, as pushChanges.
func fromChanges(changes []api.Change) []pushChange {
	out := make([]pushChange, len(changes))
	for i, c := range changes {
		out[i] = pushChange{Seq: c.Seq, n: len(c.Ops), est: opsSize(c.Ops), ops: c.Ops}
	}
	return out
}

// decoded returns c's ops, decoding its blocks (and keeping the ops) if
// they are not at hand.
func (c *pushChange) decoded() ([]crdt.Op, error) {
	if c.ops != nil || c.n == 0 {
		return c.ops, nil
	}
	cs, err := api.UnpackPushBlocks(c.blocks, 0)
	if err != nil {
		return nil, fmt.Errorf("client: decode stored change %d: %w", c.Seq, err)
	}
	var ops []crdt.Op
	for _, pc := range cs {
		if pc.Seq != c.Seq {
			return nil, fmt.Errorf("client: decode stored change %d: %w: a block of seq %d", c.Seq, errEntry, pc.Seq)
		}
		ops = append(ops, pc.Ops...)
	}
	if len(ops) != c.n {
		return nil, fmt.Errorf("client: decode stored change %d: %w: %d ops, header says %d", c.Seq, errEntry, len(ops), c.n)
	}
	c.ops = ops
	return ops, nil
}

// change returns c as an api.Change with its ops.
func (c *pushChange) change() (*api.Change, error) {
	ops, err := c.decoded()
	if err != nil {
		return nil, err
	}
	return &api.Change{Seq: c.Seq, Ops: ops}, nil
}

// plainChanges returns changes with their ops, for a plain push.
func plainChanges(changes []pushChange) ([]api.Change, error) {
	out := make([]api.Change, len(changes))
	for i := range changes {
		c, err := changes[i].change()
		if err != nil {
			return nil, err
		}
		out[i] = *c
	}
	return out, nil
}

// minWireBlock is the average size a change's stored blocks must have to
// go on the wire as they are. Each block carries its own string table
// (team, collection, field names) and costs the server a parse: a change
// sealed from many small writes, a block each, is packed again into one
// block (or a few) rather than sent as hundreds of tiny ones.
const minWireBlock = api.MaxPackedBlock / 8

// wireReady reports whether c's stored blocks go on the wire as they are:
// it has some, each fits api.MaxPackedBlock, and they are one block or
// big enough (minWireBlock).
func (c *pushChange) wireReady() bool {
	if len(c.blocks) == 0 {
		return false
	}
	n := 0
	for _, b := range c.blocks {
		if len(b) > api.MaxPackedBlock {
			return false
		}
		n += len(b)
	}
	return len(c.blocks) == 1 || n >= minWireBlock*len(c.blocks)
}

// packWire returns the packed push of changes (as packPush does it): the
// stored blocks of each that has them wire-sized, the others' ops packed
// (decoded first if need be). ok is false, as for packPush, when a change
// does not pack; err when a stored change does not decode.
func packWire(changes []pushChange) (blocks [][]byte, ok bool, err error) {
	for i := range changes {
		c := &changes[i]
		if c.wireReady() {
			blocks = append(blocks, c.blocks...)
			continue
		}
		ch, err := c.change()
		if err != nil {
			return nil, false, err
		}
		bs, ok := packPush([]api.Change{*ch})
		if !ok {
			return nil, false, nil
		}
		blocks = append(blocks, bs...)
	}
	return blocks, true, nil
}
