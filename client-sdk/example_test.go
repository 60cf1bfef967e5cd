package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	client "github.com/doorstep-health/doorstep/client-sdk"
)

// tempDir returns a fresh directory for an example's replica.
func tempDir() string {
	dir, err := os.MkdirTemp("", "doorstep-example-")
	if err != nil {
		log.Fatal(err)
	}
	return dir
}

// Open a replica encrypted with a key the app keeps (in the platform
// keystore, say), and record a visit with no network.
func Example() {
	ctx := context.Background()
	dir := tempDir()
	defer os.RemoveAll(dir)
	key := []byte("an example 32-byte AES key here!") // from the keystore
	r, err := client.Open(ctx, client.Options{Dir: dir, EncryptionKey: key})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()

	// The default validator is the home-visit schema: people need a name,
	// date of birth and address.
	ref, err := r.Create(ctx, client.Ref{Team: "wigan-frailty", Collection: "people"}, map[string]any{
		"given_name": "Edith", "family_name": "Barlow", "date_of_birth": "1938-05-14",
		"address": "12 Example Street, Wigan", "risk_flags": []string{"dog"},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Set(ctx, ref, "cfs", 6); err != nil {
		log.Fatal(err)
	}
	if err := r.Append(ctx, ref, "case_notes", "Home visit: frame delivered, daughter present."); err != nil {
		log.Fatal(err)
	}
	rec, err := r.Get(ctx, ref)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rec.Fields["given_name"].Value, rec.Fields["cfs"].Value, rec.Fields["risk_flags"].Members)
	fmt.Println("notes:", len(rec.Fields["case_notes"].Entries))
	fmt.Println("waiting to sync:", r.Status().Pending, "ops")
	// Output:
	// Edith 6 [dog]
	// notes: 1
	// waiting to sync: 7 ops
}

// Two tablets edit the same field while offline. Once each has the other's
// ops (normally through Sync) both show the same conflict; Resolve settles
// it everywhere.
func ExampleReplica_Resolve() {
	ctx := context.Background()
	open := func() (*client.Replica, func()) {
		dir := tempDir()
		r, err := client.Open(ctx, client.Options{Dir: dir, InsecureNoEncryption: true, NoValidation: true})
		if err != nil {
			log.Fatal(err)
		}
		return r, func() { r.Close(); os.RemoveAll(dir) }
	}
	ann, closeAnn := open()
	defer closeAnn()
	bea, closeBea := open()
	defer closeBea()

	ref := client.Ref{Team: "wigan-frailty", Collection: "people", ID: "jones"}
	must(ann.CreateWithID(ctx, ref, map[string]any{"mobility": "stick"}))
	exchange(ctx, ann, bea)

	// Offline, each records a different mobility aid.
	must(ann.Set(ctx, ref, "mobility", "frame"))
	must(bea.Set(ctx, ref, "mobility", "wheelchair"))
	exchange(ctx, ann, bea)
	exchange(ctx, bea, ann)

	rec, _ := bea.Get(ctx, ref)
	f := rec.Fields["mobility"]
	fmt.Println("conflict:", f.Conflict, "values:", len(f.Values))
	same, _ := ann.Get(ctx, ref)
	fmt.Println("same winner on both:", same.Fields["mobility"].Value == f.Value)

	// A coordinator settles it.
	must(bea.Resolve(ctx, ref, "mobility", "frame"))
	exchange(ctx, bea, ann)
	rec, _ = ann.Get(ctx, ref)
	fmt.Println("conflict:", rec.Fields["mobility"].Conflict, "value:", rec.Fields["mobility"].Value)
	// Output:
	// conflict: true values: 2
	// same winner on both: true
	// conflict: false value: frame
}

// exchange hands from's unsynced ops to to, as the server would.
func exchange(ctx context.Context, from, to *client.Replica) {
	ops, err := from.PendingOps(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if err := to.ApplyRemote(ctx, ops); err != nil {
		log.Fatal(err)
	}
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// Sign in and sync in the background. Sync needs a running server, so this
// example has no output to check; e2e/sdk_test.go runs the same calls
// against a real server.
func ExampleReplica_Sync() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := client.Open(ctx, client.Options{
		Dir:           "/data/doorstep",
		EncryptionKey: []byte("an example 32-byte AES key here!"),
		ServerURL:     "https://doorstep.example.nhs.uk",
		DeviceName:    "Ann's tablet",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Login(ctx, "ann", "password"); err != nil {
		log.Fatal(err)
	}
	// One explicit round: push the outbox, pull until caught up.
	res, err := r.Sync(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("pushed", res.PushedOps, "ops, pulled", res.Pulled, "changes")

	// Or keep syncing after writes and when the network returns.
	events, stop := r.Subscribe()
	defer stop()
	if err := r.Background(ctx); err != nil {
		log.Fatal(err)
	}
	r.NetworkUp() // from the platform's connectivity callback
	for ev := range events {
		fmt.Println("changed:", ev.Records)
	}
}

// Save a whole visit form as one batch: every write validated, then stored
// together with one fsync, or none of them if one is invalid.
func ExampleReplica_Batch() {
	ctx := context.Background()
	dir := tempDir()
	defer os.RemoveAll(dir)
	r, err := client.Open(ctx, client.Options{Dir: dir, EncryptionKey: []byte("an example 32-byte AES key here!")})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	team := "ashton-pcn"
	var ref client.Ref
	err = r.Batch(ctx, func(b *client.Batch) error {
		var err error
		ref, err = b.Create(client.Ref{Team: team, Collection: "people"}, map[string]any{
			"given_name": "Harold", "family_name": "Tetlow", "date_of_birth": "1944-09-30",
			"address": "3 Example Row, Ashton-under-Lyne",
		})
		if err != nil {
			return err
		}
		if err := b.Set(ref, "lives_alone", true); err != nil {
			return err
		}
		return b.Append(ref, "case_notes", "Drop-in: wants a walking group; signposted.")
	})
	if err != nil {
		log.Fatal(err)
	}

	// An invalid value (a Clinical Frailty Scale score of 12) fails the
	// whole batch: the note written before it is not stored either.
	err = r.Batch(ctx, func(b *client.Batch) error {
		if err := b.Append(ref, "case_notes", "second note"); err != nil {
			return err
		}
		return b.Set(ref, "cfs", 12)
	})
	fmt.Println("invalid:", errors.Is(err, client.ErrInvalid))
	rec, _ := r.Get(ctx, ref)
	fmt.Println("notes:", len(rec.Fields["case_notes"].Entries), "lives alone:", rec.Fields["lives_alone"].Value)
	// Output:
	// invalid: true
	// notes: 1 lives alone: true
}
