package api

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"

	"github.com/doorstep-health/doorstep/crdt"
)

// PullEncodingPacked is the SyncRequest.PullEncoding value asking for the
// packed pull encoding: the reply carries its log entries in
// SyncResponse.Packed (see PackChanges) instead of SyncResponse.Changes.
const PullEncodingPacked = 1

// packedVersion is the first byte of a packed block.
const packedVersion = 1

// ErrPacked is wrapped by every error UnpackChanges returns for bytes that
// are not a well-formed packed block.
var ErrPacked = errors.New("api: malformed packed changes")

// The op columns of a packed block, in their order on the wire.
const (
	colRuns  = iota // record runs: team, collection, record (string indexes), length
	colField        // per op: field (string index)
	colKind         // per op: kind | value present << 3 | pred count << 4 (15: a count follows)
	colTime         // per op: zigzag delta of the op's time from the previous op's
	colRep          // per op: the op's replica (replica index)
	colPred         // per pred: replica index, the op's time minus the pred's time
	colValue        // per op with a value: length, raw msgpack
	numCols
)

// PackChanges encodes pulled changes in the packed pull encoding
// (docs/PROTOCOL.md "Packed pull encoding"): one string table (authors,
// teams, collections, record IDs, field names; 32-digit lower-case hex
// strings stored as their 16 bytes), one table of replica IDs, the
// changes' authors and op counts, then the ops column by column: runs of
// ops on one record, fields, kinds, times as deltas, replicas, preds
// relative to their op, values. The ops of each change are decoded (and
// validated) from their msgpack form; the result decodes with
// UnpackChanges to the same ops in the same order.
func PackChanges(changes []PulledChange) ([]byte, error) {
	p := newPacker(len(changes))
	cs := make([]packedChange, len(changes))
	for i := range changes {
		ops, err := changes[i].Ops.Ops()
		if err != nil {
			return nil, fmt.Errorf("pack change %d: %w", i, err)
		}
		cs[i] = packedChange{p.str(changes[i].Author), ops}
	}
	return p.pack(cs)
}

// MaxPackedBlock is the largest packed push block a device sends: under
// the 65,536 bytes a server's default limits allow one bin in a sync body.
const MaxPackedBlock = 60_000

// PackPush encodes a device's changes as one block of the packed form
// (an element of SyncRequest field 7q, docs/PROTOCOL.md "Packed pull
// encoding"): as PackChanges, with
// each change's seq where a pulled change has its author. The ops are
// encoded as they are; UnpackPush validates them.
func PackPush(changes []Change) ([]byte, error) {
	cs := make([]packedChange, len(changes))
	for i := range changes {
		cs[i] = packedChange{changes[i].Seq, changes[i].Ops}
	}
	n := 0
	for _, c := range cs {
		n += len(c.ops)
	}
	// Sized for records of about 30 fields: a record ID per 30 ops, and
	// the fields, team and collection (the map grows past that).
	return newPacker(min(n/30, 4096) + 32).pack(cs)
}

// packedChange is one change as a block holds it: its header (a string
// index for a pulled change's author, the seq of a pushed one) and ops.
type packedChange struct {
	head uint64
	ops  []crdt.Op
}

// newPacker returns a packer whose string table is sized for about n
// strings.
func newPacker(n int) *packer {
	return &packer{strs: make(map[string]uint64, n), reps: map[crdt.ReplicaID]uint64{}}
}

// uvarintLen is the length of v as binary.AppendUvarint writes it.
func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// maxFieldSlots bounds the field indexes pack remembers by position in
// a run.
const maxFieldSlots = 256

// pack writes the block of cs; p may already hold strings (authors).
func (p *packer) pack(cs []packedChange) ([]byte, error) {
	n := 0
	for _, c := range cs {
		n += len(c.ops)
	}
	var cols [numCols][]byte
	// One buffer holds every column but the values (written straight
	// into the block) at their usual sizes: a byte for each op's kind,
	// replica and preds, two for its field and time, and eight for a run
	// of 30 ops. A column outgrowing its share is moved by append.
	sizes := [numCols]int{
		colRuns:  8 + n/4,
		colField: 2 * n,
		colKind:  n,
		colTime:  2 * n,
		colRep:   n,
		colPred:  n,
	}
	total := 0
	for _, s := range sizes {
		total += s
	}
	scratch := make([]byte, total)
	for c, s := range sizes {
		cols[c], scratch = scratch[:0:s], scratch[s:]
	}
	runs := cols[colRuns] // without its count, nRuns
	nRuns, values := 0, 0 // values: the value column's length
	var last struct {
		team, coll, rec uint64
		n               uint64
	}
	flush := func() {
		if last.n > 0 {
			runs = binary.AppendUvarint(runs, last.team)
			runs = binary.AppendUvarint(runs, last.coll)
			runs = binary.AppendUvarint(runs, last.rec)
			runs = binary.AppendUvarint(runs, last.n)
			nRuns++
		}
	}
	var prev crdt.Timestamp
	// The previous op's names: consecutive ops are mostly on one record,
	// so its run goes on without a look-up in the string table, and a new
	// run's team and collection are mostly the last run's.
	var lastTeam, lastColl, lastRec string
	// The field index of the op at each position of the last runs: the
	// records of a batch mostly have their fields in one order.
	var slots [maxFieldSlots]struct {
		s string
		i uint64
	}
	nSlots, pos := 0, 0
	for _, c := range cs {
		for i := range c.ops {
			op := &c.ops[i]
			if last.n > 0 && op.Record == lastRec && op.Collection == lastColl && op.Team == lastTeam {
				last.n++
			} else {
				flush()
				if last.n == 0 || op.Team != lastTeam {
					last.team, lastTeam = p.str(op.Team), op.Team
				}
				if last.n == 0 || op.Collection != lastColl {
					last.coll, lastColl = p.str(op.Collection), op.Collection
				}
				last.rec, lastRec, last.n = p.str(op.Record), op.Record, 1
				pos = 0
			}
			var fi uint64
			switch {
			case pos < nSlots && slots[pos].s == op.Field:
				fi = slots[pos].i
			case pos < maxFieldSlots:
				fi = p.str(op.Field)
				slots[pos].s, slots[pos].i = op.Field, fi
				nSlots = max(nSlots, pos+1)
			default:
				fi = p.str(op.Field)
			}
			pos++
			cols[colField] = binary.AppendUvarint(cols[colField], fi)
			k := byte(op.Kind) & 7
			if len(op.Value) > 0 {
				k |= 1 << 3
			}
			np := len(op.Pred)
			k |= byte(min(np, 15)) << 4
			cols[colKind] = append(cols[colKind], k)
			if np >= 15 {
				cols[colKind] = binary.AppendUvarint(cols[colKind], uint64(np))
			}
			cols[colTime] = binary.AppendVarint(cols[colTime], int64(op.ID.Time-prev))
			prev = op.ID.Time
			cols[colRep] = binary.AppendUvarint(cols[colRep], p.rep(op.ID.Replica))
			for _, pr := range op.Pred {
				if pr.Time > op.ID.Time {
					return nil, fmt.Errorf("pack: op %s names a newer pred %s", op.ID, pr)
				}
				cols[colPred] = binary.AppendUvarint(cols[colPred], p.rep(pr.Replica))
				cols[colPred] = binary.AppendUvarint(cols[colPred], uint64(op.ID.Time-pr.Time))
			}
			if nv := len(op.Value); nv > 0 {
				values += uvarintLen(uint64(nv)) + nv
			}
		}
	}
	flush()
	cols[colRuns] = runs

	// The block's size, within a few bytes: a string takes at most 3
	// bytes more than itself (a hex one 17 of its 32), a change's header
	// 20, a column's length 10.
	size := 1 + 10 + 10 + 16*len(p.repList) + 10 + 20*len(cs) + 10*numCols + 10 + values
	for _, s := range p.strList {
		size += 3 + len(s)
	}
	for _, col := range cols {
		size += len(col)
	}
	out := make([]byte, 1, size)
	out[0] = packedVersion
	out = binary.AppendUvarint(out, uint64(len(p.strList)))
	for _, s := range p.strList {
		if isHex32(s) {
			out = binary.AppendUvarint(out, 16<<1|1)
			out, _ = hex.AppendDecode(out, []byte(s))
		} else {
			out = binary.AppendUvarint(out, uint64(len(s))<<1)
			out = append(out, s...)
		}
	}
	out = binary.AppendUvarint(out, uint64(len(p.repList)))
	for _, r := range p.repList {
		out = append(out, r[:]...)
	}
	out = binary.AppendUvarint(out, uint64(len(cs)))
	for _, c := range cs {
		out = binary.AppendUvarint(out, c.head)
		out = binary.AppendUvarint(out, uint64(len(c.ops)))
	}
	out = binary.AppendUvarint(out, uint64(uvarintLen(uint64(nRuns))+len(runs)))
	out = binary.AppendUvarint(out, uint64(nRuns))
	out = append(out, runs...)
	for _, col := range cols[colRuns+1 : colValue] {
		out = binary.AppendUvarint(out, uint64(len(col)))
		out = append(out, col...)
	}
	out = binary.AppendUvarint(out, uint64(values))
	for _, c := range cs {
		for i := range c.ops {
			if v := c.ops[i].Value; len(v) > 0 {
				out = binary.AppendUvarint(out, uint64(len(v)))
				out = append(out, v...)
			}
		}
	}
	return out, nil
}

// packer holds a block's string and replica tables while it is built.
type packer struct {
	strs    map[string]uint64
	strList []string
	reps    map[crdt.ReplicaID]uint64
	repList []crdt.ReplicaID
	// lastRep was looked up last, at lastRepIndex.
	lastRep      crdt.ReplicaID
	lastRepIndex uint64
}

func (p *packer) str(s string) uint64 {
	i, ok := p.strs[s]
	if !ok {
		i = uint64(len(p.strList))
		p.strs[s] = i
		p.strList = append(p.strList, s)
	}
	return i
}

func (p *packer) rep(r crdt.ReplicaID) uint64 {
	if len(p.repList) > 0 && r == p.lastRep {
		return p.lastRepIndex // the common case: one replica's ops
	}
	i, ok := p.reps[r]
	if !ok {
		i = uint64(len(p.repList))
		p.reps[r] = i
		p.repList = append(p.repList, r)
	}
	p.lastRep, p.lastRepIndex = r, i
	return i
}

// isHex32 reports whether s is 32 lower-case hex digits, the form of a
// random record ID (and of replica IDs in JSON), which the string table
// holds as its 16 bytes.
func isHex32(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// UnpackChanges decodes a packed block (PackChanges) from outside. It is
// bounded by the input: every count is checked against the bytes left
// before anything is allocated for it, every index against its table,
// and every op is validated (crdt.Op.Validate, which checks values against
// crdt.DefaultLimits) before it is returned. Each change's ops come back
// in their msgpack form (crdt.OpsBytes), as SyncResponse.Changes carries
// them. Errors wrap ErrPacked (and crdt.ErrMalformed too for an op that
// is well-formed here but not a valid op).
func UnpackChanges(b []byte) ([]PulledChange, error) {
	// No page holds a million ops (a pushed request holds at most
	// MaxItems/8 on a default server): the bound keeps a hostile block's
	// allocation near a hundred times its own size at worst.
	strs, heads, ops, err := unpack(b, true, crdt.DefaultLimits.MaxItems)
	if err != nil {
		return nil, err
	}
	out := make([]PulledChange, len(heads))
	for i := range heads {
		out[i] = PulledChange{Author: strs[heads[i]], Ops: crdt.NewOpsBytes(ops[i])}
	}
	return out, nil
}

// UnpackPush decodes a packed push (PackPush) from outside, bounded and
// validated as UnpackChanges is, and refusing more than maxOps ops in all
// (0: no bound beyond the input's size). Errors wrap ErrPacked.
func UnpackPush(b []byte, maxOps int) ([]Change, error) {
	_, heads, ops, err := unpack(b, false, maxOps)
	if err != nil {
		return nil, err
	}
	out := make([]Change, len(heads))
	for i := range heads {
		out[i] = Change{Seq: heads[i], Ops: ops[i]}
	}
	return out, nil
}

// UnpackPushBlocks decodes the blocks of one packed push (SyncRequest
// field 7q) from outside, each bounded and validated as UnpackPush does
// it, refusing more than maxOps ops in all the blocks (0: no bound
// beyond their size). A change continued from block to block (pieces of
// one seq in a row, docs/PROTOCOL.md "Packed pushes") comes back as one
// change holding its ops in order. Every op of every block is decoded
// into one array, sized once, so a continued change is joined without a
// copy.
//
// Unlike UnpackPush, the ops' values are slices of the blocks: the caller
// must neither change nor reuse blocks while it holds the changes. An
// error names the block (ErrPacked wrapped, with the block's index).
func UnpackPushBlocks(blocks [][]byte, maxOps int) ([]Change, error) {
	hs := make([]blockHead, len(blocks))
	total, pieces := 0, 0
	for i, b := range blocks {
		left := 0 // no bound
		if maxOps > 0 && total < maxOps {
			left = maxOps - total
		}
		if err := hs[i].parse(b, false, left); err != nil {
			return nil, fmt.Errorf("packed block %d: %w", i, err)
		}
		total += hs[i].total
		if maxOps > 0 && total > maxOps {
			return nil, fmt.Errorf("packed block %d: %w: more than %d ops in the push", i, ErrPacked, maxOps)
		}
		pieces += len(hs[i].heads)
	}
	ops := make([]crdt.Op, total)
	out := make([]Change, 0, pieces)
	p := 0
	for i := range hs {
		h := &hs[i]
		if err := h.decode(ops[p : p+h.total]); err != nil {
			return nil, fmt.Errorf("packed block %d: %w", i, err)
		}
		for j, n := range h.counts {
			// Consecutive pieces of one seq are one change: their ops
			// are next to each other in ops already.
			if k := len(out) - 1; k >= 0 && out[k].Seq == h.heads[j] {
				out[k].Ops = ops[p-len(out[k].Ops) : p+n : p+n]
			} else {
				var o []crdt.Op
				if n > 0 {
					o = ops[p : p+n : p+n]
				}
				out = append(out, Change{Seq: h.heads[j], Ops: o})
			}
			p += n
		}
	}
	return out, nil
}

// UnpackPacked replaces the request's packed push (Packed) by the
// changes its blocks hold (UnpackPushBlocks, at most maxOps ops in all;
// 0: no bound beyond their size) and clears Packed; a request without
// Packed is left as it is. The values of the ops are slices of the
// blocks (see UnpackPushBlocks). Every op it sets has passed
// crdt.Op.Validate: OpsValidated says so while Changes is still the
// slice it set.
func (r *SyncRequest) UnpackPacked(maxOps int) error {
	if len(r.Packed) == 0 {
		return nil
	}
	changes, err := UnpackPushBlocks(r.Packed, maxOps)
	if err != nil {
		return err
	}
	r.Changes, r.Packed, r.unpacked = changes, nil, changes
	return nil
}

// OpsValidated reports whether every op of r.Changes passed
// crdt.Op.Validate as it was decoded: r.Changes is the slice
// UnpackPacked set (same array, same length), so that a server need not
// validate the ops again. The caller must not have changed the ops in
// place since; a Changes decoded from msgpack (field c) or set by hand
// reports false.
func (r *SyncRequest) OpsValidated() bool {
	u, c := r.unpacked, r.Changes
	return len(c) > 0 && len(u) == len(c) && &u[0] == &c[0]
}

// unpack decodes a block: its string table, each change's header (a
// string index when authors is set, checked against the table) and each
// change's ops.
func unpack(b []byte, authors bool, maxOps int) (strs []string, heads []uint64, opsOf [][]crdt.Op, err error) {
	var h blockHead
	if err := h.parse(b, authors, maxOps); err != nil {
		return nil, nil, nil, err
	}
	// The values are returned as slices of one copy of their column (b
	// may be a buffer the caller reuses).
	h.cols[colValue].b = bytes.Clone(h.cols[colValue].b)
	ops := make([]crdt.Op, h.total)
	if err := h.decode(ops); err != nil {
		return nil, nil, nil, err
	}
	opsOf = make([][]crdt.Op, len(h.counts))
	p := 0
	for i, n := range h.counts {
		if n > 0 {
			opsOf[i] = ops[p : p+n : p+n]
		}
		p += n
	}
	return h.strs, h.heads, opsOf, nil
}

// blockHead is a block read up to its ops (parse): its tables, each
// change's header and op count, and its columns, checked to hold the
// ops; decode then reads the ops.
type blockHead struct {
	strs   []string
	reps   []crdt.ReplicaID
	heads  []uint64
	counts []int
	total  int // sum of counts
	cols   [numCols]*reader
}

// parse reads b up to its ops: the string and replica tables, the
// changes' headers and counts (at most maxOps ops in all, 0: no bound
// beyond the input) and the columns. The columns' bytes are slices of b.
func (h *blockHead) parse(b []byte, authors bool, maxOps int) error {
	if len(b) == 0 || b[0] != packedVersion {
		return fmt.Errorf("%w: not version %d", ErrPacked, packedVersion)
	}
	rd := &reader{b: b, p: 1}
	ns := rd.count(1)
	strs := make([]string, 0, ns)
	for range ns {
		h := rd.uvarint()
		n := h >> 1
		if n > math.MaxUint16+1 || n > uint64(rd.left()) || h&1 == 1 && n != 16 {
			rd.fail("string of %d bytes", n)
		}
		raw := rd.bytes(int(n))
		if h&1 == 1 {
			strs = append(strs, hex.EncodeToString(raw))
		} else {
			strs = append(strs, string(raw))
		}
	}
	nr := rd.count(16)
	reps := make([]crdt.ReplicaID, nr)
	for i := range reps {
		copy(reps[i][:], rd.bytes(16))
	}
	nc := rd.count(2)
	heads := make([]uint64, nc)
	counts := make([]int, nc)
	total := 0
	for i := range heads {
		heads[i] = rd.uvarint()
		if authors && heads[i] >= uint64(len(strs)) {
			rd.fail("author %d of %d strings", heads[i], len(strs))
		}
		// Every op takes at least a byte in the field, kind, time and
		// replica columns, so no more ops than bytes are left.
		n := rd.count(1)
		counts[i] = n
		total += n
		if n > crdt.DefaultLimits.MaxLen {
			rd.fail("%d ops in one change", n)
		}
		if total > rd.left() || maxOps > 0 && total > maxOps {
			rd.fail("%d ops in %d bytes", total, rd.left())
		}
	}
	var cols [numCols]*reader
	for i := range cols {
		n := rd.count(1)
		cols[i] = &reader{b: rd.bytes(n)}
	}
	if rd.err != nil {
		return rd.err
	}
	if rd.left() != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrPacked, rd.left())
	}
	for _, c := range []int{colField, colKind, colTime, colRep} {
		if total > len(cols[c].b) {
			// Each op takes at least a byte in these columns: refuse
			// before allocating for ops the block cannot hold.
			return fmt.Errorf("%w: %d ops, column %d holds %d bytes", ErrPacked, total, c, len(cols[c].b))
		}
	}
	*h = blockHead{strs: strs, reps: reps, heads: heads, counts: counts, total: total, cols: cols}
	return nil
}

// decode reads the block's ops into ops (len h.total), validating each.
func (h *blockHead) decode(ops []crdt.Op) error {
	strs, reps, cols, total := h.strs, h.reps, &h.cols, h.total
	runs := cols[colRuns]
	nRuns := runs.count(4)
	var team, coll, rec string
	left := 0
	var prev crdt.Timestamp
	for i := range ops {
		for left == 0 {
			if nRuns == 0 {
				runs.fail("runs cover %d of %d ops", i, total)
				return runs.err
			}
			nRuns--
			team, coll, rec = runs.index(strs), runs.index(strs), runs.index(strs)
			left = runs.count(0)
			if runs.err != nil {
				return runs.err
			}
		}
		left--
		op := &ops[i]
		op.Team, op.Collection, op.Record = team, coll, rec
		op.Field = cols[colField].index(strs)
		k := cols[colKind].byte()
		op.Kind = crdt.Kind(k & 7)
		np := int(k >> 4)
		if np == 15 {
			np = cols[colKind].count(0) // bounded by the pred column below
		}
		t := cols[colTime].varint()
		op.ID.Time = prev + crdt.Timestamp(t)
		prev = op.ID.Time
		if ri := cols[colRep].uvarint(); ri < uint64(len(reps)) {
			op.ID.Replica = reps[ri]
		} else {
			cols[colRep].fail("replica %d of %d", ri, len(reps))
		}
		if np > cols[colPred].left()/2 {
			cols[colPred].fail("%d preds in %d bytes", np, cols[colPred].left())
		}
		if cols[colPred].err == nil && np > 0 {
			op.Pred = make([]crdt.OpID, np)
			for j := range op.Pred {
				ri := cols[colPred].uvarint()
				d := cols[colPred].uvarint()
				if ri >= uint64(len(reps)) || d > uint64(op.ID.Time) {
					cols[colPred].fail("pred %d of op %d", j, i)
					break
				}
				op.Pred[j] = crdt.OpID{Time: op.ID.Time - crdt.Timestamp(d), Replica: reps[ri]}
			}
		}
		if k&(1<<3) != 0 {
			v := cols[colValue]
			n := v.uvarint()
			if n == 0 || n > uint64(v.left()) {
				v.fail("value of %d bytes", n)
			} else {
				op.Value = v.bytes(int(n))
			}
		}
		for _, c := range cols {
			if c.err != nil {
				return fmt.Errorf("op %d: %w", i, c.err)
			}
		}
		if err := op.Validate(); err != nil {
			return fmt.Errorf("%w: op %d: %w", ErrPacked, i, err)
		}
	}
	if left != 0 || nRuns != 0 {
		return fmt.Errorf("%w: runs cover more than %d ops", ErrPacked, total)
	}
	for i, c := range cols {
		if c.left() != 0 {
			return fmt.Errorf("%w: column %d: %d bytes left over", ErrPacked, i, c.left())
		}
	}
	return nil
}

// reader reads varints and bytes from a packed block, remembering the
// first error; after an error every read returns zero values.
type reader struct {
	b   []byte
	p   int
	err error
}

func (r *reader) left() int { return len(r.b) - r.p }

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrPacked, fmt.Sprintf(format, args...))
	}
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.p:])
	if n <= 0 {
		r.fail("bad varint at %d", r.p)
		return 0
	}
	r.p += n
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b[r.p:])
	if n <= 0 {
		r.fail("bad varint at %d", r.p)
		return 0
	}
	r.p += n
	return v
}

// count reads a count of items each taking at least per bytes of what is
// left (0: no check), failing when they could not fit.
func (r *reader) count(per int) int {
	v := r.uvarint()
	if v > math.MaxInt32 || per > 0 && v > uint64(r.left()/per) {
		r.fail("count %d in %d bytes", v, r.left())
		return 0
	}
	return int(v)
}

func (r *reader) index(strs []string) string {
	i := r.uvarint()
	if i >= uint64(len(strs)) {
		r.fail("string %d of %d", i, len(strs))
		return ""
	}
	return strs[i]
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.left() < 1 {
		r.fail("short column")
		return 0
	}
	r.p++
	return r.b[r.p-1]
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil || n < 0 {
		return nil
	}
	if n > r.left() {
		r.fail("%d bytes wanted, %d left", n, r.left())
		return nil
	}
	r.p += n
	return r.b[r.p-n : r.p : r.p]
}

// RepackSeq appends to dst a packed push block (PackPush) of one change,
// b, with its change header set to seq, and returns the extended slice.
// Only the header is rewritten: the string and replica tables before it
// are skipped (their lengths checked against b) and the op count and
// columns after it are copied as they are, so the result decodes with
// UnpackPush exactly as b does, to the same ops under seq, and fails
// exactly where b fails. A device stores each write's ops as such a block
// under seq 0 and pushes them under the seq of the change they were
// sealed into without decoding them. It refuses (ErrPacked wrapped) a
// block that is not of this version, whose tables overrun it, or that
// holds other than one change.
func RepackSeq(dst, b []byte, seq uint64) ([]byte, error) {
	if len(b) == 0 || b[0] != packedVersion {
		return dst, fmt.Errorf("%w: not version %d", ErrPacked, packedVersion)
	}
	rd := &reader{b: b, p: 1}
	ns := rd.count(1)
	for range ns {
		h := rd.uvarint()
		n := h >> 1
		if n > uint64(rd.left()) {
			rd.fail("string of %d bytes", n)
		}
		rd.bytes(int(n))
	}
	nr := rd.count(16)
	rd.bytes(16 * nr)
	if nc := rd.uvarint(); rd.err == nil && nc != 1 {
		rd.fail("%d changes in the block, want 1", nc)
	}
	start := rd.p
	rd.uvarint()
	if rd.err != nil {
		return dst, rd.err
	}
	dst = append(dst, b[:start]...)
	dst = binary.AppendUvarint(dst, seq)
	return append(dst, b[rd.p:]...), nil
}
