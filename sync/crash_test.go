package sync

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	gosync "sync"
	"syscall"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

const crashDirEnv = "DOORSTEP_SYNC_CRASH_DIR"

// crashChange is the change a crash-test pusher sends as seq: one record
// per change with ten fields.
func crashChange(replica crdt.ReplicaID, seq uint64, base crdt.Timestamp) api.Change {
	id := fmt.Sprintf("%s-%d", replica, seq)
	ch := api.Change{Seq: seq}
	for k := range 10 {
		ch.Ops = append(ch.Ops, crdt.Op{
			ID:   crdt.OpID{Time: base + crdt.Timestamp(seq*16+uint64(k)), Replica: replica},
			Team: "wigan", Collection: "crash", Record: id, Field: fmt.Sprintf("f%d", k),
			Kind: crdt.KindWrite, Value: crdt.MustValue(seq),
		})
	}
	return ch
}

// TestCrashChild is the child process of TestCrashKill: it pushes changes
// from several devices until it is killed, printing every acknowledged
// change. It does nothing in a normal test run.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("child of TestCrashKill only")
	}
	e, err := Open(context.Background(), Options{Store: badgerKV(t, dir), Logger: quietLogger(), OverlapCommits: true})
	if err != nil {
		fmt.Printf("open-error %v\n", err)
		os.Exit(3)
	}
	var mu gosync.Mutex
	fmt.Println("ready")
	var wg gosync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := Caller{User: "crash", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
			base := crdt.MakeTimestamp(time.Now().UnixMilli(), 0)
			for seq := uint64(1); ; seq++ {
				res, err := e.Push(context.Background(), c, []api.Change{crashChange(c.Replica, seq, base)})
				if err != nil || res[0].Status != api.ChangeApplied || len(res[0].Ops) != 0 {
					fmt.Printf("push-error %v %+v\n", err, res)
					os.Exit(4)
				}
				mu.Lock()
				fmt.Printf("ack %s %d %d\n", c.Replica, seq, base)
				if seq%20 == 0 {
					// Groups built while the commit ahead was in flight
					// (overlap.go): kills land in overlapped commits.
					fmt.Printf("overlapped %d\n", e.overlapped.Load())
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

type crashAck struct {
	replica crdt.ReplicaID
	seq     uint64
	base    crdt.Timestamp
}

// TestCrashKill runs a child process that pushes changes and SIGKILLs it at
// a random moment, then reopens the store and checks that every change the
// child acknowledged is there exactly once; several rounds on one store.
func TestCrashKill(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	rounds := 5
	if *longFlag {
		rounds = 40
	}
	dir := t.TempDir()
	var acks []crashAck
	overlapped := 0
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		// Kill at a random moment after the store opened: sometimes at once,
		// usually mid-stream.
		delay := time.Duration(rng.IntN(300)) * time.Millisecond
		var killTimer *time.Timer
		// A child that never becomes ready is killed too (and fails below).
		stuck := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
		n := 0
		for line := range lines {
			f := strings.Fields(line)
			switch {
			case len(f) == 1 && f[0] == "ready":
				killTimer = time.AfterFunc(delay, func() { cmd.Process.Signal(syscall.SIGKILL) })
			case len(f) == 4 && f[0] == "ack":
				r, err := crdt.ParseReplicaID(f[1])
				if err != nil {
					t.Fatal(err)
				}
				seq, _ := strconv.ParseUint(f[2], 10, 64)
				base, _ := strconv.ParseUint(f[3], 10, 64)
				acks = append(acks, crashAck{r, seq, crdt.Timestamp(base)})
				n++
			case len(f) == 2 && f[0] == "overlapped":
				n, _ := strconv.Atoi(f[1])
				overlapped = max(overlapped, n)
			case len(f) > 0 && (f[0] == "open-error" || f[0] == "push-error"):
				cmd.Process.Kill()
				t.Fatalf("round %d: child: %s", round, line)
			}
		}
		stuck.Stop()
		if killTimer != nil {
			killTimer.Stop()
		} else {
			t.Fatalf("round %d: child never opened the store", round)
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child did not die by SIGKILL: %v", round, err)
		}
		verifyCrashAcks(t, dir, acks)
		t.Logf("round %d: killed after %s, %d changes acknowledged (%d in all)", round, delay, n, len(acks))
	}
	if overlapped == 0 && len(acks) > 200 {
		t.Errorf("no child built a group while a commit was in flight (%d changes acknowledged): the kills tested serial commits only", len(acks))
	}
	t.Logf("up to %d groups overlapped in one child", overlapped)
}

// verifyCrashAcks reopens the store and checks every acknowledged change:
// its record is there with all ten fields, and pushing it again is a
// duplicate (the high-water mark survived too).
func verifyCrashAcks(t *testing.T, dir string, acks []crashAck) {
	t.Helper()
	e, err := Open(context.Background(), Options{Store: badgerKV(t, dir), Logger: quietLogger()})
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer e.Close()
	for _, a := range acks {
		c := Caller{User: "crash", Replica: a.replica, Teams: []string{"wigan"}}
		ref := api.RecordRef{Team: "wigan", Collection: "crash", ID: fmt.Sprintf("%s-%d", a.replica, a.seq)}
		rec, err := e.Record(context.Background(), c, ref)
		if err != nil {
			t.Fatalf("acknowledged change %s seq %d lost: %v", a.replica, a.seq, err)
		}
		if len(rec.Fields) != 10 {
			t.Fatalf("acknowledged change %s seq %d: %d fields, want 10", a.replica, a.seq, len(rec.Fields))
		}
		res, err := e.Push(context.Background(), c, []api.Change{crashChange(a.replica, a.seq, a.base)})
		if err != nil || res[0].Status != api.ChangeDuplicate {
			t.Fatalf("re-push of acknowledged %s seq %d: %+v %v", a.replica, a.seq, res, err)
		}
	}
	// Everything stored still decodes: a full bootstrap of the team.
	d := newDevice("check", time.Now, "wigan")
	d.syncAll(t, e)
	if len(d.recs) < len(acks) {
		t.Fatalf("bootstrap found %d records, %d acknowledged", len(d.recs), len(acks))
	}
}
