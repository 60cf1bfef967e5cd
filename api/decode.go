package api

import (
	"bytes"
	"fmt"
	"io"
	"math"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/vmihailenco/msgpack/v5"
)

// DecodeSyncResponse decodes a whole sync reply body as
// msgpack.Unmarshal into a SyncResponse would (the same fields, the same
// nil and empty values, unknown keys skipped), refusing trailing bytes
// and turning a decoder panic into an error. It is faster on the bulk of
// a bootstrap: the record states of Snapshot and Replace are kept as
// slices of b (no copy) whose ends crdt.ValueEnd finds, where reflection
// copied each state byte by byte through the decoder; every other field
// is decoded by reflection, one map entry at a time, so a field added to
// SyncResponse needs nothing here. Each value is walked with
// crdt.ValueEnd (ReplyLimits) before it is decoded, so that no count a
// reply declares can make the decoder allocate past what its bytes hold.
// b must not be modified while the result is in use. The states are
// unchecked, as crdt.RecordBytes always is: decode each with its Record
// method.
func DecodeSyncResponse(b []byte) (resp *SyncResponse, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, fmt.Errorf("api: decode sync response: decoder panic: %v", p)
		}
	}()
	rd := bytes.NewReader(b)
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(rd)
	resp = new(SyncResponse)
	if len(b) == 0 || !isMapOrNil(b[0]) {
		// Not the map a server sends: reflection decides what it is, as
		// before (msgpack also reads a struct from an array).
		if err = crdt.CheckLimits(b, ReplyLimits); err == nil {
			err = dec.Decode(resp)
		}
	} else {
		err = resp.decode(dec, b, rd)
	}
	if err != nil {
		return nil, fmt.Errorf("api: decode sync response: %w", err)
	}
	if rd.Len() != 0 {
		return nil, fmt.Errorf("api: decode sync response: %d trailing bytes", rd.Len())
	}
	return resp, nil
}

// ReplyLimits bound the msgpack structure of a sync reply: no count
// beyond the bytes that follow it (crdt.CheckLimits always checks that),
// and nesting at most 64 deep, room for op values nested as deep as a
// request may carry them (crdt.DefaultLimits) inside a reply's record
// states. Lengths and value counts are bounded by the reply's size alone.
var ReplyLimits = crdt.Limits{MaxDepth: 64, MaxLen: math.MaxInt32, MaxItems: math.MaxInt32}

// decode reads the reply's map from dec, which reads b through rd.
func (r *SyncResponse) decode(dec *msgpack.Decoder, b []byte, rd *bytes.Reader) error {
	n, err := dec.DecodeMapLen()
	if err != nil {
		return err
	}
	if n < 0 {
		return nil // nil decodes to the zero reply, as with reflection
	}
	// Every field but the record states is decoded by reflection, as the
	// one entry of a map holding just that key and value: no list of the
	// other keys to keep in step with SyncResponse.
	one := msgpack.GetDecoder()
	defer msgpack.PutDecoder(one)
	var entry []byte
	for range n {
		keyStart := len(b) - rd.Len()
		key, err := dec.DecodeString()
		if err != nil {
			return err
		}
		switch key {
		case "b":
			r.Snapshot, err = decodeStates(dec, b, rd)
		case "1a":
			r.Replace, err = decodeStates(dec, b, rd)
		default:
			// Walked first, so that no count in it can make reflection
			// allocate past its bytes.
			var end int
			if end, err = crdt.ValueEnd(b, len(b)-rd.Len(), ReplyLimits); err != nil {
				break
			}
			entry = append(append(entry[:0], 0x81), b[keyStart:end]...)
			one.Reset(bytes.NewReader(entry))
			if err = one.Decode(r); err == nil {
				_, err = rd.Seek(int64(end), io.SeekStart)
			}
		}
		if err != nil {
			return fmt.Errorf("field %q: %w", key, err)
		}
	}
	return nil
}

// decodeStates reads an array of record states as slices of b.
func decodeStates(dec *msgpack.Decoder, b []byte, rd *bytes.Reader) ([]crdt.RecordBytes, error) {
	n, err := dec.DecodeArrayLen()
	if err != nil || n < 0 {
		return nil, err
	}
	// Every value takes at least a byte: no more states than bytes left.
	if n > rd.Len() {
		return nil, fmt.Errorf("%d states in %d bytes", n, rd.Len())
	}
	out := make([]crdt.RecordBytes, n)
	for i := range out {
		start := len(b) - rd.Len()
		end, err := crdt.ValueEnd(b, start, ReplyLimits)
		if err != nil {
			return nil, err
		}
		if _, err := rd.Seek(int64(end), io.SeekStart); err != nil {
			return nil, err
		}
		if end-start == 1 && b[start] == nilCode {
			continue // a nil state decodes to nil, as with reflection
		}
		out[i] = crdt.RecordBytes(b[start:end:end])
	}
	return out, nil
}

// nilCode is msgpack's nil.
const nilCode = 0xc0

// isMapOrNil reports whether c starts a msgpack map (fixmap, map 16, map
// 32) or is nil.
func isMapOrNil(c byte) bool { return c&0xf0 == 0x80 || c == 0xde || c == 0xdf || c == nilCode }
