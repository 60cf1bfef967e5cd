package blob

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is time.Now moved forward by a settable amount.
type fakeClock struct{ ahead atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Now().Add(time.Duration(c.ahead.Load())) }
func (c *fakeClock) advance(d time.Duration) { c.ahead.Add(int64(d)) }

// A device that starts uploads and abandons them fills its team's quota
// with their declared sizes, not the bytes sent: further uploads are
// refused. Once the uploads have been idle for the TTL the sweeper removes
// them and frees the quota, while an upload still being resumed is kept
// and a complete blob is never touched. A device resuming an expired
// upload is told to start again at byte 0.
func TestAbandonedUploadsExpire(t *testing.T) {
	ctx := context.Background()
	var clk fakeClock
	s := open(t, Config{TeamQuota: 1 << 20, UploadTTL: time.Hour, SweepEvery: -1, Now: clk.now})
	done, doneSum := jpeg(t, 100_000)
	if _, err := s.Write(ctx, "wigan", doneSum, ref, int64(len(done)), 0, bytes.NewReader(done)); err != nil {
		t.Fatal(err)
	}
	var abandoned []string
	for i := 0; ; i++ {
		b, sum := jpeg(t, 300_000)
		_, err := s.Write(ctx, "wigan", sum, ref, int64(len(b)), 0, bytes.NewReader(b[:SniffLen]))
		if errors.Is(err, ErrQuota) {
			break
		}
		if err != nil || i > 10 {
			t.Fatalf("upload %d: %v", i, err)
		}
		abandoned = append(abandoned, sum)
	}
	if len(abandoned) != 3 || s.Usage("wigan") != 100_000+3*300_000 {
		t.Fatalf("%d uploads before the quota, usage %d", len(abandoned), s.Usage("wigan"))
	}
	// One upload is resumed half an hour before the sweep; the others idle.
	clk.advance(50 * time.Minute)
	kept := abandoned[0]
	if n, err := s.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("early sweep removed %d, %v", n, err)
	}
	if err := os.Chtimes(s.uploadPath("wigan", kept), clk.now(), clk.now()); err != nil { // a write now, by the fake clock
		t.Fatal(err)
	}
	clk.advance(20 * time.Minute)
	n, err := s.Sweep(ctx)
	if err != nil || n != 2 {
		t.Fatalf("sweep removed %d, %v; want 2", n, err)
	}
	if s.Usage("wigan") != 100_000+300_000 {
		t.Fatalf("usage after sweep %d", s.Usage("wigan"))
	}
	if _, err := s.Stat(ctx, "wigan", kept); err != nil {
		t.Fatalf("the resumed upload was swept: %v", err)
	}
	if info, err := s.Stat(ctx, "wigan", doneSum); err != nil || !info.Complete {
		t.Fatalf("complete blob after sweep: %+v %v", info, err)
	}
	gone := abandoned[1]
	if _, err := s.Stat(ctx, "wigan", gone); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired upload still there: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(s.cfg.Dir, "*", "uploads", gone+"*")); len(m) != 0 {
		t.Fatalf("files left: %v", m)
	}
	var oe *OffsetError
	if _, err := s.Write(ctx, "wigan", gone, ref, 300_000, SniffLen, bytes.NewReader(make([]byte, 10))); !errors.As(err, &oe) || oe.Want != 0 {
		t.Fatalf("resume of an expired upload: %v, want offset 0", err)
	}
	// The quota freed is usable; reopened, the usage is counted the same.
	b, sum := jpeg(t, 300_000)
	if _, err := s.Write(ctx, "wigan", sum, ref, int64(len(b)), 0, bytes.NewReader(b)); err != nil {
		t.Fatalf("upload after the sweep: %v", err)
	}
	if s2 := open(t, Config{Dir: s.cfg.Dir, SweepEvery: -1}); s2.Usage("wigan") != s.Usage("wigan") {
		t.Fatalf("usage reopened %d, live %d", s2.Usage("wigan"), s.Usage("wigan"))
	}
}

// The Store's own sweeper goroutine removes an expired upload without a
// call, and Close stops it.
func TestSweeperRunsAndStops(t *testing.T) {
	ctx := context.Background()
	var clk fakeClock
	s, err := Open(Config{Dir: t.TempDir(), UploadTTL: time.Minute, SweepEvery: 10 * time.Millisecond, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	b, sum := jpeg(t, 50_000)
	if _, err := s.Write(ctx, "wigan", sum, ref, int64(len(b)), 0, bytes.NewReader(b[:100])); err != nil {
		t.Fatal(err)
	}
	clk.advance(2 * time.Minute)
	deadline := time.Now().Add(5 * time.Second)
	for s.Usage("wigan") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sweeper did not remove the expired upload")
		}
		time.Sleep(5 * time.Millisecond)
	}
	done := make(chan struct{})
	go func() { s.Close(); s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop the sweeper")
	}
}
