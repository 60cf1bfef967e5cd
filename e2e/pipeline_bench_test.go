package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/server"
)

// BenchmarkSDKPushPullPipelined is BenchmarkSDKPushPull's push and pull
// (10,000 records of 30 fields, written untimed first; -short 1,000), one
// request at a time (Options.Serial, as before pipelining) against
// pipelined (the default; docs/PROTOCOL.md "Pipelined pushes"), in the
// same binary, on loopback and over a link of 25 ms each way (Toxiproxy's
// latency toxic, no bandwidth limit: a good mobile or a far server), where
// a serial sync waits a round trip per request.
//
//	go test -run '^$' -bench '^BenchmarkSDKPushPullPipelined$' -benchtime 1x ./e2e
func BenchmarkSDKPushPullPipelined(b *testing.B) {
	for _, link := range []int{0, 25} {
		for _, serial := range []bool{true, false} {
			name := fmt.Sprintf("link=%dms/serial=%v", link, serial)
			b.Run(name, func(b *testing.B) { benchPushPullPipelined(b, link, serial) })
		}
	}
}

func benchPushPullPipelined(b *testing.B, linkMS int, serial bool) {
	records := 10_000
	if testing.Short() {
		records = 1_000
	}
	const batch = 100
	ctx := context.Background()
	sc := pushPullSchema(b)
	value := strings.Repeat("v", pushPullValue-6)
	var push, pull time.Duration
	var pushCPU, pullCPU time.Duration
	var pushRounds, pullRounds int
	for b.Loop() {
		b.StopTimer()
		e := newSDKEnvChecked(b, nil, false, func(c *server.Config) { c.Schema, c.PageBytes, c.DeviceRate = sc, 0, -1 })
		if linkMS > 0 {
			srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
			p := toxiproxy.NewProxy(srv, "doorstep", "127.0.0.1:0", strings.TrimPrefix(e.http.URL, "http://"))
			if err := p.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(p.Stop)
			for _, stream := range []string{"upstream", "downstream"} {
				toxic := fmt.Sprintf(`{"type": "latency", "stream": %q, "attributes": {"latency": %d}}`, stream, linkMS)
				if _, err := p.Toxics.AddToxicJson(strings.NewReader(toxic)); err != nil {
					b.Fatal(err)
				}
			}
			e.url = "http://" + p.Listen
		}
		mod := func(o *client.Options) { o.Validator, o.PullLimit, o.Serial = sc, 0, serial }
		ann := e.device("ann", "", mod)
		bea := e.device("bea", "", mod)
		for n := 0; n < records; n += batch {
			err := ann.Batch(ctx, func(bt *client.Batch) error {
				for r := n; r < n+batch; r++ {
					fields := make(map[string]any, pushPullFields)
					v := fmt.Sprintf("%06d", r) + value
					for f := range pushPullFields {
						fields[fmt.Sprintf("f%02d", f)] = v
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
		b.StartTimer()
		start, cpu := time.Now(), processCPU()
		res, err := ann.Sync(ctx)
		if err != nil {
			b.Fatal(err)
		}
		push += time.Since(start)
		pushCPU += processCPU() - cpu
		pushRounds += res.Rounds
		if res.PushedOps != records*pushPullFields {
			b.Fatalf("pushed %d ops, want %d", res.PushedOps, records*pushPullFields)
		}
		start, cpu = time.Now(), processCPU()
		res, err = bea.Sync(ctx)
		if err != nil {
			b.Fatal(err)
		}
		pull += time.Since(start)
		pullCPU += processCPU() - cpu
		pullRounds += res.Rounds
		if got := res.Snapshot + res.PulledOps/pushPullFields; got < records {
			b.Fatalf("pulled %d snapshot records and %d ops, want %d records", res.Snapshot, res.PulledOps, records)
		}
	}
	n := float64(b.N)
	rec := float64(records) * n
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(rec/push.Seconds(), "push-rec/s")
	b.ReportMetric(rec/pull.Seconds(), "pull-rec/s")
	b.ReportMetric(pushCPU.Seconds()/n, "push-cpu-s")
	b.ReportMetric(pullCPU.Seconds()/n, "pull-cpu-s")
	b.ReportMetric(float64(pushRounds)/n, "push-rounds")
	b.ReportMetric(float64(pullRounds)/n, "pull-rounds")
}
