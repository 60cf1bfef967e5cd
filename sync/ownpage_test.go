package sync

import (
	"strings"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
)

// pushMany pushes n changes of three ~100-byte register writes from d.
func pushMany(t *testing.T, e *Engine, d *device, n int) {
	t.Helper()
	for i := range n {
		for f := range 3 {
			d.write("wigan", "contacts", "own", string(rune('a'+f)), strings.Repeat("x", 100)+string(rune('0'+i%10)))
		}
		ch := d.commit()
		res, err := e.Push(bg, d.caller, []api.Change{ch})
		if err != nil || res[0].Status != api.ChangeApplied {
			t.Fatalf("push: %+v %v", res, err)
		}
		d.outbox = nil
	}
}

// TestOwnEntriesDoNotFillPage is issue 16 item 1: the pusher's own log
// entries, skipped by its pull, used to count against the page byte
// budget, so after a large push its pulls came back empty but marked more
// until the SDK gave up. Skipped entries must not use up the page.
func TestOwnEntriesDoNotFillPage(t *testing.T) {
	e := openTest(t, Options{PageBytes: 4 << 10})
	ann := newDevice("ann", time.Now, "wigan")
	bob := newDevice("bob", time.Now, "wigan")
	ann.syncAll(t, e)        // bootstrap: ann now follows the log
	pushMany(t, e, ann, 100) // ~40 KB of ann's own entries, ten pages' worth
	bob.write("wigan", "contacts", "bobs", "name", "Bob's edit")
	bob.commit()
	bob.syncAll(t, e)

	resp, err := e.Pull(bg, ann.caller, ann.cursor, 500)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Changes) != 1 || resp.More {
		t.Fatalf("first page after own push: %d changes, more=%v; want bob's one change and no more", len(resp.Changes), resp.More)
	}
}

// TestOwnEntriesSkipIsBounded: skipping own entries is still bounded work
// per request. Past the skip budget the page ends (empty, more), but the
// cursor always moves forward, so the puller makes progress.
func TestOwnEntriesSkipIsBounded(t *testing.T) {
	e := openTest(t, Options{PageBytes: 512})
	ann := newDevice("ann", time.Now, "wigan")
	ann.syncAll(t, e)
	pushMany(t, e, ann, 200) // ~80 KB of own entries, over 16 × 512 bytes
	cur := ann.cursor
	pages := 0
	for {
		resp, err := e.Pull(bg, ann.caller, cur, 500)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(resp.Changes) != 0 {
			t.Fatalf("own changes served back: %d", len(resp.Changes))
		}
		if string(resp.Cursor) == string(cur) && resp.More {
			t.Fatalf("page %d: cursor did not move but more is set", pages)
		}
		cur = resp.Cursor
		if !resp.More {
			break
		}
		if pages > 50 {
			t.Fatal("pull does not finish")
		}
	}
	if pages < 2 {
		t.Errorf("%d pages: skipping 200 own entries was not bounded per request", pages)
	}
	t.Logf("%d pages to skip 200 own entries", pages)
}
