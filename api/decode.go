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
// and turning a decoder panic into an error. Each value is walked with
// crdt.ValueEnd (ReplyLimits) before it is decoded, so that no count a
// reply declares can make the decoder allocate past what its bytes hold. It is faster on the bulk of
// a bootstrap: the record states of Snapshot and Replace are kept as
// slices of b (no copy) whose ends crdt.ValueEnd finds, where reflection
// copied each state byte by byte through the decoder. b must not be modified while the
// result is in use. The states are unchecked, as crdt.RecordBytes
// always is: decode each with its Record method.
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
	for range n {
		key, err := dec.DecodeString()
		if err != nil {
			return err
		}
		if key != "b" && key != "1a" {
			// A field decoded by reflection is walked first, so that no
			// count in it can make reflection allocate past its bytes.
			if _, err := crdt.ValueEnd(b, len(b)-rd.Len(), ReplyLimits); err != nil {
				return fmt.Errorf("field %q: %w", key, err)
			}
		}
		switch key {
		case "b":
			r.Snapshot, err = decodeStates(dec, b, rd)
		case "1a":
			r.Replace, err = decodeStates(dec, b, rd)
		case "v":
			err = dec.Decode(&r.Protocol)
		case "h":
			err = dec.Decode(&r.Clock)
		case "r":
			err = dec.Decode(&r.Results)
		case "c":
			err = dec.Decode(&r.Changes)
		case "x":
			err = dec.Decode(&r.Purged)
		case "k":
			err = dec.Decode(&r.Cursor)
		case "m":
			err = dec.Decode(&r.More)
		case "s":
			err = dec.Decode(&r.Scope)
		case "w":
			err = dec.Decode(&r.Wipe)
		case "e":
			err = dec.Decode(&r.Epoch)
		case "2n":
			err = dec.Decode(&r.Restated)
		case "7h":
			err = dec.Decode(&r.HighWater)
		case "7c":
			err = dec.Decode(&r.Packed)
		case "7p":
			err = dec.Decode(&r.ReadsPacked)
		case "7o":
			err = dec.Decode(&r.Pipelines)
		default:
			err = dec.Skip()
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
