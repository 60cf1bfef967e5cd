package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/doorstep-health/doorstep/crdt"
)

// ErrBadKey reports a key that does not parse as the layout says.
var ErrBadKey = errors.New("store: malformed key")

// Meta keys (see the package documentation for their values).
var (
	KeyVersion       = []byte("m/version")
	KeyServerReplica = []byte("m/server-replica")
	// KeyServerClock holds the highest HLC timestamp (u64) the server has
	// stamped an op of its own with (resolves, re-applies). Every server
	// process sharing a store has the one server replica ID, so each moves
	// its stamps past this value, read and written in the serialized write
	// transaction that holds the stamped op: no two processes ever issue
	// the same op ID.
	KeyServerClock   = []byte("m/server-clock")
	KeyLogPos        = []byte("m/logpos")
	KeyLogFloor      = []byte("m/logfloor")
	KeyQuarantineSeq = []byte("m/qseq")
	// KeyPing is written by the engine's readiness check to prove the store
	// takes durable writes; its value (u64 Unix ms of the last check) is
	// never read back for anything else.
	KeyPing = []byte("m/ping")
	// KeyEpoch holds the 16-byte ID of the store's current epoch: created
	// on first open, replaced by a restore (see NewEpoch).
	KeyEpoch = []byte("m/epoch")
	// KeyEpochs holds the IDs of the store's earlier epochs, 16 bytes each,
	// oldest first.
	KeyEpochs = []byte("m/epochs")
)

// Key prefixes.
var (
	prefixHWM        = []byte("h/")
	prefixOpResults  = []byte("o/")
	prefixRecord     = []byte("r/")
	prefixTeamIndex  = []byte("x/")
	prefixLog        = []byte("l/")
	prefixHistory    = []byte("i/")
	prefixChanged    = []byte("u/")
	prefixConflict   = []byte("c/")
	prefixQuarantine = []byte("q/")
	prefixQuarOp     = []byte("k/")
	prefixErased     = []byte("p/")
	prefixRebased    = []byte("g/")
)

// RebasedKey is g/<replica 16 bytes>: the epoch (16 bytes) in which the
// replica finished re-sending its record states after a restore and had
// its high-water seq re-based; a repeat in the same epoch is a no-op.
func RebasedKey(r crdt.ReplicaID) []byte { return append(cat(prefixRebased, 16), r[:]...) }

// appendStr appends the prefix-free encoding of s: uvarint length, bytes.
func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// readStr reads one encoded string from b and returns it and the rest.
func readStr(b []byte) (string, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return "", nil, fmt.Errorf("%w: bad string", ErrBadKey)
	}
	return string(b[k : k+int(n)]), b[k+int(n):], nil
}

func cat(prefix []byte, n int) []byte {
	b := make([]byte, 0, len(prefix)+n)
	return append(b, prefix...)
}

// PutU64 returns the 8-byte big-endian form of v.
func PutU64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// GetU64 decodes an 8-byte big-endian number.
func GetU64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: %d-byte number", ErrBadKey, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// HWMKey is h/<replica>: the replica's high-water seq.
func HWMKey(r crdt.ReplicaID) []byte { return append(cat(prefixHWM, 16), r[:]...) }

// OpResultsKey is the key of the op results of a replica's last push that
// had ops not merged (see the key layout).
func OpResultsKey(r crdt.ReplicaID) []byte { return append(cat(prefixOpResults, 16), r[:]...) }

// RecordRef names a record inside the store.
type RecordRef struct{ Team, Collection, ID string }

// RecordPrefix is r/s(team): every record of a team.
func RecordPrefix(team string) []byte { return appendStr(cat(prefixRecord, len(team)+2), team) }

// RecordKey is r/s(team)s(coll)s(id).
func RecordKey(team, coll, id string) []byte {
	n := len(prefixRecord) + strLen(team) + strLen(coll) + strLen(id)
	return AppendRecordKey(make([]byte, 0, n), team, coll, id)
}

// AppendRecordKey appends RecordKey(team, coll, id) to dst and returns
// the extended slice: a caller looking a record up in a cache can build
// the key in a reused buffer instead of allocating one per lookup.
func AppendRecordKey(dst []byte, team, coll, id string) []byte {
	dst = append(dst, prefixRecord...)
	dst = appendStr(dst, team)
	dst = appendStr(dst, coll)
	return appendStr(dst, id)
}

// strLen is the length of s as appendStr writes it.
func strLen(s string) int {
	n := 1
	for v := uint64(len(s)); v >= 0x80; v >>= 7 {
		n++
	}
	return n + len(s)
}

// ParseRecordKey parses a key written by RecordKey.
func ParseRecordKey(k []byte) (RecordRef, error) {
	return parseRef(k, prefixRecord)
}

func parseRef(k, prefix []byte) (RecordRef, error) {
	var ref RecordRef
	if len(k) < len(prefix) || string(k[:len(prefix)]) != string(prefix) {
		return ref, fmt.Errorf("%w: want prefix %q", ErrBadKey, prefix)
	}
	rest := k[len(prefix):]
	var err error
	if ref.Team, rest, err = readStr(rest); err != nil {
		return ref, err
	}
	if ref.Collection, rest, err = readStr(rest); err != nil {
		return ref, err
	}
	if ref.ID, rest, err = readStr(rest); err != nil {
		return ref, err
	}
	if len(rest) != 0 {
		return ref, fmt.Errorf("%w: trailing bytes", ErrBadKey)
	}
	return ref, nil
}

// TeamIndexKey is x/s(coll)s(id): the owning team of a record.
func TeamIndexKey(coll, id string) []byte {
	b := appendStr(cat(prefixTeamIndex, len(coll)+len(id)+4), coll)
	return appendStr(b, id)
}

// AppendTeamIndexKey appends TeamIndexKey(coll, id) to dst and returns
// the extended slice (see AppendRecordKey).
func AppendTeamIndexKey(dst []byte, coll, id string) []byte {
	dst = append(dst, prefixTeamIndex...)
	dst = appendStr(dst, coll)
	return appendStr(dst, id)
}

// LogPrefix is l/s(team): a team's log.
func LogPrefix(team string) []byte { return appendStr(cat(prefixLog, len(team)+10), team) }

// LogKey is l/s(team)u64(pos).
func LogKey(team string, pos uint64) []byte {
	return binary.BigEndian.AppendUint64(LogPrefix(team), pos)
}

// LogPos returns the position in a key written by LogKey.
func LogPos(k []byte) (uint64, error) {
	if len(k) < 8 {
		return 0, fmt.Errorf("%w: short log key", ErrBadKey)
	}
	return binary.BigEndian.Uint64(k[len(k)-8:]), nil
}

// HistoryPrefix is i/s(team)s(coll)s(id): one record's history.
func HistoryPrefix(team, coll, id string) []byte {
	b := appendStr(cat(prefixHistory, len(team)+len(coll)+len(id)+6+8), team)
	b = appendStr(b, coll)
	return appendStr(b, id)
}

// HistoryKey is i/s(team)s(coll)s(id)u64(pos): the change at log position
// pos touched the record.
func HistoryKey(team, coll, id string, pos uint64) []byte {
	return binary.BigEndian.AppendUint64(HistoryPrefix(team, coll, id), pos)
}

// ChangedPrefix is u/s(team): a team's changed-since index.
func ChangedPrefix(team string) []byte { return appendStr(cat(prefixChanged, len(team)+10), team) }

// ChangedKey is u/s(team)u64(ms)s(coll)s(id), in one allocation of its
// length (a new record's changed-since key is written by the committer).
func ChangedKey(team string, ms int64, coll, id string) []byte {
	b := make([]byte, 0, len(prefixChanged)+strLen(team)+8+strLen(coll)+strLen(id))
	b = appendStr(append(b, prefixChanged...), team)
	b = binary.BigEndian.AppendUint64(b, uint64(ms))
	b = appendStr(b, coll)
	return appendStr(b, id)
}

// ParseChangedKey returns the time and record of a key written by ChangedKey.
func ParseChangedKey(k []byte) (int64, RecordRef, error) {
	var ref RecordRef
	if len(k) < len(prefixChanged) || string(k[:len(prefixChanged)]) != string(prefixChanged) {
		return 0, ref, fmt.Errorf("%w: want prefix %q", ErrBadKey, prefixChanged)
	}
	team, rest, err := readStr(k[len(prefixChanged):])
	if err != nil {
		return 0, ref, err
	}
	if len(rest) < 8 {
		return 0, ref, fmt.Errorf("%w: short changed key", ErrBadKey)
	}
	ms := int64(binary.BigEndian.Uint64(rest))
	ref.Team = team
	if ref.Collection, rest, err = readStr(rest[8:]); err != nil {
		return 0, ref, err
	}
	if ref.ID, rest, err = readStr(rest); err != nil {
		return 0, ref, err
	}
	if len(rest) != 0 {
		return 0, ref, fmt.Errorf("%w: trailing bytes", ErrBadKey)
	}
	return ms, ref, nil
}

// ConflictPrefix is c/s(team): a team's open-conflict index.
func ConflictPrefix(team string) []byte { return appendStr(cat(prefixConflict, len(team)+2), team) }

// ConflictKey is c/s(team)s(coll)s(id).
func ConflictKey(team, coll, id string) []byte {
	b := appendStr(ConflictPrefix(team), coll)
	return appendStr(b, id)
}

// ParseConflictKey parses a key written by ConflictKey.
func ParseConflictKey(k []byte) (RecordRef, error) { return parseRef(k, prefixConflict) }

// QuarantinePrefix is q/: the whole quarantine, oldest first.
func QuarantinePrefix() []byte { return cat(prefixQuarantine, 0) }

// QuarantineKey is q/u64(qid).
func QuarantineKey(qid uint64) []byte {
	return binary.BigEndian.AppendUint64(cat(prefixQuarantine, 8), qid)
}

// QuarantineID returns the ID in a key written by QuarantineKey.
func QuarantineID(k []byte) (uint64, error) {
	if len(k) != len(prefixQuarantine)+8 {
		return 0, fmt.Errorf("%w: quarantine key", ErrBadKey)
	}
	return binary.BigEndian.Uint64(k[len(prefixQuarantine):]), nil
}

// QuarantinedOpKey is k/id24: a quarantined op by op ID.
func QuarantinedOpKey(op crdt.OpID) []byte {
	return op.AppendBinary(cat(prefixQuarOp, crdt.OpIDSize))
}

// ErasedPrefix is p/: the prefix of every purge marker (ErasedKey), for
// a caller that reads the markers of many records in one range walk.
func ErasedPrefix() []byte { return append([]byte(nil), prefixErased...) }

// ErasedKey is p/s(coll)s(id): the purge marker of an erased record. Its
// value is the name of the team that owned the record. A record with a
// purge marker is never created again: ops for it are refused.
func ErasedKey(coll, id string) []byte {
	b := appendStr(cat(prefixErased, len(coll)+len(id)+4), coll)
	return appendStr(b, id)
}
