package e2e

import (
	"context"
	"fmt"
	"testing"

	client "github.com/doorstep-health/doorstep/client-sdk"
)

// BenchmarkSDKReconnect measures a typical reconnect from the tablet's side,
// through the real server on loopback: a day's work of 500 field ops
// pushed, while 2,000 ops from a colleague are pulled, all in one Sync
// (several round trips). Writing the ops is not timed. Reported: wall time
// per reconnect, and wire bytes per pushed and per pulled op (the pull
// includes the device's own ops coming back from the server's log; bodies
// over 16 KiB travel gzipped, and this benchmark's text is repetitive, so
// the per-op figures are a lower bound).
//
//	go test -run '^$' -bench SDKReconnect -benchtime 10x ./e2e
func BenchmarkSDKReconnect(b *testing.B) {
	ctx := context.Background()
	e := newSDKEnv(b, nil)
	ann := e.device("ann", "", nil)
	bea := e.device("bea", "", nil)
	refs := sdkSeedPeople(b, bea, 200)
	if _, err := bea.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := ann.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	var sent, received, pushed, pulled int64
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		// Ann's day: 50 visits, 10 field ops each, one batch per visit.
		for v := range 50 {
			ref := refs[(i*50+v)%len(refs)]
			err := ann.Batch(ctx, func(bt *client.Batch) error {
				for k := range 5 {
					if err := bt.Append(ref, "case_notes", fmt.Sprintf("day %d visit %d note %d: discussed mobility and meals", i, v, k)); err != nil {
						return err
					}
				}
				if err := bt.Set(ref, "phone", fmt.Sprintf("01942 %06d", i*50+v)); err != nil {
					return err
				}
				if err := bt.Set(ref, "cfs", 1+(i+v)%9); err != nil {
					return err
				}
				if err := bt.Add(ref, "tags", fmt.Sprint("tag", v%7)); err != nil {
					return err
				}
				return bt.Set(ref, "lives_alone", v%2 == 0)
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		// Bea's 2,000 ops, already on the server.
		for v := range 200 {
			ref := refs[v]
			err := bea.Batch(ctx, func(bt *client.Batch) error {
				for k := range 8 {
					if err := bt.Append(ref, "case_notes", fmt.Sprintf("bea day %d note %d", i, k)); err != nil {
						return err
					}
				}
				if err := bt.Set(ref, "postcode", "WN1 1AA"); err != nil {
					return err
				}
				return bt.Set(ref, "interpreter_required", v%3 == 0)
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		if _, err := bea.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := ann.Sync(ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		sent += res.BytesSent
		received += res.BytesReceived
		pushed += int64(res.PushedOps)
		pulled += int64(res.PulledOps)
		b.StartTimer()
	}
	if pushed > 0 {
		b.ReportMetric(float64(sent)/float64(pushed), "wire-B/pushed-op")
		b.ReportMetric(float64(received)/float64(pulled), "wire-B/pulled-op")
	}
}
