package crdt

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// ReplicaID identifies one replica: a device install, or the server. It is
// 128 random bits, created once and kept.
type ReplicaID [16]byte

// NewReplicaID returns a random replica ID from crypto/rand.
func NewReplicaID() ReplicaID {
	var r ReplicaID
	_, _ = rand.Read(r[:]) // never returns an error: it crashes the program itself if the OS source fails
	return r
}

// ParseReplicaID parses the 32-hex-digit form produced by String.
func ParseReplicaID(s string) (ReplicaID, error) {
	var r ReplicaID
	if len(s) != 2*len(r) {
		return r, fmt.Errorf("replica id %q: want %d hex digits", s, 2*len(r))
	}
	if _, err := hex.Decode(r[:], []byte(s)); err != nil {
		return r, fmt.Errorf("replica id %q: %w", s, err)
	}
	return r, nil
}

// String returns the ID as 32 lower-case hex digits.
func (r ReplicaID) String() string { return hex.EncodeToString(r[:]) }

// IsZero reports whether r is the zero ID, which no replica may use.
func (r ReplicaID) IsZero() bool { return r == ReplicaID{} }

// EncodeMsgpack writes the ID as a 16-byte msgpack bin.
func (r ReplicaID) EncodeMsgpack(enc *msgpack.Encoder) error { return enc.EncodeBytes(r[:]) }

// DecodeMsgpack reads a 16-byte msgpack bin.
func (r *ReplicaID) DecodeMsgpack(dec *msgpack.Decoder) error {
	b, err := dec.DecodeBytes()
	if err != nil {
		return err
	}
	if len(b) != len(r) {
		return fmt.Errorf("%w: replica id is %d bytes, want %d", ErrMalformed, len(b), len(r))
	}
	copy(r[:], b)
	return nil
}

// OpIDSize is the size of an OpID's binary form.
const OpIDSize = 8 + 16

// OpID identifies one op: the HLC timestamp at which a replica made it, and
// that replica. OpIDs are unique and totally ordered (by time, then replica).
type OpID struct {
	Time    Timestamp
	Replica ReplicaID
}

// Compare returns -1, 0 or +1 as a sorts before, equal to, or after b.
func (a OpID) Compare(b OpID) int {
	switch {
	case a.Time < b.Time:
		return -1
	case a.Time > b.Time:
		return 1
	}
	return bytes.Compare(a.Replica[:], b.Replica[:])
}

// IsZero reports whether id is the zero OpID, which names no op.
func (a OpID) IsZero() bool { return a == OpID{} }

// String returns "time@replica".
func (a OpID) String() string { return a.Time.String() + "@" + a.Replica.String()[:8] }

// AppendBinary appends the 24-byte big-endian form (time, then replica), which
// sorts bytewise in the same order as Compare.
func (a OpID) AppendBinary(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(a.Time))
	return append(b, a.Replica[:]...)
}

// OpIDFromBinary parses the 24-byte form written by AppendBinary.
func OpIDFromBinary(b []byte) (OpID, error) {
	var id OpID
	if len(b) != OpIDSize {
		return id, fmt.Errorf("%w: op id is %d bytes, want %d", ErrMalformed, len(b), OpIDSize)
	}
	id.Time = Timestamp(binary.BigEndian.Uint64(b))
	copy(id.Replica[:], b[8:])
	return id, nil
}

// EncodeMsgpack writes the ID as a 24-byte msgpack bin.
func (a OpID) EncodeMsgpack(enc *msgpack.Encoder) error {
	return writeTo(enc, func(b []byte) []byte { return appendID(b, a) })
}

// DecodeMsgpack reads a 24-byte msgpack bin.
func (a *OpID) DecodeMsgpack(dec *msgpack.Decoder) error {
	n, err := dec.DecodeBytesLen()
	if err != nil {
		return err
	}
	if n != OpIDSize {
		return fmt.Errorf("%w: op id is %d bytes, want %d", ErrMalformed, n, OpIDSize)
	}
	var buf [OpIDSize]byte
	if err := dec.ReadFull(buf[:]); err != nil {
		return err
	}
	*a, err = OpIDFromBinary(buf[:])
	return err
}
