package api

// The packer as it was before issue 17's third pass (i17-pack), kept as
// the reference TestPackPushMatchesReference compares PackPush with byte
// for byte. Do not change it.

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/doorstep-health/doorstep/crdt"
)

// refPackPush is PackPush as it was.
func refPackPush(changes []Change) ([]byte, error) {
	p := refNewPacker()
	cs := make([]refPackedChange, len(changes))
	for i := range changes {
		cs[i] = refPackedChange{changes[i].Seq, changes[i].Ops}
	}
	return p.pack(cs)
}

// refPackedChange is one change as a block holds it: its header (a string
// index for a pulled change's author, the seq of a pushed one) and ops.
type refPackedChange struct {
	head uint64
	ops  []crdt.Op
}

func refNewPacker() *refPacker {
	return &refPacker{strs: map[string]uint64{}, reps: map[crdt.ReplicaID]uint64{}}
}

// pack writes the block of cs; p may already hold strings (authors).
func (p *refPacker) pack(cs []refPackedChange) ([]byte, error) {
	var cols [numCols][]byte
	var runs []byte
	nRuns := 0
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
	// so its run goes on without a look-up in the string table.
	var lastTeam, lastColl, lastRec string
	for _, c := range cs {
		for i := range c.ops {
			op := &c.ops[i]
			if last.n > 0 && op.Record == lastRec && op.Collection == lastColl && op.Team == lastTeam {
				last.n++
			} else {
				flush()
				last.team, last.coll, last.rec, last.n = p.str(op.Team), p.str(op.Collection), p.str(op.Record), 1
				lastTeam, lastColl, lastRec = op.Team, op.Collection, op.Record
			}
			cols[colField] = binary.AppendUvarint(cols[colField], p.str(op.Field))
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
			if len(op.Value) > 0 {
				cols[colValue] = binary.AppendUvarint(cols[colValue], uint64(len(op.Value)))
				cols[colValue] = append(cols[colValue], op.Value...)
			}
		}
	}
	flush()
	cols[colRuns] = append(binary.AppendUvarint(nil, uint64(nRuns)), runs...)

	out := []byte{packedVersion}
	out = binary.AppendUvarint(out, uint64(len(p.strList)))
	for _, s := range p.strList {
		if refIsHex32(s) {
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
	for _, col := range cols {
		out = binary.AppendUvarint(out, uint64(len(col)))
		out = append(out, col...)
	}
	return out, nil
}

// packer holds a block's string and replica tables while it is built.
type refPacker struct {
	strs    map[string]uint64
	strList []string
	reps    map[crdt.ReplicaID]uint64
	repList []crdt.ReplicaID
	// lastRep was looked up last, at lastRepIndex.
	lastRep      crdt.ReplicaID
	lastRepIndex uint64
}

func (p *refPacker) str(s string) uint64 {
	i, ok := p.strs[s]
	if !ok {
		i = uint64(len(p.strList))
		p.strs[s] = i
		p.strList = append(p.strList, s)
	}
	return i
}

func (p *refPacker) rep(r crdt.ReplicaID) uint64 {
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
func refIsHex32(s string) bool {
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
