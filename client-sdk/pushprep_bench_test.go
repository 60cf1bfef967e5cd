package client

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/doorstep-health/doorstep/schema"
)

// BenchmarkPushPrep is the device's own work in issue 17's push of
// 10,000 records of 30 fields (e2e.BenchmarkSDKPushPull), without a
// server: seal the outbox, load each request's changes, pack them and
// compress the packed blocks in zstd, request after request, as Sync does
// (the reply's handling not included). The records are written before
// the timed part, in durable batches of 100.
//
//	go test -run '^$' -bench '^BenchmarkPushPrep$' -benchtime 3x ./client-sdk
func BenchmarkPushPrep(b *testing.B) {
	const records, perBatch, fields = 10_000, 100, 30
	var f strings.Builder
	for i := range fields {
		if i > 0 {
			f.WriteString(",")
		}
		fmt.Fprintf(&f, `{"name": "f%02d", "type": "string", "max_length": 100}`, i)
	}
	sc, err := schema.Default().Extend([]byte(fmt.Sprintf(`{"version": %d, "name": "bench", "collections": [{"name": "bench_rows", "fields": [%s]}]}`,
		schema.Default().Version()+1, f.String())))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var cpu, total int64
	for b.Loop() {
		b.StopTimer()
		r, err := Open(ctx, Options{Dir: b.TempDir(), EncryptionKey: testKey, Validator: sc})
		if err != nil {
			b.Fatal(err)
		}
		for n := 0; n < records; n += perBatch {
			err := r.Batch(ctx, func(bt *Batch) error {
				for i := n; i < n+perBatch; i++ {
					row := make(map[string]any, fields)
					for k := range fields {
						row[fmt.Sprintf("f%02d", k)] = fmt.Sprintf("%06d%s", i, strings.Repeat("v", 14))
					}
					if _, err := bt.Create(Ref{Team: "wigan", Collection: "bench_rows"}, row); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		r.readsPacked.Store(true)
		r.zstdRequests.Store(true)
		cpu0 := cpuTime()
		b.StartTimer()
		var from uint64
		ops := 0
		for {
			if err := r.sealFrom(from); err != nil {
				b.Fatal(err)
			}
			changes, err := r.loadChanges(from, r.RequestSizes().MaxChangesPerRequest)
			if err != nil {
				b.Fatal(err)
			}
			if len(changes) == 0 {
				break
			}
			blocks, ok, err := packWire(changes)
			if err != nil {
				b.Fatal(err)
			}
			if !ok {
				b.Fatal("not packed")
			}
			n := 0
			for _, blk := range blocks {
				n += len(blk)
			}
			body := make([]byte, 0, n)
			for _, blk := range blocks {
				body = append(body, blk...)
			}
			if _, _, err := compressBody(body, true); err != nil {
				b.Fatal(err)
			}
			for _, c := range changes {
				ops += c.n
			}
			from = changes[len(changes)-1].Seq + 1
		}
		b.StopTimer()
		cpu += int64(cpuTime() - cpu0)
		total += int64(ops)
		if ops != records*fields {
			b.Fatalf("%d ops prepared, want %d", ops, records*fields)
		}
		r.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu)/1e9/float64(b.N), "cpu-s")
	b.ReportMetric(float64(total)/float64(b.N), "ops")
}
