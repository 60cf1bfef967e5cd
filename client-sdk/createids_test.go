package client

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/crdt"
)

// TestCreateOpIDs checks the IDs a create gives its ops (reserved at
// once, crdt.Clock.Reserve): distinct, increasing, and older than every
// later write's (on another record), also when the wall clock moves back
// by more than the allowed skew in the middle of a create.
func TestCreateOpIDs(t *testing.T) {
	for _, back := range []bool{false, true} {
		ctx := context.Background()
		base := time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC)
		var calls, armed atomic.Int64
		wall := func() time.Time {
			n := calls.Add(1)
			if armed.Load() != 0 && n > 1 {
				// Once armed, every reading after the first is an
				// hour back: the create's first reading is now, its
				// claim an hour earlier.
				return base.Add(-time.Hour)
			}
			return base.Add(time.Duration(n) * time.Microsecond)
		}
		r, err := Open(ctx, Options{Dir: t.TempDir(), EncryptionKey: testKey, NoValidation: true,
			Wall: wall, MaxClockSkew: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if back {
			calls.Store(0)
			armed.Store(1)
		}
		fields := map[string]any{}
		for _, f := range []string{"a", "b", "c", "d", "e"} {
			fields[f] = f
		}
		if _, err := r.Create(ctx, Ref{Team: "t", Collection: "notes"}, fields); err != nil {
			t.Fatal(err)
		}
		armed.Store(0)
		// Another record: its write does not read the first one's ops.
		if _, err := r.Create(ctx, Ref{Team: "t", Collection: "notes"}, map[string]any{"a": "later"}); err != nil {
			t.Fatal(err)
		}
		ops, err := r.PendingOps(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ops) != len(fields)+1 {
			t.Fatalf("back=%v: %d ops pending, want %d", back, len(ops), len(fields)+1)
		}
		var prev crdt.Timestamp
		for i, op := range ops {
			if op.ID.Time <= prev {
				t.Fatalf("back=%v: op %d (%s) has %s, not after %s", back, i, op.Field, op.ID.Time, prev)
			}
			prev = op.ID.Time
		}
		r.Close()
	}
}

// tagsTyper validates everything and types "tags" as a set.
type tagsTyper struct{}

func (tagsTyper) ValidateOp(*crdt.Op) error { return nil }
func (tagsTyper) FieldType(_, field string) (crdt.FieldType, bool) {
	return crdt.Set, field == "tags"
}

// TestCreateOpIDsBeyondReserved: a set field given several elements makes
// more ops than the create reserved IDs for (one a field); the ones beyond
// take the clock's next, still increasing, and an empty slice leaves none.
func TestCreateOpIDsBeyondReserved(t *testing.T) {
	ctx := context.Background()
	// A wall clock that stands still: every ID comes from the counter.
	still := time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC)
	r, err := Open(ctx, Options{Dir: t.TempDir(), EncryptionKey: testKey, Validator: tagsTyper{},
		Wall: func() time.Time { return still }})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Create(ctx, Ref{Team: "t", Collection: "notes"}, map[string]any{"a": "x", "tags": []any{"1", "2", "3", "4"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Create(ctx, Ref{Team: "t", Collection: "notes"}, map[string]any{"b": "y", "tags": []any{}}); err != nil {
		t.Fatal(err)
	}
	ops, err := r.PendingOps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 6 {
		t.Fatalf("%d ops pending, want 6", len(ops))
	}
	var prev crdt.Timestamp
	for i, op := range ops {
		if op.ID.Time <= prev {
			t.Fatalf("op %d (%s) has %s, not after %s", i, op.Field, op.ID.Time, prev)
		}
		prev = op.ID.Time
	}
}
