package crdt

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// The wire form as msgpack's reflection codec derives it from struct tags,
// with none of this package's codecs: what another implementation reads.
type (
	plainOp struct {
		ID         []byte             `msgpack:"i"`
		Team       string             `msgpack:"t"`
		Collection string             `msgpack:"c"`
		Record     string             `msgpack:"r"`
		Field      string             `msgpack:"f"`
		Kind       uint8              `msgpack:"k"`
		Value      msgpack.RawMessage `msgpack:"v,omitempty"`
		Pred       [][]byte           `msgpack:"p,omitempty"`
	}
	plainEntry struct {
		ID    []byte             `msgpack:"i"`
		Value msgpack.RawMessage `msgpack:"v"`
	}
	plainField struct {
		Type    uint8        `msgpack:"y"`
		Entries []plainEntry `msgpack:"e"`
		Removed [][]byte     `msgpack:"x,omitempty"`
	}
	plainRecord struct {
		Collection string                `msgpack:"c"`
		ID         string                `msgpack:"r"`
		Team       string                `msgpack:"t"`
		Fields     map[string]plainField `msgpack:"f"`
	}
)

func plainIDs(ids []OpID) [][]byte {
	var out [][]byte
	for _, id := range ids {
		out = append(out, id.AppendBinary(nil))
	}
	return out
}

func toPlainRecord(r *Record) plainRecord {
	p := plainRecord{Collection: r.Collection, ID: r.ID, Team: r.Team, Fields: map[string]plainField{}}
	for name, f := range r.Fields {
		pf := plainField{Type: uint8(f.Type), Entries: []plainEntry{}, Removed: plainIDs(f.Removed)}
		for _, e := range f.Entries {
			v := e.Value
			if bytes.Equal(v, []byte{0xc0}) {
				v = nil // msgpack's reflection decoder reads a nil RawMessage as no value
			}
			pf.Entries = append(pf.Entries, plainEntry{ID: e.ID.AppendBinary(nil), Value: v})
		}
		p.Fields[name] = pf
	}
	return p
}

func plainMarshal(t *testing.T, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestOpWireFormIsTheTagForm(t *testing.T) {
	for _, op := range append(seedOps(), typicalOp()) {
		got, _ := MarshalOp(&op)
		want := plainMarshal(t, plainOp{ID: op.ID.AppendBinary(nil), Team: op.Team, Collection: op.Collection,
			Record: op.Record, Field: op.Field, Kind: uint8(op.Kind), Value: op.Value, Pred: plainIDs(op.Pred)})
		if !bytes.Equal(got, want) {
			t.Fatalf("op %s:\n got %x\nwant %x", op.ID, got, want)
		}
		// Through msgpack's own encoder (as package api embeds ops).
		if via, err := msgpack.Marshal(op); err != nil || !bytes.Equal(via, got) {
			t.Fatalf("msgpack.Marshal(op) = %x, %v; want %x", via, err, got)
		}
	}
}

func TestRecordWireFormIsTheTagForm(t *testing.T) {
	for _, r := range seedRecords(t) {
		got, _ := MarshalRecord(r)
		// Read back with the plain reflection codec: the same content.
		var p plainRecord
		if err := msgpack.Unmarshal(got, &p); err != nil {
			t.Fatalf("plain decode: %v", err)
		}
		if want := toPlainRecord(r); !reflect.DeepEqual(p, want) {
			t.Fatalf("plain decode differs:\n got %+v\nwant %+v", p, want)
		}
		// One field at a time, Go's map order does not matter: the bytes
		// are the tag form's.
		for _, name := range r.FieldNames() {
			one := NewRecord(r.Team, r.Collection, r.ID)
			one.Fields[name] = r.Fields[name]
			got, _ := MarshalRecord(one)
			if want := plainMarshal(t, toPlainRecord(one)); !bytes.Equal(got, want) {
				t.Fatalf("field %s:\n got %x\nwant %x", name, got, want)
			}
		}
		if via, err := msgpack.Marshal(r); err != nil || !bytes.Equal(via, got) {
			t.Fatalf("msgpack.Marshal(record) differs: %v", err)
		}
	}
}

// TestEmbeddedInMessages: ops and records inside another message, as
// package api carries them, round-trip through msgpack's own codec.
func TestEmbeddedInMessages(t *testing.T) {
	type message struct {
		Ops     []Op      `msgpack:"o"`
		Records []*Record `msgpack:"b,omitempty"`
		After   string    `msgpack:"z"`
	}
	in := message{Ops: seedOps(), Records: seedRecords(t)[:3], After: "end"}
	b, err := msgpack.Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckLimits(b, DefaultLimits); err != nil {
		t.Fatalf("message fails CheckLimits: %v", err)
	}
	var out message
	if err := msgpack.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in.Ops, out.Ops) || out.After != "end" {
		t.Fatalf("ops changed in a message")
	}
	for i := range in.Records {
		x, _ := MarshalRecord(in.Records[i])
		y, _ := MarshalRecord(out.Records[i])
		if !bytes.Equal(x, y) {
			t.Fatalf("record %d changed in a message", i)
		}
	}
}

func TestEncodeValueCanonical(t *testing.T) {
	m := map[string]any{}
	for _, k := range []string{"q", "b", "z", "a", "m", "c", "y", "d"} {
		m[k] = int8(1)
	}
	first := MustValue(m)
	for range 20 {
		if !bytes.Equal(MustValue(m), first) {
			t.Fatalf("map value encodes differently on different calls")
		}
	}
	if !bytes.Equal(MustValue(int8(3)), MustValue(3)) || !bytes.Equal(MustValue(uint64(3)), []byte{0x03}) {
		t.Fatalf("integers are not in their smallest form")
	}
}

// TestFastDecodePath: this package's own encodings take the fast decoder,
// which agrees with msgpack's, and decoded values never alias the input.
func TestFastDecodePath(t *testing.T) {
	for _, op := range seedOps() {
		b, _ := MarshalOp(&op)
		fast, ok := fastOp(b)
		if !ok {
			t.Fatalf("op %s does not take the fast path", op.ID)
		}
		slow, err := decodeOp(b, false)
		if err != nil || !reflect.DeepEqual(fast, slow) {
			t.Fatalf("op %s: fast %+v, msgpack %+v %v", op.ID, fast, slow, err)
		}
	}
	for _, r := range seedRecords(t) {
		b, _ := MarshalRecord(r)
		if _, ok := fastRecord(b); !ok {
			t.Fatalf("record does not take the fast path")
		}
		fast, err1 := decodeRecord(b, true)
		slow, err2 := decodeRecord(b, false)
		if err1 != nil || err2 != nil || !reflect.DeepEqual(fast, slow) {
			t.Fatalf("fast and msgpack decoders differ: %v %v", err1, err2)
		}
	}
	op := typicalOp()
	b, _ := MarshalOp(&op)
	got, err := UnmarshalOp(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0
	}
	if !bytes.Equal(got.Value, op.Value) || got.Team != op.Team {
		t.Fatalf("decoded op aliases the input buffer")
	}
	// Another encoder's equivalent form (str8 keys) takes the slow path
	// and decodes the same.
	op = typicalOp()
	b, _ = MarshalOp(&op)
	alt := append([]byte{b[0], 0xd9, 1, 'i'}, b[3:]...) // key "i" as str8
	if _, ok := fastOp(alt); ok {
		t.Fatalf("fast path took a form it does not know")
	}
	if got, err := UnmarshalOp(alt); err != nil || !reflect.DeepEqual(*got, op) {
		t.Fatalf("str8 key: %+v %v", got, err)
	}
}
