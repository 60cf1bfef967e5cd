package main

import (
	"context"
	"testing"
	"time"
)

// TestRunSmall runs the load tool at a tiny scale: every round trip must
// succeed and push its ops cleanly, devices of a team must pull each
// other's pushes, and every acknowledged write must be found on the server.
func TestRunSmall(t *testing.T) {
	r, err := Run(context.Background(), Config{Devices: 3, Duration: 30 * time.Second, Rounds: 4, Ops: 50, PullLimit: 2000, TeamSize: 2, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.RoundTrips != 3*4 || r.Errors != 0 || r.OpsPushed != 50*r.RoundTrips {
		t.Fatalf("result %+v", r)
	}
	if r.Pulled == 0 {
		t.Fatalf("nothing pulled: %+v", r)
	}
	// 3 devices × 50 distinct (record, field) pairs.
	if r.Verified != 150 || r.Missing != 0 {
		t.Fatalf("verified %d, missing %d", r.Verified, r.Missing)
	}
	t.Log(header)
	t.Log(r.Row())
}

// TestRunFreshSampled covers grow mode's pieces: fresh records every round
// and memory samples.
func TestRunFreshSampled(t *testing.T) {
	r, err := Run(context.Background(), Config{Devices: 2, Duration: 30 * time.Second, Rounds: 3, Ops: 20, TeamSize: 1, Fresh: true, Verify: true, Sample: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.Verified != 2*3*20 || r.Missing != 0 || len(r.Memory) < 2 {
		t.Fatalf("verified %d, missing %d, %d samples", r.Verified, r.Missing, len(r.Memory))
	}
	if last := r.Memory[len(r.Memory)-1]; last.OpsStored != 120 || last.HeapInuse == 0 || last.RSS == 0 {
		t.Fatalf("last sample %+v", last)
	}
}

// TestWireSizes checks msgpack is smaller than the same push as JSON.
func TestWireSizes(t *testing.T) {
	mp, mpGz, js, jsGz, err := WireSizes(100)
	if err != nil {
		t.Fatal(err)
	}
	if !(mp < js && mpGz < mp && jsGz < js) {
		t.Fatalf("msgpack %.1f (gzip %.1f), JSON %.1f (gzip %.1f)", mp, mpGz, js, jsGz)
	}
}

// TestBootstrapSmall bootstraps a small team over HTTP: every record
// arrives, in more than one page when the team is larger than a page.
func TestBootstrapSmall(t *testing.T) {
	r, err := Bootstrap(context.Background(), "", 700, 5)
	if err != nil {
		t.Fatal(err)
	}
	if r.Records != 700 || r.Pages < 2 || r.BytesDown == 0 {
		t.Fatalf("result %+v", r)
	}
}
