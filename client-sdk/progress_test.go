package client

import (
	"context"
	"fmt"
	"testing"
)

// TestEmptyPagesThatMoveTheCursorAreProgress is issue 16 item 1 on the
// device side: a server that skips the device's own entries may answer
// with empty pages marked more. The cursor moves, so that is progress, and
// Sync must carry on to the end in one call instead of giving up after
// three rounds.
func TestEmptyPagesThatMoveTheCursorAreProgress(t *testing.T) {
	ctx := context.Background()
	f := newFakeServer(t)
	f.skipOwn = true
	ann := openSynced(t, f, func(o *Options) {
		o.MaxOpsPerChange = 1
		o.MaxChangesPerRequest = 2
		o.PullLimit = 1
	})
	mustSync(t, ann) // bootstrap
	for i := range 30 {
		if err := ann.CreateWithID(ctx, Ref{Team: "wigan", Collection: "people", ID: fmt.Sprint("p", i)}, map[string]any{"name": i}); err != nil {
			t.Fatal(err)
		}
	}
	// Everything is pushed in 15 rounds; the own entries then take
	// the 15 entries the pull lagged behind, as 15 empty pages, to step over.
	res, err := ann.Sync(ctx)
	if err != nil {
		t.Fatalf("sync over own entries: %v (after %d rounds)", err, res.Rounds)
	}
	if res.Pushed != 30 {
		t.Fatalf("pushed %d changes, want 30", res.Pushed)
	}
}
