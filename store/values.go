package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/vmihailenco/msgpack/v5"
)

// ErrBadValue reports a stored value that does not decode.
var ErrBadValue = errors.New("store: malformed value")

const recordValueVersion = 1

// EncodeRecordValue returns the value of an r/ key: a version byte (1), the
// record's last server change time in Unix milliseconds (u64), then the
// crdt.MarshalRecord bytes.
func EncodeRecordValue(updatedMS int64, rec []byte) []byte {
	b := make([]byte, 0, 9+len(rec))
	b = append(b, recordValueVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(updatedMS))
	return append(b, rec...)
}

// DecodeRecordValue splits a value written by EncodeRecordValue. The
// returned slice aliases v.
func DecodeRecordValue(v []byte) (updatedMS int64, rec []byte, err error) {
	if len(v) < 9 || v[0] != recordValueVersion {
		return 0, nil, fmt.Errorf("%w: record value", ErrBadValue)
	}
	return int64(binary.BigEndian.Uint64(v[1:9])), v[9:], nil
}

// LogEntry is the value of an l/ key: one accepted change's ops that touch
// one team, who pushed it and when the server received it. Log entries are
// also the record history (see the i/ index). Its tags are the layout 2
// form, which Encode writes; the store writes entries with ops in the
// layout 3 form (encodeLogEntry: the ops packed under "O"), and its
// decoder reads both.
type LogEntry struct {
	Author     string         `msgpack:"a"`
	Replica    crdt.ReplicaID `msgpack:"d"`
	Seq        uint64         `msgpack:"s"`
	ReceivedMS int64          `msgpack:"t"`
	// Reason is a coordinator's reason for a resolution (the console
	// requires one for a clinical field); empty on a device's change. It
	// sits before Ops so that "o" stays the last key pulls look for.
	Reason string    `msgpack:"r,omitempty"`
	Ops    []crdt.Op `msgpack:"o"`
	// Erased is set only on an erasure entry (which has no ops): the
	// records of this team erased at this position. Pulls turn it into
	// SyncResponse.Purged.
	Erased []ErasedRecord `msgpack:"x,omitempty"`
	// States is set only on a restate entry (which has no ops): record
	// states a device re-sent after a restore, as merged by the server.
	// Pulls deliver them in SyncResponse.Snapshot, which devices merge.
	States []crdt.RecordBytes `msgpack:"st,omitempty"`
}

// ErasedRecord names one erased record inside a team's erasure log entry.
type ErasedRecord struct {
	Collection string `msgpack:"c"`
	ID         string `msgpack:"i"`
}

// QuarantineEntry is the value of a q/ key: an op that was not merged.
// Reapplicable is true for ops an admin may re-apply (schema and clock
// problems), stored whole, and false for refused ops (scope, unknown pred,
// malformed, too large), which are stored as a summary: one entry per
// change and code, Op holding the first such op's ID and names without
// its value or pred, Count the ops it stands for and Bytes the value bytes
// they carried. Entries written before summaries existed hold one whole
// op and no Count (read it as 1).
type QuarantineEntry struct {
	Op           crdt.Op        `msgpack:"o"`
	Author       string         `msgpack:"a"`
	Replica      crdt.ReplicaID `msgpack:"d"`
	Seq          uint64         `msgpack:"s"`
	Code         string         `msgpack:"e"`
	Reason       string         `msgpack:"r"`
	ReceivedMS   int64          `msgpack:"t"`
	Reapplicable bool           `msgpack:"q"`
	Count        uint64         `msgpack:"n,omitempty"`
	Bytes        uint64         `msgpack:"b,omitempty"`
	// Charged is the size charged to the device's (and, for a
	// reapplicable op, the team's) quarantine usage when the entry was
	// written; 0 for entries written before quotas existed.
	Charged uint64 `msgpack:"w,omitempty"`
}

// logEntryWire is how a log entry with ops is written from layout 3: the
// fields of LogEntry, in its order, with its ops packed under "O" (see
// logops.go) in place of "o". Entries without ops (erasures, restates)
// are written by Encode, as before.
type logEntryWire struct {
	Author     string             `msgpack:"a"`
	Replica    crdt.ReplicaID     `msgpack:"d"`
	Seq        uint64             `msgpack:"s"`
	ReceivedMS int64              `msgpack:"t"`
	Reason     string             `msgpack:"r,omitempty"`
	Ops        logOps             `msgpack:"O"`
	Erased     []ErasedRecord     `msgpack:"x,omitempty"`
	States     []crdt.RecordBytes `msgpack:"st,omitempty"`
}

// logOps writes ops packed (PackLogOps) as a msgpack bin, straight into
// the entry's buffer when the encoder writes to an appendWriter; or
// writes packed, when the caller packed them already (PutLogEntryPacked).
type logOps struct {
	ops    []crdt.Op
	packed PackedLogOps // PackLogOps(ops), or nil
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (o logOps) EncodeMsgpack(enc *msgpack.Encoder) error {
	w, ok := enc.Writer().(*appendWriter)
	if len(o.packed) > 0 || !ok {
		p := o.packed
		if len(p) == 0 {
			p = PackLogOps(o.ops)
		}
		// Always a bin 32 header, as packing in place writes it.
		var h [5]byte
		h[0] = 0xc6
		binary.BigEndian.PutUint32(h[1:], uint32(len(p)))
		if _, err := enc.Writer().Write(h[:]); err != nil {
			return err
		}
		_, err := enc.Writer().Write(p)
		return err
	}
	// A bin 32 header, its length filled in once the ops are written.
	w.b = append(w.b, 0xc6, 0, 0, 0, 0)
	start := len(w.b)
	w.b = appendPackedOps(w.b, o.ops)
	binary.BigEndian.PutUint32(w.b[start-4:], uint32(len(w.b)-start))
	return nil
}

// appendWriter is the writer an entry is encoded into: a byte slice
// appended to (msgpack's encoder uses a writer with WriteByte as it is).
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

func (w *appendWriter) WriteByte(c byte) error { w.b = append(w.b, c); return nil }

// encodeLogEntry returns the stored form of le: its ops packed under "O"
// when it has any (logEntryWire); an entry without ops (nil or empty)
// goes through Encode itself.
func encodeLogEntry(le *LogEntry) ([]byte, error) { return encodeLogEntryPacked(le, nil) }

// encodeLogEntryPacked is encodeLogEntry with le.Ops packed already
// (packed = PackLogOps(le.Ops); nil: not).
func encodeLogEntryPacked(le *LogEntry, packed PackedLogOps) ([]byte, error) {
	if len(le.Ops) == 0 {
		return Encode(le)
	}
	w := logEntryWire{
		Author: le.Author, Replica: le.Replica, Seq: le.Seq, ReceivedMS: le.ReceivedMS, Reason: le.Reason,
		Ops: logOps{ops: le.Ops, packed: packed}, Erased: le.Erased, States: le.States,
	}
	size := 64 + len(le.Author) + len(le.Reason)
	if len(packed) > 0 {
		size += len(packed)
	} else {
		size += packedOpsSize(le.Ops)
	}
	for _, st := range le.States {
		size += 8 + len(st)
	}
	out := &appendWriter{b: make([]byte, 0, size)}
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(out)
	enc.UseCompactInts(true)
	if err := enc.Encode(&w); err != nil {
		return nil, fmt.Errorf("store: encode %T: %w", le, err)
	}
	return out.b, nil
}

// DecodeMsgpack implements msgpack.CustomDecoder: it reads a log entry
// of either form, its ops as a msgpack array ("o", written before layout
// 3, and by Encode) or packed ("O", layout 3).
func (le *LogEntry) DecodeMsgpack(dec *msgpack.Decoder) error {
	n, err := dec.DecodeMapLen()
	if err != nil {
		return err
	}
	*le = LogEntry{}
	for range max(n, 0) {
		k, err := dec.DecodeString()
		if err != nil {
			return err
		}
		switch k {
		case "a":
			le.Author, err = dec.DecodeString()
		case "d":
			err = le.Replica.DecodeMsgpack(dec)
		case "s":
			le.Seq, err = dec.DecodeUint64()
		case "t":
			le.ReceivedMS, err = dec.DecodeInt64()
		case "r":
			le.Reason, err = dec.DecodeString()
		case "o":
			err = dec.Decode(&le.Ops)
		case "O":
			var b []byte
			if b, err = dec.DecodeBytes(); err == nil {
				le.Ops, err = PackedLogOps(b).Ops()
			}
		case "x":
			err = dec.Decode(&le.Erased)
		case "st":
			err = dec.Decode(&le.States)
		default:
			err = dec.Skip()
		}
		if err != nil {
			return fmt.Errorf("log entry %q: %w", k, err)
		}
	}
	return nil
}

// Encode returns the msgpack form of v (LogEntry or QuarantineEntry).
func Encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("store: encode %T: %w", v, err)
	}
	return buf.Bytes(), nil
}

// Decode decodes a value written by Encode into v.
func Decode(b []byte, v any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: decoder panic: %v", ErrBadValue, p)
		}
	}()
	if err := msgpack.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %T: %v", ErrBadValue, v, err)
	}
	return nil
}

// ReportedChange is one change's ops not merged, as kept under an o/ key
// (OpResultsKey): enough to tell the device again, nothing of the ops.
type ReportedChange struct {
	Seq uint64        `msgpack:"s"`
	Ops []ReportedRun `msgpack:"o"`
}

// ReportedRun is a run of ops not merged: Index, and the Run−1 ops after
// it (Run 0 or 1 means the one op), all with Code (an api.Code) and
// Quarantined. Runs keep a flood of ops refused for one reason to a few
// bytes.
type ReportedRun struct {
	Index       int    `msgpack:"i"`
	Code        string `msgpack:"e"`
	Quarantined bool   `msgpack:"q,omitempty"`
	Run         int    `msgpack:"n,omitempty"`
}

// GetReported reads the op results kept for a replica's last push with
// ops not merged; nil when there are none.
func GetReported(tx Tx, r crdt.ReplicaID) ([]ReportedChange, error) {
	v, err := tx.Get(OpResultsKey(r))
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read op results: %w", err)
	}
	var rs []ReportedChange
	if err := Decode(v, &rs); err != nil {
		return nil, fmt.Errorf("read op results: %w", err)
	}
	return rs, nil
}

// PutReported replaces the op results kept for a replica.
func PutReported(tx Tx, r crdt.ReplicaID, rs []ReportedChange) error {
	v, err := Encode(rs)
	if err != nil {
		return err
	}
	return tx.Set(OpResultsKey(r), v)
}
