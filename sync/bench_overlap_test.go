package sync

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// BenchmarkPipelinedPush is issue 17's push as one pipelining device
// makes it, at the engine on Badger: 13 pushes of 800 new records × 30
// fields (pushRecordsChanges; about the e2e BenchmarkSDKPushPull's 10,000
// records in 14 round trips), at most two in flight, each prepared in its
// own goroutine and let through once the one before is taken by the
// committer (PreparedSync.Ordered, as the server's hold does), serially
// committed and overlapped (OverlapCommits). One iteration is the 13
// pushes. commit-wait-s is the time the committer waited for commits to
// be durable; cpu-s the process's CPU time.
func BenchmarkPipelinedPush(b *testing.B) {
	for _, mode := range []string{"serial", "overlap"} {
		b.Run(mode, func(b *testing.B) {
			var recs, wait, cpu float64
			var overlapped int64
			for range b.N {
				b.StopTimer()
				e, err := Open(context.Background(), Options{Store: benchKV(b, b.TempDir()), Logger: quietLogger(), OverlapCommits: mode == "overlap"})
				if err != nil {
					b.Fatal(err)
				}
				c := Caller{User: "bench", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
				clock := crdt.MakeTimestamp(time.Now().UnixMilli(), 0)
				var seq uint64
				const pushes = 13
				all := make([][]api.Change, pushes)
				for i := range all {
					all[i] = pushRecordsChanges(c.Replica, &seq, &clock, i, nil)
				}
				cpu0 := cpuSeconds()
				b.StartTimer()
				start := time.Now()
				ordered := make([]chan struct{}, pushes)
				done := make([]chan error, pushes)
				for i := range all {
					ordered[i], done[i] = make(chan struct{}), make(chan error, 1)
				}
				for i := range all {
					if i >= 2 {
						if err := <-done[i-2]; err != nil { // at most two in flight
							b.Fatal(err)
						}
					}
					go func(i int) {
						p := e.PrepareSync(c, &api.SyncRequest{Protocol: api.ProtocolVersion, Replica: c.Replica, PushOnly: true, Changes: all[i]})
						ch := ordered[i]
						p.Ordered = func() { close(ch) }
						if i > 0 {
							<-ordered[i-1] // the server's hold
						}
						resp, err := e.SyncPrepared(context.Background(), p)
						if err == nil && resp.Results[len(resp.Results)-1].Status != api.ChangeApplied {
							err = errStatus(resp.Results[len(resp.Results)-1])
						}
						done[i] <- err
					}(i)
				}
				for i := pushes - 2; i < pushes; i++ {
					if err := <-done[i]; err != nil {
						b.Fatal(err)
					}
				}
				el := time.Since(start)
				b.StopTimer()
				recs += float64(pushes*pushChPerPush*pushRecPerCh) / el.Seconds()
				wait += time.Duration(e.commitWait.Load()).Seconds()
				cpu += cpuSeconds() - cpu0
				overlapped += e.overlapped.Load()
				e.Close()
				b.StartTimer()
			}
			n := float64(b.N)
			b.ReportMetric(recs/n, "rec/s")
			b.ReportMetric(wait/n, "commit-wait-s")
			b.ReportMetric(cpu/n, "cpu-s")
			b.ReportMetric(float64(overlapped)/n, "overlapped")
		})
	}
}

type errStatus api.ChangeResult

func (e errStatus) Error() string { return "change not applied: " + string(e.Code) }

// cpuSeconds is the process's user and system CPU time so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
