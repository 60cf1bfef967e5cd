package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/schema"
	"github.com/doorstep-health/doorstep/server"
)

// pushPullFields is the number of fields of each benchmark record, and
// pushPullValue the length of each field's value.
const (
	pushPullFields = 30
	pushPullValue  = 20
)

// pushPullSchema is the default schema plus a collection of 30 plain
// string fields, the shape of issue 17's push-then-pull workload.
func pushPullSchema(tb testing.TB) *schema.Schema {
	tb.Helper()
	var f strings.Builder
	for i := range pushPullFields {
		if i > 0 {
			f.WriteString(",")
		}
		fmt.Fprintf(&f, `{"name": "f%02d", "type": "string", "max_length": 100}`, i)
	}
	ext := fmt.Sprintf(`{"version": %d, "name": "bench", "collections": [{"name": "bench_rows", "fields": [%s]}]}`,
		schema.Default().Version()+1, f.String())
	s, err := schema.Default().Extend([]byte(ext))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// BenchmarkSDKPushPull is issue 17's push-then-pull workload, the one the
// PouchDB script in bench/pouchdb runs: one device writes 10,000 records
// of 30 fields of 20 bytes in durable batches of 100 records, pushes them
// to a fresh server on loopback, then a fresh second device (another user
// of the same team) pulls them all. Each iteration builds a fresh server
// and devices; only the three phases are timed, and each is reported as
// records per second. -short writes 1,000 records.
//
//	go test -run '^$' -bench '^BenchmarkSDKPushPull$' -benchtime 1x ./e2e
//
// The benchmark measures the product: its server runs without the e2e
// OpenAPI checker (openAPIChecked), which every e2e test keeps. The
// checker copies each reply and inflates it again, in the same process,
// inside the timed phases. DOORSTEP_BENCH_OPENAPI=1 puts it back (to see
// what it costs: docs/benchmarks.md "Issue 17, third pass: i17-wire").
//
// With DOORSTEP_BENCH_PROFILE=dir (and no -cpuprofile), the write, push
// and pull phases each write a CPU profile of the whole process (device and
// server) to dir/write.prof, dir/push.prof and dir/pull.prof.
func BenchmarkSDKPushPull(b *testing.B) {
	records := 10_000
	if testing.Short() {
		records = 1_000
	}
	const batch = 100
	ctx := context.Background()
	sc := pushPullSchema(b)
	value := strings.Repeat("v", pushPullValue-6)
	names := make([]string, pushPullFields) // "f00" … "f29", as the PouchDB script names them
	for f := range names {
		names[f] = fmt.Sprintf("f%02d", f)
	}
	checked := os.Getenv("DOORSTEP_BENCH_OPENAPI") == "1"
	var write, push, pull time.Duration
	var writeCPU, pushCPU, pullCPU time.Duration // the process's CPU time in each phase
	var pushRounds, pullRounds int
	var sent, received int64
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		// The server's and the SDK's default page sizes and no rate
		// limit, not the small pages the SDK tests run with.
		e := newSDKEnvChecked(b, nil, checked, func(c *server.Config) { c.Schema, c.PageBytes, c.DeviceRate = sc, 0, -1 })
		mod := func(o *client.Options) { o.Validator, o.PullLimit = sc, 0 }
		ann := e.device("ann", "", mod)
		bea := e.device("bea", "", mod)
		b.StartTimer() // the three phases are timed, so that b.Loop stops after one
		stop := phaseProfile(b, "write")
		start, cpu := time.Now(), processCPU()
		for n := 0; n < records; n += batch {
			err := ann.Batch(ctx, func(bt *client.Batch) error {
				for r := n; r < n+batch; r++ {
					fields := make(map[string]any, pushPullFields)
					v := fmt.Sprintf("%06d", r) + value
					for _, name := range names {
						fields[name] = v
					}
					if _, err := bt.Create(client.Ref{Team: sdkTeam, Collection: "bench_rows"}, fields); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		write += time.Since(start)
		writeCPU += processCPU() - cpu
		stop()
		stop = phaseProfile(b, "push")
		start, cpu = time.Now(), processCPU()
		res, err := ann.Sync(ctx)
		if err != nil {
			b.Fatal(err)
		}
		push += time.Since(start)
		pushCPU += processCPU() - cpu
		stop()
		pushRounds += res.Rounds
		sent += res.BytesSent
		if res.PushedOps != records*pushPullFields {
			b.Fatalf("pushed %d ops, want %d", res.PushedOps, records*pushPullFields)
		}
		stop = phaseProfile(b, "pull")
		start, cpu = time.Now(), processCPU()
		res, err = bea.Sync(ctx)
		if err != nil {
			b.Fatal(err)
		}
		pull += time.Since(start)
		pullCPU += processCPU() - cpu
		b.StopTimer()
		stop()
		pullRounds += res.Rounds
		received += res.BytesReceived
		// A fresh device bootstraps: the records come as snapshot
		// states, not as log ops.
		if got := res.Snapshot + res.PulledOps/pushPullFields; got < records {
			b.Fatalf("pulled %d snapshot records and %d ops, want %d records", res.Snapshot, res.PulledOps, records)
		}
		b.StartTimer()
	}
	n := float64(b.N)
	rec := float64(records) * n
	b.ReportMetric(rec/write.Seconds(), "write-rec/s")
	b.ReportMetric(rec/push.Seconds(), "push-rec/s")
	b.ReportMetric(rec/pull.Seconds(), "pull-rec/s")
	// CPU seconds of the whole process (device, server, HTTP) per phase:
	// steadier than wall time on a shared machine.
	b.ReportMetric(writeCPU.Seconds()/n, "write-cpu-s")
	b.ReportMetric(pushCPU.Seconds()/n, "push-cpu-s")
	b.ReportMetric(pullCPU.Seconds()/n, "pull-cpu-s")
	b.ReportMetric(float64(pushRounds)/n, "push-rounds")
	b.ReportMetric(float64(pullRounds)/n, "pull-rounds")
	b.ReportMetric(float64(sent)/(rec*pushPullFields), "wire-B/pushed-op")
	// Per field of the pulled records (a snapshot record carries one
	// value per field).
	b.ReportMetric(float64(received)/(rec*pushPullFields), "wire-B/pulled-field")
}

// processCPU returns the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// phaseProfile starts a CPU profile of one benchmark phase when
// DOORSTEP_BENCH_PROFILE names a directory, and returns its stop.
func phaseProfile(tb testing.TB, phase string) func() {
	dir := os.Getenv("DOORSTEP_BENCH_PROFILE")
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, phase+".prof"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		tb.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			tb.Error(err)
		}
	}
}
