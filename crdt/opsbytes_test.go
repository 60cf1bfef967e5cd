package crdt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
)

// TestOpsBytesSameWireAsOps: a message carrying ops as OpsBytes encodes to
// exactly the bytes the same message carrying them as []Op does, for no
// ops, a few, and enough to need each array header form; it decodes back
// to those bytes, and Ops returns the ops.
func TestOpsBytesSameWireAsOps(t *testing.T) {
	type decoded struct {
		A   string `msgpack:"a"`
		Ops []Op   `msgpack:"o"`
		Z   string `msgpack:"z"`
	}
	type raw struct {
		A   string   `msgpack:"a"`
		Ops OpsBytes `msgpack:"o"`
		Z   string   `msgpack:"z"`
	}
	seed := seedOps()
	many := manyOps(70_000) // over 65535: a 0xdd header
	for _, ops := range [][]Op{nil, seed[:1], seed, benchOps(benchRecord(20), 16), many} {
		want := compactMarshal(t, &decoded{A: "ann", Ops: ops, Z: "end"})
		ob := NewOpsBytes(ops)
		got := compactMarshal(t, &raw{A: "ann", Ops: ob, Z: "end"})
		if !bytes.Equal(got, want) {
			t.Fatalf("%d ops: raw form differs from []Op form:\n got %x\nwant %x", len(ops), got[:min(len(got), 64)], want[:min(len(want), 64)])
		}
		if ob.Len() != len(ops) {
			t.Fatalf("%d ops: Len %d", len(ops), ob.Len())
		}
		var out raw
		if err := msgpack.Unmarshal(got, &out); err != nil {
			t.Fatal(err)
		}
		if out.Z != "end" || out.Ops.Len() != len(ops) {
			t.Fatalf("%d ops: decoded %d ops, after %q", len(ops), out.Ops.Len(), out.Z)
		}
		dec, err := out.Ops.Ops()
		if err != nil {
			t.Fatalf("%d ops: %v", len(ops), err)
		}
		if len(dec) != len(ops) {
			t.Fatalf("%d ops: decoded %d", len(ops), len(dec))
		}
		for i := range ops {
			if !reflect.DeepEqual(dec[i], ops[i]) {
				t.Fatalf("%d ops: op %d: %+v, want %+v", len(ops), i, dec[i], ops[i])
			}
		}
	}
}

// TestOpsBytesAppend: joining two lists gives the bytes of one []Op
// holding both, across the array header forms.
func TestOpsBytesAppend(t *testing.T) {
	ops := manyOps(70_000)
	for _, c := range []struct{ a, b int }{{0, 0}, {0, 3}, {3, 0}, {3, 4}, {10, 10}, {15, 1}, {65_000, 535}, {65_000, 536}, {65_536, 10}} {
		a, b := ops[:c.a], ops[c.a:c.a+c.b]
		got, err := NewOpsBytes(a).Append(NewOpsBytes(b))
		if err != nil {
			t.Fatalf("%d+%d: %v", c.a, c.b, err)
		}
		if want := NewOpsBytes(ops[:c.a+c.b]); !bytes.Equal(got, want) {
			t.Fatalf("%d+%d: joined bytes differ from the []Op encoding", c.a, c.b)
		}
	}
	nilOps := OpsBytes{0xc0}
	one := NewOpsBytes(ops[:1])
	if got, err := nilOps.Append(one); err != nil || !bytes.Equal(got, one) {
		t.Fatalf("nil+1: %x, %v", []byte(got), err)
	}
	if got, err := one.Append(nilOps); err != nil || !bytes.Equal(got, one) {
		t.Fatalf("1+nil: %x, %v", []byte(got), err)
	}
	if _, err := one.Append(OpsBytes{0x81, 0xa1, 'a', 0x01}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("1+map: %v", err)
	}
	if _, err := (OpsBytes{0xdc, 0x00}).Append(one); !errors.Is(err, ErrMalformed) {
		t.Fatalf("truncated header+1: %v", err)
	}
}

// TestOpsBytesOpsIsBounded: Ops refuses hostile and malformed bytes with
// ErrMalformed or ErrTooLarge, without allocating what a header declares.
func TestOpsBytesOpsIsBounded(t *testing.T) {
	good := NewOpsBytes(seedOps())
	if ops, err := OpsBytes(nil).Ops(); err != nil || ops != nil {
		t.Fatalf("empty: %v, %v", ops, err)
	}
	if ops, err := (OpsBytes{0xc0}).Ops(); err != nil || ops != nil {
		t.Fatalf("nil: %v, %v", ops, err)
	}
	invalid := typicalOp()
	invalid.Team = ""
	deep := append(bytes.Repeat([]byte{0x91}, DefaultLimits.MaxDepth+8), 0xc0)
	deep[0] = 0x91 // the ops array, holding one deeply nested value
	huge := binary.BigEndian.AppendUint32([]byte{0xdd}, 1<<31)
	tooMany := append(binary.BigEndian.AppendUint32([]byte{0xdd}, uint32(DefaultLimits.MaxLen+1)), bytes.Repeat([]byte{0xc0}, DefaultLimits.MaxLen+1)...)
	for _, c := range []struct {
		name string
		b    []byte
		want error
	}{
		{"map", []byte{0x80}, ErrMalformed},
		{"string", []byte{0xa1, 'x'}, ErrMalformed},
		{"truncated header", []byte{0xdc, 0x01}, ErrMalformed},
		{"2^31 ops declared in 5 bytes", huge, ErrMalformed},
		{"60000 ops declared in 13 bytes", append([]byte{0xdc, 0xea, 0x60}, bytes.Repeat([]byte{0xc0}, 10)...), ErrMalformed},
		{"too many ops", tooMany, ErrTooLarge},
		{"truncated op", good[:len(good)-1], ErrMalformed},
		{"missing op", append([]byte{0x90 | byte(good.Len()+1)}, good[1:]...), ErrMalformed},
		{"trailing bytes", append(bytes.Clone(good), 0xc0), ErrMalformed},
		{"too deep", deep, ErrTooLarge},
		{"nil op", []byte{0x91, 0xc0}, ErrMalformed},
		{"int op", []byte{0x91, 0x07}, ErrMalformed},
		{"invalid op", NewOpsBytes([]Op{typicalOp(), invalid}), ErrMalformed},
	} {
		ops, err := OpsBytes(c.b).Ops()
		if !errors.Is(err, c.want) || ops != nil {
			t.Errorf("%s: %d ops, err %v, want %v", c.name, len(ops), err, c.want)
		}
	}
}

// manyOps returns n valid ops, typicalOp with distinct IDs and values.
func manyOps(n int) []Op {
	ops := make([]Op, n)
	for i := range ops {
		ops[i] = typicalOp()
		ops[i].ID.Time = MakeTimestamp(1_796_000_000_000+int64(i), 0)
		ops[i].Value = MustValue(i)
	}
	return ops
}

// TestOpsBytesFastPath: the ops this package encodes take Ops's one-pass
// decoder (FuzzOpsBytes holds it to the general path), and a change's
// ops share their strings: a run of ops of one record allocates its team,
// collection and record ID once, and each field name once per call.
func TestOpsBytesFastPath(t *testing.T) {
	push, _ := pushOps(1_796_000_000_000)
	for _, ops := range [][]Op{seedOps(), benchOps(benchRecord(20), 40), push} {
		b := NewOpsBytes(ops)
		_, p, _ := opsArrayHeader(b)
		d := opsDecoder{b: b}
		for i := range ops {
			var op Op
			end, ok := d.op(p, &op)
			if !ok {
				t.Fatalf("op %d (%s) does not take the fast path", i, ops[i].ID)
			}
			if !reflect.DeepEqual(op, ops[i]) {
				t.Fatalf("op %d: %+v, want %+v", i, op, ops[i])
			}
			p = end
		}
	}
	b := NewOpsBytes(push)
	got, err := b.Ops()
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(got); i++ {
		a, c := &got[i-1], &got[i]
		if a.Record == c.Record && unsafe.StringData(a.Record) != unsafe.StringData(c.Record) {
			t.Fatalf("ops %d and %d: one record ID, two strings", i-1, i)
		}
		if unsafe.StringData(a.Team) != unsafe.StringData(c.Team) {
			t.Fatalf("ops %d and %d: one team, two strings", i-1, i)
		}
	}
	// 100 record IDs, 30 field names, team and collection, the result,
	// and a few value chunks: nothing per op.
	if n := testing.AllocsPerRun(5, func() { _, _ = b.Ops() }); n > 250 {
		t.Fatalf("decoding %d ops allocates %v times", len(push), n)
	}
}
