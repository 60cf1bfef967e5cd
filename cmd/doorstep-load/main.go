// Command doorstep-load measures sync round trips over loopback against a
// real Doorstep server (in process, on a temporary Badger directory, with
// durable writes): N concurrent simulated devices each log in, bootstrap,
// then repeatedly push one change of ~500 field ops and pull one page of
// up to 2,000 items, as a tablet reconnecting after a day's work would.
//
//	go run ./cmd/doorstep-load [-devices 1,16,256] [-duration 5s] [-ops 500] [-team-size 8]
//
// It prints, per concurrency level, round trips per second, pushed ops per
// second, p50/p99/max latency, and bytes on the wire per pushed op.
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
	devices := flag.String("devices", "1,16,256", "comma-separated concurrency levels")
	duration := flag.Duration("duration", 5*time.Second, "measured time per level")
	ops := flag.Int("ops", 500, "field ops pushed per round trip")
	pull := flag.Int("pull", 2000, "pull page limit per round trip")
	teamSize := flag.Int("team-size", 8, "devices per team (pulls see their team's pushes)")
	dir := flag.String("data", "", "data directory (default: a temporary directory, removed afterwards)")
	maxSyncs := flag.Int("max-syncs", 0, "server's MaxConcurrentSyncs (0: the server default)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "doorstep-load:", err)
			os.Exit(1)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "doorstep-load:", err)
			os.Exit(1)
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
	fmt.Printf("doorstep-load: %d ops per push, pull limit %d, %d devices per team, %s per level, GOMAXPROCS=%d\n\n",
		*ops, *pull, *teamSize, *duration, gomaxprocs())
	fmt.Println(header)
	for _, n := range levels {
		r, err := Run(ctx, Config{Devices: n, Duration: *duration, Ops: *ops, PullLimit: *pull, TeamSize: *teamSize, Dir: *dir, MaxSyncs: *maxSyncs})
		if err != nil {
			fmt.Fprintln(os.Stderr, "doorstep-load:", err)
			return
		}
		fmt.Println(r.Row())
	}
}
