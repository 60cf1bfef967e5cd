package client

import (
	"context"
	"fmt"
	gosync "sync"
	"testing"
)

// TestPendingOpsIsOneSnapshot is issue 16 item 7: PendingOps read the
// sealed changes and the unsealed groups in two transactions, so ops that
// seal moved from one to the other in between went missing (or were
// counted twice). It must read the outbox in one transaction.
func TestPendingOpsIsOneSnapshot(t *testing.T) {
	ctx := context.Background()
	r := openTest(t, t.TempDir(), func(o *Options) { o.MaxOpsPerChange = 1; o.MaxChangesPerRequest = 1 << 20 })
	const n = 200
	for i := range n {
		if err := r.CreateWithID(ctx, Ref{Team: "t", Collection: "c", ID: fmt.Sprint(i)}, map[string]any{"f": i}); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	var wg gosync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		// seal moves at most 4 groups per transaction: many small moves.
		for range n / 4 {
			if err := r.seal(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	reads := 0
	for running := true; running; reads++ {
		select {
		case <-done:
			running = false
		default:
		}
		ops, err := r.PendingOps(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ops) != n {
			t.Errorf("read %d: PendingOps returned %d ops while sealing, want %d", reads, len(ops), n)
			break
		}
	}
	wg.Wait()
}

// TestCloseRacesBackgroundAndSubscribe is issue 16 item 7: Background and
// Subscribe called wg.Add without ordering it against Close's wg.Wait, so
// a goroutine could start after Close had waited and closed the store.
// Run with -race.
func TestCloseRacesBackgroundAndSubscribe(t *testing.T) {
	f := newFakeServer(t)
	for range 20 {
		r, err := Open(context.Background(), Options{Dir: t.TempDir(), InsecureNoEncryption: true, NoValidation: true, ServerURL: f.srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		var wg gosync.WaitGroup
		start := make(chan struct{})
		wg.Add(3)
		go func() {
			defer wg.Done()
			<-start
			_ = r.Background(context.Background())
		}()
		go func() {
			defer wg.Done()
			<-start
			ch, stop := r.Subscribe()
			defer stop()
			for range ch {
			}
		}()
		go func() {
			defer wg.Done()
			<-start
			r.Close()
		}()
		close(start)
		wg.Wait()
		r.Close()
	}
}
