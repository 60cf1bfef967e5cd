package sync

import (
	"fmt"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
)

// TestSyncReportsHighWater: every reply names the replica's high-water seq
// after its push, also to a push-less request; an empty stub (seq only, no
// ops) of a change the server holds is acknowledged as a duplicate and
// applies nothing.
func TestSyncReportsHighWater(t *testing.T) {
	e := openTest(t, Options{})
	d := newDevice("ann", time.Now, "wigan")
	for i := range 3 {
		d.write("wigan", "contacts", "c1", "outcome", i)
		d.appendLog("wigan", "contacts", "c1", "notes", fmt.Sprintf("note %d", i))
		d.commit()
	}
	req := d.request()
	req.Changes = req.Changes[:2]
	resp, err := e.Sync(bg, d.caller, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.HighWater != 2 {
		t.Fatalf("high-water after pushing seqs 1-2: %d, want 2", resp.HighWater)
	}
	// A push-less request (what a device sends after a lost reply).
	req = d.request()
	req.Changes = nil
	if resp, err = e.Sync(bg, d.caller, req); err != nil {
		t.Fatal(err)
	}
	if resp.HighWater != 2 {
		t.Fatalf("high-water of a push-less request: %d, want 2", resp.HighWater)
	}
	// Stubs for what the server holds, the rest in full.
	req = d.request()
	req.Changes[0].Ops, req.Changes[1].Ops = nil, nil
	if resp, err = e.Sync(bg, d.caller, req); err != nil {
		t.Fatal(err)
	}
	want := []api.ChangeStatus{api.ChangeDuplicate, api.ChangeDuplicate, api.ChangeApplied}
	for i, r := range resp.Results {
		if r.Status != want[i] {
			t.Fatalf("result %d: %+v, want status %d", i, r, want[i])
		}
	}
	if resp.HighWater != 3 {
		t.Fatalf("high-water after seq 3: %d, want 3", resp.HighWater)
	}
	if d2 := diffStates(encoded(t, d.recs), encoded(t, serverRecords(t, e, "wigan"))); d2 != "" {
		t.Fatal(d2)
	}
}
