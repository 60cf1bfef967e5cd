package store

import (
	"bytes"
	"fmt"
	"io"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/vmihailenco/msgpack/v5"
)

// Reading log entries without decoding them whole: a pull (and the
// console's changed-since page) copies the ops of a stored entry as their
// stored bytes, and a pull skips the puller's own entries after reading
// only their replica. Both depend on how Encode
// lays out a LogEntry (its msgpack tags), so they live here, next to it.

// PulledEntry is the part of a LogEntry a pull serves, with the ops
// as the bytes a []crdt.Op takes in a reply (each op as AppendOp writes
// it, the array header as msgpack does): an entry written before layout
// 3 holds exactly these bytes under "o", which are copied, not decoded
// and encoded again; a layout 3 entry's packed ops ("O") are expanded to
// them (PackedLogOps.OpsBytes). The console's changed-since page reads the same parts
// and the receive time and reason. DecodePulledEntry fills it.
type PulledEntry struct {
	Author     string             // "a"
	Replica    crdt.ReplicaID     // "d"
	ReceivedMS int64              // "t"
	Reason     string             // "r"
	Ops        crdt.OpsBytes      // "o"
	Erased     []ErasedRecord     // "x"
	States     []crdt.RecordBytes // "st"
}

// DecodePulledEntry decodes the parts of an encoded LogEntry a pull
// serves. Ops stored whole ("o") are not decoded: their stored bytes
// are copied, found without walking them when "o" is the entry's last
// key (as layout 2 wrote every entry that has ops); packed ops ("O")
// are expanded.
func DecodePulledEntry(v []byte, le *PulledEntry) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: decoder panic: %v", ErrBadValue, p)
		}
	}()
	rd := bytes.NewReader(v)
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	// A bytes.Reader is read without buffering, so rd tells the offset.
	dec.Reset(rd)
	n, err := dec.DecodeMapLen()
	if err != nil {
		return fmt.Errorf("%w: log entry: %v", ErrBadValue, err)
	}
	for i := range n {
		k, err := dec.DecodeString()
		if err != nil {
			return fmt.Errorf("%w: log entry key: %v", ErrBadValue, err)
		}
		switch k {
		case "a":
			le.Author, err = dec.DecodeString()
		case "d":
			err = le.Replica.DecodeMsgpack(dec)
		case "t":
			le.ReceivedMS, err = dec.DecodeInt64()
		case "r":
			le.Reason, err = dec.DecodeString()
		case "o":
			start := len(v) - rd.Len()
			if i == n-1 {
				le.Ops = crdt.OpsBytes(bytes.Clone(v[start:]))
				return nil
			}
			if err = dec.Skip(); err == nil {
				le.Ops = crdt.OpsBytes(bytes.Clone(v[start : len(v)-rd.Len()]))
			}
		case "O":
			// Packed ops (layout 3): expanded to the bytes "o" held.
			var n int
			if n, err = dec.DecodeBytesLen(); err == nil {
				start := len(v) - rd.Len()
				if n < 0 || n > rd.Len() {
					return fmt.Errorf("%w: log entry ops: bin of %d bytes", ErrBadValue, n)
				}
				le.Ops, err = PackedLogOps(v[start : start+n]).OpsBytes()
				if err == nil {
					_, err = rd.Seek(int64(n), io.SeekCurrent)
				}
			}
		case "x":
			err = dec.Decode(&le.Erased)
		case "st":
			err = dec.Decode(&le.States)
		default:
			err = dec.Skip()
		}
		if err != nil {
			return fmt.Errorf("%w: log entry %q: %v", ErrBadValue, k, err)
		}
	}
	return nil
}

// LogEntryReplica reads only the Replica of an encoded LogEntry (a
// msgpack map whose "d" key follows the author), so that a pull can skip
// the caller's own entries without decoding their ops. ok is false if the
// value does not parse that far; the caller then decodes it whole.
func LogEntryReplica(v []byte) (r crdt.ReplicaID, ok bool) {
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(bytes.NewReader(v))
	n, err := dec.DecodeMapLen()
	if err != nil {
		return r, false
	}
	for range n {
		k, err := dec.DecodeString()
		if err != nil {
			return r, false
		}
		if k == "d" {
			if err := r.DecodeMsgpack(dec); err != nil {
				return r, false
			}
			return r, true
		}
		if err := dec.Skip(); err != nil {
			return r, false
		}
	}
	return r, false
}
