package crdt

import (
	"bytes"
	"slices"
	"strings"
)

// AppendNewState appends to dst the canonical encoding (MarshalRecord) of
// the state a blank record of ops' team, collection and ID reaches by
// applying ops, when ops have the shape of a record's first change as a
// device writes it, and reports whether they do; on false dst is returned
// as it was and the caller applies the ops the usual way (a Batch). The
// shape: at least one op, all of the first op's record, each a write, add
// or append that names no pred, none to DeletedField, IDs strictly
// increasing, each field named once. Every field of such a state holds
// one live entry (so none is in conflict and the record is not deleted),
// and the encoding is written straight from the ops, without building a
// Record: a server that merges a new record's fields ahead of its commit
// stores these bytes and builds the Record only if something reads it.
//
// The ops must pass Validate (a caller that has not checked them uses a
// Batch, whose Add does); the result is then exactly
// MarshalRecord of the record the ops leave (TestAppendNewStateMatches).
func AppendNewState(dst []byte, ops []Op) ([]byte, bool) {
	if len(ops) == 0 {
		return dst, false
	}
	first := &ops[0]
	// Field order: the ops' own when their fields are strictly increasing
	// (the usual change), else sorted; equal neighbours are a field named
	// twice.
	var orderBuf [64]int32
	var order []int32
	size := 48 + len(first.Collection) + len(first.Record) + len(first.Team)
	var repBuf [4]Seen // the clock: each replica's last (highest) op time
	clock := repBuf[:0]
	for i := range ops {
		op := &ops[i]
		if op.Kind != KindWrite && op.Kind != KindAdd && op.Kind != KindAppend || len(op.Pred) > 0 || op.Field == DeletedField ||
			op.Record != first.Record || op.Collection != first.Collection || op.Team != first.Team {
			return dst, false
		}
		if i > 0 {
			if ops[i-1].ID.Compare(op.ID) >= 0 {
				return dst, false
			}
			if order == nil && ops[i-1].Field >= op.Field {
				order = orderBuf[:0]
				if len(ops) > len(orderBuf) {
					order = make([]int32, 0, len(ops))
				}
				for j := range i {
					order = append(order, int32(j))
				}
			}
		}
		if order != nil {
			order = append(order, int32(i))
		}
		clock = addDot(clock, op.ID)
		size += 28 + len(op.Field) + len(op.Value)
	}
	if order != nil {
		slices.SortFunc(order, func(a, b int32) int { return strings.Compare(ops[a].Field, ops[b].Field) })
		for i := 1; i < len(order); i++ {
			if ops[order[i-1]].Field == ops[order[i]].Field {
				return dst, false
			}
		}
	}
	if len(clock) > 1 {
		slices.SortFunc(clock, func(a, b Seen) int { return bytes.Compare(a.Replica[:], b.Replica[:]) })
	}
	size += 44 * len(clock)
	if cap(dst)-len(dst) < size {
		dst = slices.Grow(dst, size)
	}
	// The fields below of a Record the ops leave, as appendState writes
	// them: map keys c, r, t, z, w, b, v, f (no DeleteSeen, no Skipped).
	base := first.ID.Time // the lowest time: IDs increase, and no clock entry is below its ops
	index := func(rep ReplicaID) uint64 {
		for i := range clock {
			if clock[i].Replica == rep {
				return uint64(i)
			}
		}
		return 0 // not reached: every op's replica is in the clock
	}
	b := appendMapLen(dst, 8)
	b = appendStr(appendStr(b, "c"), first.Collection)
	b = appendStr(appendStr(b, "r"), first.Record)
	b = appendStr(appendStr(b, "t"), first.Team)
	b = appendUint(appendStr(b, "z"), StateVersion)
	b = appendStr(b, "w")
	b = appendBinLen(b, len(clock)*len(ReplicaID{}))
	for i := range clock {
		b = append(b, clock[i].Replica[:]...)
	}
	b = appendUint(appendStr(b, "b"), uint64(base))
	b = appendArrayLen(appendStr(b, "v"), 2*len(clock))
	for i := range clock {
		b = appendUint(appendUint(b, uint64(i)), uint64(clock[i].Time-base))
	}
	b = appendStr(b, "f")
	b = appendMapLen(b, len(ops))
	for k := range ops {
		op := &ops[k]
		if order != nil {
			op = &ops[order[k]]
		}
		b = appendStr(b, op.Field)
		b = appendMapLen(b, 2)
		b = appendUint(appendStr(b, "y"), uint64(op.Kind.FieldType()))
		b = appendArrayLen(appendStr(b, "e"), 3)
		b = appendUint(appendUint(b, index(op.ID.Replica)), uint64(op.ID.Time-base))
		if len(op.Value) == 0 {
			b = append(b, 0xc0)
		} else {
			b = append(b, op.Value...)
		}
	}
	return b, true
}
