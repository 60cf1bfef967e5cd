package crdt

import (
	"bytes"
	"errors"
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
