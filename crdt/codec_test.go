package crdt

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
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
	// A field and a record in state encoding version 2: replica table
	// "w", base time "b", clock "v" as [index, time - base] pairs, each
	// field's entries as flat [index, time delta, value] triples.
	plainField struct {
		Type    uint8                `msgpack:"y"`
		Entries []msgpack.RawMessage `msgpack:"e"`
		Pending []uint64             `msgpack:"p,omitempty"`
	}
	plainRecord struct {
		Collection string                `msgpack:"c"`
		ID         string                `msgpack:"r"`
		Team       string                `msgpack:"t"`
		Version    uint8                 `msgpack:"z"`
		Table      []byte                `msgpack:"w"`
		Base       uint64                `msgpack:"b"`
		Clock      []uint64              `msgpack:"v"`
		Fields     map[string]plainField `msgpack:"f"`
		DeleteSeen []uint64              `msgpack:"d,omitempty"`
	}
)

func plainIDs(ids []OpID) [][]byte {
	var out [][]byte
	for _, id := range ids {
		out = append(out, id.AppendBinary(nil))
	}
	return out
}

// toPlainRecord computes the version 2 form of r independently of the
// encoder: the table and base from every ID r holds.
func toPlainRecord(r *Record) plainRecord {
	var reps []ReplicaID
	var base Timestamp
	first := true
	see := func(id OpID) {
		reps = append(reps, id.Replica)
		if first || id.Time < base {
			base, first = id.Time, false
		}
	}
	for _, c := range r.Clock {
		see(OpID{Time: c.Time, Replica: c.Replica})
	}
	for _, f := range r.Fields {
		for _, e := range f.Entries {
			see(e.ID)
		}
		for _, id := range f.Pending {
			see(id)
		}
	}
	for _, id := range r.DeleteSeen {
		see(id)
	}
	slices.SortFunc(reps, func(a, b ReplicaID) int { return bytes.Compare(a[:], b[:]) })
	reps = slices.Compact(reps)
	idx := func(rep ReplicaID) uint64 { return uint64(slices.Index(reps, rep)) }
	ids := func(list []OpID) []uint64 {
		var out []uint64
		prev := base
		for _, id := range list {
			out = append(out, idx(id.Replica), uint64(id.Time-prev))
			prev = id.Time
		}
		return out
	}
	p := plainRecord{Collection: r.Collection, ID: r.ID, Team: r.Team, Version: 2, Table: []byte{},
		Base: uint64(base), Clock: []uint64{}, Fields: map[string]plainField{}, DeleteSeen: ids(r.DeleteSeen)}
	for _, rep := range reps {
		p.Table = append(p.Table, rep[:]...)
	}
	for _, c := range r.Clock {
		p.Clock = append(p.Clock, idx(c.Replica), uint64(c.Time-base))
	}
	for name, f := range r.Fields {
		pf := plainField{Type: uint8(f.Type), Entries: []msgpack.RawMessage{}, Pending: ids(f.Pending)}
		prev := base
		for _, e := range f.Entries {
			pf.Entries = append(pf.Entries, MustValue(idx(e.ID.Replica)), MustValue(uint64(e.ID.Time-prev)), e.Value)
			prev = e.ID.Time
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
		// One field at a time, Go's map order does not matter: the bytes
		// are the tag form's.
		for _, name := range r.FieldNames() {
			one := r.Clone()
			for n := range one.Fields {
				if n != name {
					delete(one.Fields, n)
				}
			}
			got, _ := MarshalRecord(one)
			if want := plainMarshal(t, toPlainRecord(one)); !bytes.Equal(got, want) {
				t.Fatalf("field %s:\n got %x\nwant %x", name, got, want)
			}
		}
		if via, err := msgpack.Marshal(r); err != nil || !bytes.Equal(via, got) {
			t.Fatalf("msgpack.Marshal(record) differs: %v", err)
		}
		// Another encoder's form of the same values (every integer as a
		// uint64, keys as str8) decodes to the same state.
		var p plainRecord
		if err := msgpack.Unmarshal(got, &p); err != nil {
			t.Fatalf("plain decode: %v", err)
		}
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		enc.UseCompactInts(false)
		if err := enc.Encode(p); err != nil {
			t.Fatal(err)
		}
		alt, err := UnmarshalRecord(buf.Bytes())
		if err != nil {
			t.Fatalf("wide-integer form: %v", err)
		}
		if b2, _ := MarshalRecord(alt); !bytes.Equal(b2, got) {
			t.Fatalf("wide-integer form decodes differently:\n%x\n%x", b2, got)
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
	// Version 1 states (the layout before the causal context) take the
	// fast path too, which agrees with msgpack's.
	for _, b := range seedV1States(t) {
		if _, _, ok := fastRecordV1(b); !ok {
			t.Fatalf("version 1 record does not take the fast path")
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

// TestEncodeValueFastPath: EncodeValue's own encoding of strings and bools
// is byte for byte what the msgpack encoder writes.
func TestEncodeValueFastPath(t *testing.T) {
	var vals []any
	for _, n := range []int{0, 1, 31, 32, 255, 256, 65535, 65536, 70000} {
		vals = append(vals, strings.Repeat("é", n)[:n])
	}
	vals = append(vals, true, false)
	for _, v := range vals {
		got, err := EncodeValue(v)
		if err != nil {
			t.Fatal(err)
		}
		want, err := marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%T of length %d: fast path % x..., msgpack % x...", v, len(want), got[:min(6, len(got))], want[:min(6, len(want))])
		}
	}
}
