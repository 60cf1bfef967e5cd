package crdt

import (
	"bytes"

	"github.com/vmihailenco/msgpack/v5"
)

// RecordBytes is one record state already in the canonical msgpack form
// MarshalRecord writes. It encodes as those bytes unchanged, so a server can
// copy stored states into a message without decoding them, and it decodes
// as the raw bytes of one msgpack value, which Record checks and decodes.
type RecordBytes []byte

// EncodeMsgpack writes b as it is; an empty b is written as nil, so the
// output is always well-formed msgpack.
func (b RecordBytes) EncodeMsgpack(enc *msgpack.Encoder) error {
	if len(b) == 0 {
		return enc.EncodeNil()
	}
	_, err := enc.Writer().Write(b)
	return err
}

// DecodeMsgpack keeps the raw bytes of the next msgpack value, unchecked:
// call Record to decode them.
func (b *RecordBytes) DecodeMsgpack(dec *msgpack.Decoder) error {
	raw, err := dec.DecodeRaw()
	if err != nil {
		return err
	}
	*b = RecordBytes(raw)
	return nil
}

// Record decodes b with UnmarshalRecord, so bytes from outside are bounded
// by DefaultLimits and validated. Its errors wrap ErrMalformed.
func (b RecordBytes) Record() (*Record, error) {
	return UnmarshalRecord(b)
}

// Ref reads the team, collection and ID at the head of a canonical state
// (AppendRecord writes the collection, ID and team first, in that order)
// without decoding the rest; ok is false when b does not start so.
func (b RecordBytes) Ref() (team, coll, id string, ok bool) {
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(bytes.NewReader(b))
	if n, err := dec.DecodeMapLen(); err != nil || n < 3 {
		return "", "", "", false
	}
	var vals [3]string
	for i, want := range []string{"c", "r", "t"} {
		k, err := dec.DecodeString()
		if err != nil || k != want {
			return "", "", "", false
		}
		if vals[i], err = dec.DecodeString(); err != nil {
			return "", "", "", false
		}
	}
	return vals[2], vals[0], vals[1], true
}
