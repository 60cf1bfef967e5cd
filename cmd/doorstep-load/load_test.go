package main

import (
	"context"
	"testing"
	"time"
)

// TestRunSmall runs the load tool at a tiny scale: every round trip must
// succeed and push its ops cleanly, and devices of a team must pull each
// other's pushes.
func TestRunSmall(t *testing.T) {
	r, err := Run(context.Background(), Config{Devices: 3, Duration: 300 * time.Millisecond, Ops: 50, PullLimit: 2000, TeamSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	if r.RoundTrips == 0 || r.Errors != 0 || r.OpsPushed != 50*r.RoundTrips {
		t.Fatalf("result %+v", r)
	}
	if r.Pulled == 0 {
		t.Fatalf("nothing pulled: %+v", r)
	}
	t.Log(header)
	t.Log(r.Row())
}
