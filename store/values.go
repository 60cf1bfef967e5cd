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
// also the record history (see the i/ index).
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

// logEntryWire is LogEntry with its ops encoded by crdt.AppendOp (the
// bytes a []crdt.Op encodes to, see logOps): the same fields, tags and
// order, so it encodes to the same bytes as the LogEntry, without msgpack
// reflecting over (and boxing a copy of) every op.
// TestLogEntryWireSameBytes keeps the two in step.
type logEntryWire struct {
	Author     string             `msgpack:"a"`
	Replica    crdt.ReplicaID     `msgpack:"d"`
	Seq        uint64             `msgpack:"s"`
	ReceivedMS int64              `msgpack:"t"`
	Reason     string             `msgpack:"r,omitempty"`
	Ops        logOps             `msgpack:"o"`
	Erased     []ErasedRecord     `msgpack:"x,omitempty"`
	States     []crdt.RecordBytes `msgpack:"st,omitempty"`
}

// logOps encodes ops as crdt.NewOpsBytes does (a msgpack array header,
// then crdt.AppendOp of each op: what a []crdt.Op encodes to), straight
// into the entry's buffer when the encoder writes to an appendWriter; or
// writes enc, when the caller had them encoded already (PutLogEntryOps).
type logOps struct {
	ops []crdt.Op
	enc crdt.OpsBytes // crdt.NewOpsBytes(ops), or nil
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (o logOps) EncodeMsgpack(enc *msgpack.Encoder) error {
	if len(o.enc) > 0 {
		return o.enc.EncodeMsgpack(enc)
	}
	w, ok := enc.Writer().(*appendWriter)
	if !ok || len(o.ops) == 0 {
		return crdt.NewOpsBytes(o.ops).EncodeMsgpack(enc)
	}
	if err := enc.EncodeArrayLen(len(o.ops)); err != nil {
		return err
	}
	for i := range o.ops {
		w.b = crdt.AppendOp(w.b, &o.ops[i])
	}
	return nil
}

// appendWriter is the writer an entry is encoded into: a byte slice
// appended to (msgpack's encoder uses a writer with WriteByte as it is).
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

func (w *appendWriter) WriteByte(c byte) error { w.b = append(w.b, c); return nil }

// encodedOpsSize estimates, from above for ops without huge preds, the
// bytes crdt.AppendOp writes for ops, so that an entry is encoded into
// one allocation.
func encodedOpsSize(ops []crdt.Op) int {
	n := 5
	for i := range ops {
		op := &ops[i]
		n += 56 + len(op.Team) + len(op.Collection) + len(op.Record) + len(op.Field) + len(op.Value) + 30*len(op.Pred)
	}
	return n
}

// encodeLogEntry returns Encode(le), the ops written by crdt.AppendOp
// when there are any (an entry without ops, nil or empty, goes through
// Encode itself).
func encodeLogEntry(le *LogEntry) ([]byte, error) { return encodeLogEntryOps(le, nil) }

// encodeLogEntryOps is encodeLogEntry with le.Ops already encoded as
// crdt.NewOpsBytes encodes them (ops; nil: not).
func encodeLogEntryOps(le *LogEntry, ops crdt.OpsBytes) ([]byte, error) {
	if len(le.Ops) == 0 {
		return Encode(le)
	}
	w := logEntryWire{
		Author: le.Author, Replica: le.Replica, Seq: le.Seq, ReceivedMS: le.ReceivedMS, Reason: le.Reason,
		Ops: logOps{ops: le.Ops, enc: ops}, Erased: le.Erased, States: le.States,
	}
	size := 64 + len(le.Author) + len(le.Reason)
	if len(ops) > 0 {
		size += len(ops)
	} else {
		size += encodedOpsSize(le.Ops)
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
