package crdt

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// TestRecordBytesSameWireAsRecord: a message carrying stored record bytes
// as RecordBytes encodes to exactly the bytes the same message carrying
// the decoded *Record values does, and decodes back to those bytes.
func TestRecordBytesSameWireAsRecord(t *testing.T) {
	type decoded struct {
		V       int       `msgpack:"v"`
		Records []*Record `msgpack:"b,omitempty"`
		After   string    `msgpack:"z"`
	}
	type raw struct {
		V       int           `msgpack:"v"`
		Records []RecordBytes `msgpack:"b,omitempty"`
		After   string        `msgpack:"z"`
	}
	recs := seedRecords(t)
	din := decoded{V: 1, Records: recs, After: "end"}
	rin := raw{V: 1, After: "end"}
	for _, r := range recs {
		b, err := MarshalRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		rin.Records = append(rin.Records, b)
	}
	want := compactMarshal(t, &din)
	got := compactMarshal(t, &rin)
	if !bytes.Equal(got, want) {
		t.Fatalf("raw form differs from the decoded form:\n got %x\nwant %x", got, want)
	}

	var rout raw
	if err := msgpack.Unmarshal(got, &rout); err != nil {
		t.Fatal(err)
	}
	if rout.After != "end" || len(rout.Records) != len(recs) {
		t.Fatalf("decoded %d records, after %q", len(rout.Records), rout.After)
	}
	for i, b := range rout.Records {
		if !bytes.Equal(b, rin.Records[i]) {
			t.Fatalf("record %d: decoded bytes %x, want %x", i, b, rin.Records[i])
		}
		r, err := b.Record()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if !reflect.DeepEqual(toPlainRecord(r), toPlainRecord(recs[i])) {
			t.Fatalf("record %d: %+v, want %+v", i, r, recs[i])
		}
	}

	// An empty item is written as nil, as a nil *Record is.
	if got, want := compactMarshal(t, &raw{Records: []RecordBytes{nil}}), compactMarshal(t, &decoded{Records: []*Record{nil}}); !bytes.Equal(got, want) {
		t.Fatalf("nil item: got %x, want %x", got, want)
	}
}

// TestRecordBytesRecordIsBounded: Record refuses malformed and oversized
// bytes as UnmarshalRecord does.
func TestRecordBytesRecordIsBounded(t *testing.T) {
	if _, err := RecordBytes(nil).Record(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("empty: %v", err)
	}
	good, err := MarshalRecord(benchRecord(3))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RecordBytes(good[:len(good)-1]).Record(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("truncated: %v", err)
	}
	// Nested deeper than DefaultLimits allow.
	deep := append(bytes.Repeat([]byte{0x91}, DefaultLimits.MaxDepth+8), 0xc0)
	if _, err := RecordBytes(deep).Record(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("deep: %v", err)
	}
}

func compactMarshal(t *testing.T, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
