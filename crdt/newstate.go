package crdt

// AppendNewRecord encodes the state of a record being created without
// building it: a device's create makes a record from nothing and stores
// its state at once, and building the Record (a map of fields) only to
// encode it again costs more than the encoding itself (issue 17).

// AppendNewRecord appends to dst the state encoding MarshalRecord writes
// for the record that applying ops, in order, to NewRecord(team,
// collection, id) leaves, without building that record. It handles the
// shape of a create: ops of one replica, in strictly increasing ID order,
// writes, adds and appends naming no preds, each field's ops together and
// the fields in name order. For anything else, and for ops that name
// another record, it returns dst unchanged and false, and the caller
// applies the ops and marshals the record (TestAppendNewRecordMatches holds
// the two to the same bytes). The ops must pass Op.Validate.
func AppendNewRecord(dst []byte, team, collection, id string, ops []Op) ([]byte, bool) {
	if len(ops) == 0 {
		return dst, false
	}
	rep := ops[0].ID.Replica
	base, last := ops[0].ID.Time, ops[len(ops)-1].ID.Time
	nFields := 0
	size := 48 + len(collection) + len(id) + len(team) + 28 + 16
	for i := range ops {
		op := &ops[i]
		switch {
		case op.ID.Replica != rep, len(op.Pred) > 0,
			op.Kind != KindWrite && op.Kind != KindAdd && op.Kind != KindAppend,
			op.Team != team || op.Collection != collection || op.Record != id,
			op.Field == DeletedField && op.Kind != KindWrite:
			return dst, false
		}
		if i > 0 {
			prev := &ops[i-1]
			if op.ID.Time <= prev.ID.Time {
				return dst, false
			}
			if op.Field == prev.Field {
				if op.Kind.FieldType() != prev.Kind.FieldType() {
					return dst, false
				}
				size += 12 + len(op.Value)
				continue
			}
			if op.Field < prev.Field {
				return dst, false
			}
		}
		nFields++
		size += 16 + len(op.Field) + 12 + len(op.Value)
	}
	if dst == nil {
		dst = make([]byte, 0, size)
	}
	b := appendMapLen(dst, 8)
	b = appendStr(appendStr(b, "c"), collection)
	b = appendStr(appendStr(b, "r"), id)
	b = appendStr(appendStr(b, "t"), team)
	b = appendUint(appendStr(b, "z"), StateVersion)
	b = appendStr(b, "w")
	b = appendBinLen(b, len(rep))
	b = append(b, rep[:]...)
	b = appendUint(appendStr(b, "b"), uint64(base))
	// The clock: the one replica, at its last op.
	b = appendArrayLen(appendStr(b, "v"), 2)
	b = appendUint(appendUint(b, 0), uint64(last-base))
	b = appendStr(b, "f")
	b = appendMapLen(b, nFields)
	for i := 0; i < len(ops); {
		name := ops[i].Field
		j := i + 1
		for j < len(ops) && ops[j].Field == name {
			j++
		}
		b = appendStr(b, name)
		b = appendMapLen(b, 2)
		b = appendUint(appendStr(b, "y"), uint64(ops[i].Kind.FieldType()))
		b = appendArrayLen(appendStr(b, "e"), 3*(j-i))
		prev := base
		for k := i; k < j; k++ {
			e := &ops[k]
			b = appendUint(appendUint(b, 0), uint64(e.ID.Time-prev))
			prev = e.ID.Time
			if len(e.Value) == 0 {
				b = append(b, 0xc0)
			} else {
				b = append(b, e.Value...)
			}
		}
		i = j
	}
	return b, true
}

// AppendStringValue appends to dst the encoding EncodeValue(s) returns,
// so that a caller encoding many values can keep them in one buffer.
func AppendStringValue(dst []byte, s string) []byte { return appendStr(dst, s) }
