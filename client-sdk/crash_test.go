package client

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const crashDirEnv = "DOORSTEP_SDK_CRASH_DIR"

// TestCrashChild is the child process of TestWritesSurviveSIGKILL: it writes
// records as fast as it can, one by one and in batches of 600, sealing
// before every other batch, and reports each write after it returned. It does nothing when run normally.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("child of TestWritesSurviveSIGKILL")
	}
	if os.Getenv(crashOlderEnv) != "" {
		// The Badger options of builds before issue 17's fourth pass.
		deviceMemTable, deviceValueThreshold = 16<<20, 32<<10
	}
	ctx := context.Background()
	r, err := Open(ctx, Options{Dir: dir, EncryptionKey: testKey, NoValidation: true})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for i := 0; ; i++ {
		if i%4 == 1 {
			// Every other big batch follows a seal, so that nothing
			// unsealed is before it and it is sealed as it is written
			// (sealAtWrite); the others follow an unsealed write.
			if err := r.seal(); err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
		}
		if i%2 == 1 {
			// A batch of creates with fresh IDs, its outbox group big
			// enough (over 128 KiB, deviceValueThreshold) to go to
			// Badger's value log.
			var refs []Ref
			err := r.Batch(ctx, func(b *Batch) error {
				for k := range 600 {
					ref, err := b.Create(Ref{Team: "wigan", Collection: "people"}, map[string]any{"name": fmt.Sprint("crash ", i, " ", k, " ", strings.Repeat("x", 200)), "n": k})
					if err != nil {
						return err
					}
					refs = append(refs, ref)
				}
				return nil
			})
			if err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
			for _, ref := range refs {
				fmt.Printf("ok %s\n", ref.ID)
			}
			continue
		}
		ref := Ref{Team: "wigan", Collection: "people", ID: fmt.Sprintf("c%06d", i)}
		if err := r.CreateWithID(ctx, ref, map[string]any{"name": fmt.Sprint("crash ", i), "n": i}); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Printf("ok %s\n", ref.ID) // stdout is unbuffered
	}
}

// TestWritesSurviveSIGKILL kills a process writing to a replica with
// SIGKILL and checks that every write it reported as returned is in the
// reopened replica, record and outbox alike.
func TestWritesSurviveSIGKILL(t *testing.T) { killedWriter(t, false) }

// TestOpenReplicaOfOlderOptions: a replica written with the Badger options
// of builds before issue 17's fourth pass (16 MiB memtables, values of 32
// KiB and more in the value log: the child's big outbox groups) and killed
// mid-write opens with today's (32 MiB, 128 KiB), its unflushed memtable
// log replayed: every write acknowledged before the kill is there.
func TestOpenReplicaOfOlderOptions(t *testing.T) { killedWriter(t, true) }

// crashOlderEnv makes TestCrashChild open with the older Badger options.
const crashOlderEnv = "DOORSTEP_CRASH_OLDER_OPTIONS"

// killedWriter is TestWritesSurviveSIGKILL, its child writing with the
// older Badger options if older.
func killedWriter(t *testing.T, older bool) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	if older {
		cmd.Env = append(cmd.Env, crashOlderEnv+"=1")
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "error") {
			t.Fatalf("child: %s", line)
		}
		if id, ok := strings.CutPrefix(line, "ok "); ok {
			acked = append(acked, id)
		}
		if len(acked) == 1000 {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	for sc.Scan() { // drain what the child wrote before it died
		if id, ok := strings.CutPrefix(sc.Text(), "ok "); ok {
			acked = append(acked, id)
		}
	}
	cmd.Wait()
	if len(acked) < 1000 {
		t.Fatalf("child acknowledged only %d writes", len(acked))
	}

	ctx := context.Background()
	r := openTest(t, dir, nil)
	ops, err := r.PendingOps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inOutbox := map[string]int{}
	for _, op := range ops {
		inOutbox[op.Record]++
	}
	for _, id := range acked {
		got, err := r.Get(ctx, Ref{Team: "wigan", Collection: "people", ID: id})
		if err != nil {
			t.Fatalf("acknowledged write %s lost: %v", id, err)
		}
		if got.Fields["name"].Value == nil || inOutbox[id] != 2 {
			t.Fatalf("write %s: fields %v, %d ops in outbox", id, got.Fields, inOutbox[id])
		}
	}
	if r.Status().Pending != len(ops) {
		t.Fatalf("status pending %d, outbox %d", r.Status().Pending, len(ops))
	}
	// Sealed changes, by the child's seals and as written, are numbered
	// 1, 2, 3 … with no gap and none twice.
	changes, _, err := r.OutboxChanges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range changes {
		if c.Seq != uint64(i+1) {
			t.Fatalf("sealed change %d has seq %d", i, c.Seq)
		}
	}
	if len(changes) == 0 {
		t.Fatal("no sealed change in the outbox: the child's seals did not run")
	}
	// A write after the crash gets an ID after every one before it.
	last := ops[len(ops)-1].ID
	ref := Ref{Team: "wigan", Collection: "people", ID: "after"}
	if err := r.CreateWithID(ctx, ref, map[string]any{"name": "after"}); err != nil {
		t.Fatal(err)
	}
	ops, _ = r.PendingOps(ctx)
	if ops[len(ops)-1].ID.Compare(last) <= 0 {
		t.Fatal("op ID after the crash is not after those before it")
	}
	t.Logf("%d writes acknowledged before SIGKILL, all present; %d records in outbox", len(acked), len(inOutbox))
}

// TestOpenAfterEmptyMemFile: a kill can leave a zero-length .mem file
// (dgraph-io/badger#2207); the replica must still open, with its outbox.
func TestOpenAfterEmptyMemFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r, err := Open(ctx, Options{Dir: dir, EncryptionKey: testKey, NoValidation: true})
	if err != nil {
		t.Fatal(err)
	}
	ref := Ref{Team: "wigan", Collection: "people", ID: "p1"}
	if err := r.CreateWithID(ctx, ref, map[string]any{"name": "Ann"}); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if err := os.WriteFile(filepath.Join(dir, "00042.mem"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err = Open(ctx, Options{Dir: dir, EncryptionKey: testKey, NoValidation: true})
	if err != nil {
		t.Fatalf("open after an empty .mem file: %v", err)
	}
	defer r.Close()
	if _, err := r.Get(ctx, ref); err != nil {
		t.Fatalf("record before the crash: %v", err)
	}
	if ops, err := r.PendingOps(ctx); err != nil || len(ops) != 1 {
		t.Fatalf("outbox after reopen: %d ops, %v", len(ops), err)
	}
}
