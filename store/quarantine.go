package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/doorstep-health/doorstep/crdt"
)

// Quarantine quota keys (see the package documentation).
var (
	prefixQuarDevice = []byte("qd/")
	prefixQuarTeam   = []byte("qt/")
)

// QuarantineDeviceKey is qd/<replica 16 bytes>: the quarantine usage
// charged to a pushing device.
func QuarantineDeviceKey(r crdt.ReplicaID) []byte {
	return append(cat(prefixQuarDevice, 16), r[:]...)
}

// QuarantineTeamKey is qt/s(team): the quarantine usage charged to a team.
func QuarantineTeamKey(team string) []byte {
	return appendStr(cat(prefixQuarTeam, len(team)+2), team)
}

// QuarantineUsage is the value of a qd/ or qt/ key: how many quarantine
// entries, and how many bytes of stored entry values, are charged to a
// device or a team. Entries written before these keys existed are not
// charged; a decrement never goes below zero.
type QuarantineUsage struct {
	Entries uint64
	Bytes   uint64
}

// Encode returns the 16-byte value: u64 entries, u64 bytes.
func (u QuarantineUsage) Encode() []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 16), u.Entries)
	return binary.BigEndian.AppendUint64(b, u.Bytes)
}

// DecodeQuarantineUsage decodes a value written by QuarantineUsage.Encode.
func DecodeQuarantineUsage(b []byte) (QuarantineUsage, error) {
	if len(b) != 16 {
		return QuarantineUsage{}, fmt.Errorf("%w: quarantine usage of %d bytes", ErrBadValue, len(b))
	}
	return QuarantineUsage{Entries: binary.BigEndian.Uint64(b), Bytes: binary.BigEndian.Uint64(b[8:])}, nil
}

// PutQuarantineEntry writes a quarantine entry, v being its encoding,
// under q/qid and, for a reapplicable op, the k/ index that names it by
// op ID (so later ops may name it in pred).
func PutQuarantineEntry(tx Tx, qid uint64, q *QuarantineEntry, v []byte) error {
	if err := tx.Set(QuarantineKey(qid), v); err != nil {
		return err
	}
	if q.Reapplicable {
		return tx.Set(QuarantinedOpKey(q.Op.ID), PutU64(qid))
	}
	return nil
}

// GetQuarantineEntry reads and decodes the entry under q/qid; ErrNotFound
// if there is none.
func GetQuarantineEntry(tx Tx, qid uint64) (*QuarantineEntry, error) {
	v, err := tx.Get(QuarantineKey(qid))
	if err != nil {
		return nil, err
	}
	var q QuarantineEntry
	if err := Decode(v, &q); err != nil {
		return nil, err
	}
	return &q, nil
}

// DeleteQuarantineEntry deletes the entry q under q/qid and, when it is a
// reapplicable op (the only kind PutQuarantineEntry indexes), its k/
// index. The quota counters are the caller's.
func DeleteQuarantineEntry(tx Tx, qid uint64, q *QuarantineEntry) error {
	if err := tx.Delete(QuarantineKey(qid)); err != nil {
		return err
	}
	if q.Reapplicable {
		return tx.Delete(QuarantinedOpKey(q.Op.ID))
	}
	return nil
}

// IsQuarantined reports whether op id is held in the quarantine as a
// reapplicable op (its k/ index).
func IsQuarantined(tx Tx, id crdt.OpID) (bool, error) {
	_, err := tx.Get(QuarantinedOpKey(id))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	}
	return false, fmt.Errorf("read quarantine index: %w", err)
}
