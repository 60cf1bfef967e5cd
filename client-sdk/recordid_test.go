package client

import (
	"context"
	"errors"
	"testing"

	"github.com/doorstep-health/doorstep/crdt"
)

// TestRecordIDRefused: the SDK refuses, before storing anything, record
// IDs the server would refuse (invalid_record_id), with a typed error; its
// own NewID passes.
func TestRecordIDRefused(t *testing.T) {
	ctx := context.Background()
	r := openTest(t, t.TempDir(), nil)
	for _, id := range []string{"\xff\xfe", "a/b", "has space", string(make([]byte, 65))} {
		err := r.CreateWithID(ctx, Ref{Team: "wigan", Collection: "people", ID: id}, map[string]any{"name": "x"})
		var ve *ValidationError
		if !errors.Is(err, ErrInvalid) || !errors.Is(err, crdt.ErrBadRecordID) || !errors.As(err, &ve) {
			t.Errorf("CreateWithID(%q) = %v", id, err)
		}
	}
	if ops := pendingOps(t, r); len(ops) != 0 {
		t.Fatalf("%d ops stored for refused IDs", len(ops))
	}
	ref, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{"name": "Ann"})
	if err != nil || crdt.ValidateRecordID(ref.ID) != nil {
		t.Fatalf("Create: %q %v", ref.ID, err)
	}
}
