package crdt

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// seedOps returns real ops of every kind, for fuzz corpora.
func seedOps() []Op {
	r := NewRecord("wigan", "people", "p1")
	w := r.Write(at(1000, ann), "mobility", MustValue("stick"))
	_ = r.Apply(&w)
	a := r.Add(at(1001, ann), "needs", MustValue("money"))
	_ = r.Apply(&a)
	return []Op{
		w,
		r.Write(at(2000, bea), "mobility", MustValue(map[string]any{"aid": "frame", "since": 2024})),
		r.Write(at(2001, bea), "phone", MustValue(nil)),
		a,
		r.Remove(at(2002, bea), "needs", MustValue("money")),
		r.Remove(at(2003, bea), "needs", MustValue("never added")),
		r.Append(at(2004, coord), "notes", MustValue("Visited; all well.")),
		r.Delete(at(3000, coord)),
		r.Restore(at(3001, coord)),
	}
}

// seedRecords returns real record states, for fuzz corpora.
func seedRecords(tb testing.TB) []*Record {
	out := []*Record{NewRecord("wigan", "people", "empty"), benchRecord(20)}
	rng := rand.New(rand.NewPCG(1, 2))
	s := newSim(rng, 3)
	s.run(tb, 40)
	for _, r := range s.reps {
		for _, id := range simRecords {
			out = append(out, r.recs[id])
		}
	}
	return out
}

func FuzzUnmarshalOp(f *testing.F) {
	for _, op := range seedOps() {
		b, err := MarshalOp(&op)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x80})
	f.Add([]byte{0x81, 0xa1, 'p', 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		// The fast decoder and msgpack's agree on every input.
		fast, ferr := decodeOp(b, true)
		slow, serr := decodeOp(b, false)
		if (ferr == nil) != (serr == nil) || ferr == nil && !reflect.DeepEqual(fast, slow) {
			t.Fatalf("fast and msgpack decoders differ:\n%+v %v\n%+v %v", fast, ferr, slow, serr)
		}
		op, err := UnmarshalOp(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if err := CheckLimits(b, DefaultLimits); err != nil {
			t.Fatalf("accepted bytes CheckLimits refuses: %v", err)
		}
		b1, err := MarshalOp(op)
		if err != nil {
			t.Fatalf("accepted op does not encode: %v", err)
		}
		op2, err := UnmarshalOp(b1)
		if err != nil {
			t.Fatalf("re-encoding %x does not decode: %v", b1, err)
		}
		if !reflect.DeepEqual(op, op2) {
			t.Fatalf("op changed through re-encoding:\n%+v\n%+v", op, op2)
		}
		if b2, _ := MarshalOp(op2); !bytes.Equal(b1, b2) {
			t.Fatalf("re-encoding not stable:\n%x\n%x", b1, b2)
		}
		// Any valid op applies to its record, or is refused with a sentinel.
		r := NewRecord(op.Team, op.Collection, op.Record)
		if err := r.Apply(op); err != nil {
			if !errors.Is(err, ErrKindMismatch) {
				t.Fatalf("apply: %v", err)
			}
			return
		}
		rb, err := MarshalRecord(r)
		if err != nil {
			t.Fatalf("state of one op does not encode: %v", err)
		}
		if _, err := UnmarshalRecord(rb); err != nil {
			t.Fatalf("state of one op does not decode: %v", err)
		}
	})
}

func FuzzUnmarshalRecord(f *testing.F) {
	for _, r := range seedRecords(f) {
		b, err := MarshalRecord(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x84, 0xa1, 'f', 0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		// After the limits check, the version 2 decoder agrees with the
		// one before issue 17's third pass: the same Record, and an error
		// where it has one.
		if CheckLimits(b, DefaultLimits) == nil {
			got, gerr := decodeStateV2(b)
			want, werr := decodeStateV2Reference(b)
			if (gerr == nil) != (werr == nil) || errors.Is(gerr, errNotV2) != errors.Is(werr, errNotV2) ||
				gerr == nil && !reflect.DeepEqual(got, want) {
				t.Fatalf("version 2 decoder differs from the reference:\n%+v %v\n%+v %v", got, gerr, want, werr)
			}
		}
		fast, ferr := decodeRecord(b, true)
		slow, serr := decodeRecord(b, false)
		if (ferr == nil) != (serr == nil) || ferr == nil && !reflect.DeepEqual(fast, slow) {
			t.Fatalf("fast and msgpack decoders differ:\n%+v %v\n%+v %v", fast, ferr, slow, serr)
		}
		r, err := UnmarshalRecord(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		b1, err := MarshalRecord(r)
		if err != nil {
			t.Fatalf("accepted record does not encode: %v", err)
		}
		r2, err := UnmarshalRecord(b1)
		if err != nil {
			t.Fatalf("re-encoding %x does not decode: %v", b1, err)
		}
		if b2, _ := MarshalRecord(r2); !bytes.Equal(b1, b2) {
			t.Fatalf("re-encoding not canonical:\n%x\n%x", b1, b2)
		}
		// A valid state merges with itself to itself, and with an empty
		// state to itself; the readers do not panic.
		m := r.Clone()
		if err := m.Merge(r2); err != nil {
			t.Fatalf("merge with itself: %v", err)
		}
		if err := m.Merge(NewRecord(r.Team, r.Collection, r.ID)); err != nil {
			t.Fatalf("merge with empty: %v", err)
		}
		if bm, _ := MarshalRecord(m); !bytes.Equal(bm, b1) {
			t.Fatalf("merge with itself changed the state:\n%x\n%x", bm, b1)
		}
		empty := NewRecord(r.Team, r.Collection, r.ID)
		if err := empty.Merge(r); err != nil {
			t.Fatalf("merge into empty: %v", err)
		}
		if be, _ := MarshalRecord(empty); !bytes.Equal(be, b1) {
			t.Fatalf("empty ∪ r != r:\n%x\n%x", be, b1)
		}
		_ = r.Conflicts()
		_ = r.Deleted()
		for _, name := range r.FieldNames() {
			f := r.Field(name)
			f.Winner()
			f.Members()
		}
	})
}

func FuzzCheckLimits(f *testing.F) {
	for _, b := range oneOfEachType {
		f.Add(b)
	}
	for _, op := range seedOps() {
		b, _ := MarshalOp(&op)
		f.Add(b)
	}
	f.Add(append(bytes.Repeat([]byte{0x91}, 40), 0xc0))
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5})
	f.Fuzz(func(t *testing.T, b []byte) {
		err := CheckLimits(b, DefaultLimits)
		if err != nil {
			if errors.Is(err, ErrMalformed) == errors.Is(err, ErrTooLarge) {
				t.Fatalf("error wraps neither or both sentinels: %v", err)
			}
			return
		}
		rd := bytes.NewReader(b)
		if err := msgpack.NewDecoder(rd).Skip(); err != nil || rd.Len() != 0 {
			t.Fatalf("CheckLimits accepted %x but msgpack: %v, %d bytes left", b, err, rd.Len())
		}
		// Tighter limits only ever refuse more, and only with ErrTooLarge.
		if err := CheckLimits(b, Limits{MaxDepth: 2, MaxLen: 4, MaxItems: 8}); err != nil && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("tight limits: %v, want ErrTooLarge", err)
		}
	})
}

// opsReference is OpsBytes.Ops as it was before its one-pass fast path
// (issue 17): per op, CheckLimits's scan, then fastOp or msgpack, then
// Validate. FuzzOpsBytes holds Ops to it.
func opsReference(b OpsBytes) ([]Op, error) {
	if len(b) == 0 || len(b) == 1 && b[0] == 0xc0 {
		return nil, nil
	}
	n, p, ok := opsArrayHeader(b)
	if !ok {
		return nil, fmt.Errorf("%w: ops: not an array (0x%02x)", ErrMalformed, b[0])
	}
	if n > DefaultLimits.MaxLen {
		return nil, fmt.Errorf("%w: ops: %d ops over %d", ErrTooLarge, n, DefaultLimits.MaxLen)
	}
	if n > len(b)-p {
		return nil, fmt.Errorf("%w: ops: %d ops declared in %d bytes", ErrMalformed, n, len(b)-p)
	}
	ops := make([]Op, n)
	for i := range ops {
		end, err := scan(b, p, DefaultLimits)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				err = fmt.Errorf("%w: %w", ErrMalformed, err)
			}
			return nil, fmt.Errorf("ops: op %d: %w", i, err)
		}
		op, ok := fastOp(b[p:end])
		if !ok {
			op = new(Op)
			if err := unmarshal(b[p:end], op); err != nil {
				return nil, fmt.Errorf("ops: op %d: %w", i, err)
			}
		}
		if err := op.Validate(); err != nil {
			return nil, fmt.Errorf("ops: op %d: %w", i, err)
		}
		ops[i] = *op
		p = end
	}
	if p != len(b) {
		return nil, fmt.Errorf("%w: ops: %d trailing bytes", ErrMalformed, len(b)-p)
	}
	return ops, nil
}

// FuzzOpsBytes: Ops accepts exactly what the general path accepts, with
// the same ops and the same errors, and its ops never alias the input.
func FuzzOpsBytes(f *testing.F) {
	seed := seedOps()
	f.Add([]byte(NewOpsBytes(seed)))
	push, _ := pushOps(1_796_000_000_000)
	f.Add([]byte(NewOpsBytes(push[:45])))
	f.Add([]byte(NewOpsBytes(benchOps(benchRecord(20), 12))))
	deep := typicalOp()
	deep.Value = append(bytes.Repeat([]byte{0x91}, DefaultLimits.MaxDepth-1), 0xc0)
	f.Add([]byte(NewOpsBytes([]Op{deep})))
	deep.Value = append([]byte{0x91}, deep.Value...)
	f.Add([]byte(NewOpsBytes([]Op{deep})))
	alt, _ := MarshalOp(&seed[0])
	alt = append([]byte{0x92, alt[0], 0xd9, 1, 'i'}, alt[3:]...) // str8 key
	alt = append(alt, NewOpsBytes(seed[1:2])[1:]...)
	f.Add(alt)
	f.Add([]byte{0x91, 0x80})
	f.Add([]byte{0xdc, 0x00, 0x01, 0xc0})
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		got, gerr := OpsBytes(in).Ops()
		want, werr := opsReference(b)
		if (gerr == nil) != (werr == nil) || gerr != nil && gerr.Error() != werr.Error() {
			t.Fatalf("errors differ:\n got %v\nwant %v", gerr, werr)
		}
		if gerr != nil {
			if !errors.Is(gerr, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", gerr)
			}
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("ops differ:\n got %+v\nwant %+v", got, want)
		}
		clear(in)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decoded ops alias the input")
		}
	})
}
