package store

import (
	"encoding/binary"
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
