// Command doorstep-load measures sync over loopback against a real
// Doorstep server (in process, on a temporary Badger directory, with
// durable writes and the full middleware stack). Simulated devices log in,
// bootstrap, then push changes of field ops and pull their team's log, as
// tablets reconnecting after a day's work would.
//
//	go run ./cmd/doorstep-load                  # the suite below, about two minutes
//	go run ./cmd/doorstep-load -mode sync  -devices 1,16,256 [-duration 5s] [-ops 500] [-team-size 8] [-think 0] [-rounds 0]
//	go run ./cmd/doorstep-load -mode push  -devices 64       # ingest only, next to Badger's raw rate
//	go run ./cmd/doorstep-load -mode grow  -duration 2m      # history grows; heap and RSS sampled
//	go run ./cmd/doorstep-load -mode backup [-people 5000 -fields 200]  # backup, restore, cp -a, erasure scrub
//
// Modes:
//
//   - sync: each device loops push (one change of -ops ops) + pull (one
//     page of up to -pull changes of its team), pausing uniformly in
//     [0, 2×think] between round trips, for -duration or -rounds round
//     trips. Teams of -team-size devices never share records.
//   - push: every device is alone in its team, so pulls carry nothing and
//     the run measures durable ingest through HTTP; then Badger's own
//     durable batched write runs on the same disk for the same time with
//     min(devices, 64) writers, and the ratio is printed.
//   - grow: push mode with every push writing new records, for -duration,
//     sampling Go heap in use and process RSS every -sample.
//   - bootstrap: a team of -people records of -fields fields is written
//     through the engine, then a new device's bootstrap over HTTP is timed.
//   - all (default): wire sizes, push at 1 and 64 devices (overwriting and
//     new records) vs Badger raw, sync at
//     1, 16 and 256 devices, a storm of 1,000 devices reconnecting at once
//     (one round trip each), 1,000 devices syncing steadily (50-op pushes,
//     a pause of ~10 s between syncs), a bootstrap of 5,000 people × 200
//     fields, and a 20 s grow.
//
// Every run ends by checking on the server that every acknowledged write
// is present (except grow). All loops are bounded by -duration and
// -rounds; the tool exits by itself.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

func main() {
	mode := flag.String("mode", "all", "sync, push, grow, bootstrap, backup or all")
	devices := flag.String("devices", "1,16,256", "comma-separated concurrency levels (sync, push)")
	duration := flag.Duration("duration", 5*time.Second, "measured time per level (a hard cap)")
	rounds := flag.Int("rounds", 0, "round trips per device (0: until -duration ends)")
	ops := flag.Int("ops", 500, "field ops pushed per round trip")
	pull := flag.Int("pull", 2000, "pull page limit per round trip")
	teamSize := flag.Int("team-size", 8, "devices per team (sync)")
	think := flag.Duration("think", 0, "mean pause between a device's round trips (sync)")
	dir := flag.String("data", "", "data directory (default: a temporary directory, removed afterwards)")
	maxSyncs := flag.Int("max-syncs", 0, "server's MaxConcurrentSyncs (0: the server default)")
	sample := flag.Duration("sample", 10*time.Second, "memory sampling interval (grow)")
	fresh := flag.Bool("fresh", false, "every push writes new records instead of overwriting the device's same records (sync, push)")
	verify := flag.Bool("verify", true, "check every acknowledged write on the server after each run")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	memprofile := flag.String("memprofile", "", "write a heap profile at the end of each measured phase, before the server stops, to this file")
	people := flag.Int("people", 5000, "people records in the team (bootstrap)")
	fieldsPer := flag.Int("fields", 200, "fields per person (bootstrap)")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fail(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var levels []int
	for _, s := range strings.Split(*devices, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "doorstep-load: bad -devices %q\n", *devices)
			os.Exit(2)
		}
		levels = append(levels, n)
	}
	base := Config{Duration: *duration, Rounds: *rounds, Ops: *ops, PullLimit: *pull, TeamSize: *teamSize, Think: *think,
		Dir: *dir, MaxSyncs: *maxSyncs, Fresh: *fresh, Verify: *verify, HeapProfile: *memprofile, Sample: *sample, Seed: uint64(time.Now().UnixNano())}
	fmt.Printf("doorstep-load: mode %s, GOMAXPROCS=%d, seed %d\n\n", *mode, gomaxprocs(), base.Seed)
	var err error
	switch *mode {
	case "sync":
		err = runSync(ctx, base, levels)
	case "push":
		err = runPush(ctx, base, levels)
	case "grow":
		err = runGrow(ctx, base)
	case "bootstrap":
		err = runBootstrap(ctx, base.Dir, *people, *fieldsPer)
	case "backup":
		err = runBackup(ctx, base.Dir, *people, *fieldsPer)
	case "all":
		err = runAll(ctx, base)
	default:
		err = fmt.Errorf("unknown -mode %q", *mode)
	}
	if err != nil {
		pprof.StopCPUProfile()
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "doorstep-load:", err)
	os.Exit(1)
}

func runSync(ctx context.Context, cfg Config, levels []int) error {
	fmt.Printf("sync: %d ops per push, pull limit %d, %d devices per team, think %s, rounds %d, %s per level\n\n",
		cfg.Ops, cfg.PullLimit, cfg.TeamSize, cfg.Think, cfg.Rounds, cfg.Duration)
	fmt.Println(header)
	for _, n := range levels {
		cfg.Devices = n
		r, err := Run(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Println(r.Row())
		if r.Missing > 0 {
			return fmt.Errorf("%d acknowledged writes missing on the server", r.Missing)
		}
	}
	fmt.Println()
	return nil
}

const pushHeader = "| devices | HTTP field ops/s | round trips/s | p50 | p99 | errors | verified | Badger raw writers | Badger raw values/s | raw ÷ HTTP |\n|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"

func runPush(ctx context.Context, cfg Config, levels []int) error {
	cfg.TeamSize, cfg.Think = 1, 0
	size := typicalOpSize()
	fmt.Printf("push: %d ops per push, each device alone in its team (pulls carry nothing), %s per level; Badger raw: 100 values of %d bytes per transaction\n\n",
		cfg.Ops, cfg.Duration, size)
	fmt.Println(pushHeader)
	for _, n := range levels {
		cfg.Devices = n
		r, err := Run(ctx, cfg)
		if err != nil {
			return err
		}
		writers := min(n, 64)
		raw, err := RawBadger(ctx, cfg.Dir, writers, 100, size, cfg.Duration)
		if err != nil {
			return err
		}
		httpRate := float64(r.OpsPushed) / r.Elapsed.Seconds()
		ver := "not checked"
		if r.Verified >= 0 {
			ver = fmt.Sprintf("%d writes, %d missing", r.Verified, r.Missing)
		}
		fmt.Printf("| %d | %.0f | %.1f | %s | %s | %d | %s | %d | %.0f | %.2f |\n",
			n, httpRate, float64(r.RoundTrips)/r.Elapsed.Seconds(), r.P50.Round(100*time.Microsecond), r.P99.Round(100*time.Microsecond),
			r.Errors, ver, writers, raw, raw/httpRate)
		if r.Missing > 0 {
			return fmt.Errorf("%d acknowledged writes missing on the server", r.Missing)
		}
	}
	fmt.Println()
	return nil
}

func runGrow(ctx context.Context, cfg Config) error {
	cfg.TeamSize, cfg.Think, cfg.Fresh, cfg.Verify = 1, 0, true, false
	cfg.Devices = 32
	fmt.Printf("grow: %d devices pushing %d ops of new records each round trip for %s; memory sampled every %s\n\n",
		cfg.Devices, cfg.Ops, cfg.Duration, cfg.Sample)
	r, err := Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Println("| elapsed | ops stored | Go heap in use | live heap after GC | process RSS | RSS less file pages |\n|---:|---:|---:|---:|---:|---:|")
	for _, s := range r.Memory {
		fmt.Printf("| %s | %d | %.0f MiB | %.0f MiB | %.0f MiB | %.0f MiB |\n", s.At.Round(time.Second), s.OpsStored,
			float64(s.HeapInuse)/(1<<20), float64(s.HeapLive)/(1<<20), float64(s.RSS)/(1<<20), float64(s.RSSAnon)/(1<<20))
	}
	fmt.Printf("\n%.0f field ops/s over the run, %d errors\n\n", float64(r.OpsPushed)/r.Elapsed.Seconds(), r.Errors)
	return nil
}

func runAll(ctx context.Context, base Config) error {
	mp, mpGz, js, jsGz, err := WireSizes(base.Ops)
	if err != nil {
		return err
	}
	fmt.Printf("wire: bytes per field op in a %d-op push: msgpack %.1f, msgpack+gzip %.1f, JSON %.1f, JSON+gzip %.1f\n\n", base.Ops, mp, mpGz, js, jsGz)
	fmt.Println("push, overwriting: every push rewrites the device's same 50 records (each field's state keeps the IDs it overwrote, so records grow)")
	if err := runPush(ctx, base, []int{1, 64}); err != nil {
		return err
	}
	fresh := base
	fresh.Fresh = true
	fmt.Println("push, new records: every push writes 50 new records, like a day's new visits")
	if err := runPush(ctx, fresh, []int{1, 64}); err != nil {
		return err
	}
	if err := runSync(ctx, base, []int{1, 16, 256}); err != nil {
		return err
	}
	storm := base
	storm.Rounds, storm.Duration = 1, 2*time.Minute
	fmt.Println("storm: 1,000 devices reconnect at once, one round trip each:")
	if err := runSync(ctx, storm, []int{1000}); err != nil {
		return err
	}
	steady := base
	steady.Ops, steady.Think, steady.Duration = 50, 10*time.Second, 30*time.Second
	fmt.Println("steady: 1,000 devices syncing through the day:")
	if err := runSync(ctx, steady, []int{1000}); err != nil {
		return err
	}
	if err := runBootstrap(ctx, base.Dir, 5000, 200); err != nil {
		return err
	}
	grow := base
	grow.Duration, grow.Sample = 20*time.Second, 5*time.Second
	return runGrow(ctx, grow)
}

func runBootstrap(ctx context.Context, dir string, people, fields int) error {
	fmt.Printf("bootstrap: a new device joins a team of %d people with %d fields each, over HTTP\n\n", people, fields)
	r, err := Bootstrap(ctx, dir, people, fields)
	if err != nil {
		return err
	}
	fmt.Println("| people | fields each | ops stored | bootstrap time | pages | records | bytes received (gzip) | team built in |\n|---:|---:|---:|---:|---:|---:|---:|---:|")
	fmt.Printf("| %d | %d | %d | %s | %d | %d | %d | %s |\n\n", r.People, r.Fields, r.People*r.Fields,
		r.Elapsed.Round(time.Millisecond), r.Pages, r.Records, r.BytesDown, r.Built.Round(time.Millisecond))
	return nil
}
